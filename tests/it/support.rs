//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// Whether we run under CI, where a missing dependency is a failure, never a skip.
pub(crate) fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `../shared/data/<rel>` beside the checkout. Under CI a missing folder fails the test;
/// elsewhere the test is skipped with a loud message (returns `None`).
pub(crate) fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(!under_ci(), "CI: shared data {} is missing; the conformance suite needs ../shared/data beside the checkout", p.display());
    eprintln!("SKIPPED: {} is missing (not under CI)", p.display());
    None
}

/// The test PostgreSQL server (`RECOUP_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`).
pub(crate) fn pg_server() -> String {
    std::env::var("RECOUP_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Creates a fresh, uniquely named PostgreSQL database and returns its URL, or `None`
/// (with a loud message) when no server answers outside CI. Under CI, a missing server
/// fails the test.
pub(crate) async fn fresh_pg_database() -> Option<String> {
    use sqlx::Connection;
    let server = pg_server();
    let admin = format!("{server}/postgres");
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !under_ci(),
                "CI: PostgreSQL at {server} is required and does not answer: {e}"
            );
            eprintln!("SKIPPED: PostgreSQL at {server} does not answer: {e}");
            return None;
        }
    };
    let name = format!(
        "recoup_it_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    Some(format!("{server}/{name}"))
}

/// Runs the `recoup` binary with `args`; its exit status and output.
pub(crate) fn recoup(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_recoup"))
        .args(args)
        .output()
        .unwrap()
}

/// A temporary directory that is removed on drop.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Drops a database made by [`fresh_pg_database`] (`WITH (FORCE)` closes what is left open),
/// so repeated runs do not pile databases up on the shared server.
pub(crate) async fn drop_pg_database(url: &str) {
    use sqlx::Connection;
    let Some(name) = url
        .rsplit('/')
        .next()
        .filter(|n| n.starts_with("recoup_it_"))
    else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
        .await
        .expect("connect to drop the test database");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop test database");
}
