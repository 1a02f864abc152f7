//! The store on real SQLite and real PostgreSQL: migrations, idempotent runs, rollback.

use crate::support;
use recoup::primitives::Amount;
use recoup::store::{
    IncidentRecord, RootRecord, RunRecord, RunTail, Saved, Store, StoreError, StoredTable,
    UserClaim, UserRecord,
};

/// 2^256 − 1, the largest amount a claim can have, in the digits it is stored as (written out
/// here, not formatted by recoup).
const U256_MAX: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// User 1's claim in tree `t`: 2^256 − 6, so that with user 2's 5 the tree's total is
/// 2^256 − 1 (written out here, not formatted by recoup).
const T_CLAIM_1: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639930";

/// A tree name JSON must escape (a quote) and carries as UTF-8, after `t` in byte order.
const U: &str = "u\"é";

/// Per-user rows in [`record`]'s run: more than two of the store's multi-row INSERTs
/// (`ROWS_PER_INSERT` in src/store, 4,096 rows when this was written; raise this with it), so
/// that full statements and a shorter last one are all exercised.
const USERS: i64 = 9_000;

/// The account of [`record`]'s user `i`.
fn account(i: i64) -> String {
    format!("0x{i:040x}")
}

fn claim(tree: &str, amount: Amount, leaf_index: u64) -> UserClaim {
    UserClaim {
        tree: tree.into(),
        amount,
        leaf_index,
    }
}

fn record(run_id: &str) -> RunRecord {
    RunRecord {
        incident: IncidentRecord {
            id: "inc".into(),
            name: Some("Test".into()),
            chain_id: 1,
            snapshot_block: 100,
        },
        run_id: run_id.into(),
        summary_json: "{}".into(),
        users: (0..USERS)
            .map(|i| UserRecord {
                account: account(i),
                result_json: format!("{{\"i\":{i}}}"),
                claims: match i {
                    // Given out of tree order: stored in it.
                    1 => vec![
                        claim(U, Amount::from(7u64), 0),
                        claim("t", Amount::MAX.checked_sub(Amount::from(5u64)).unwrap(), 0),
                    ],
                    2 => vec![claim("t", Amount::from(5u64), 1)],
                    _ => Vec::new(),
                },
            })
            .collect(),
        roots: vec![
            RootRecord {
                tree: "t".into(),
                format: "oz-standard".into(),
                asset: "DAI".into(),
                root: "0xab".into(),
                leaves: 2,
                total: Amount::MAX,
                leaves_of: None,
            },
            // `t`'s leaves in another format: no claims of its own, shown under both names.
            RootRecord {
                tree: "t-uniswap".into(),
                format: "uniswap-merkle-distributor".into(),
                asset: "DAI".into(),
                root: "0xcd".into(),
                leaves: 2,
                total: Amount::MAX,
                leaves_of: Some("t".into()),
            },
            RootRecord {
                tree: U.into(),
                format: "oz-standard".into(),
                asset: "WETH".into(),
                root: "0xef".into(),
                leaves: 1,
                total: Amount::from(7u64),
                leaves_of: None,
            },
        ],
    }
}

/// Saving `run` fails with [`StoreError::Leaves`] naming `tree` (and stores nothing, which
/// the caller checks).
async fn refused_for_tree(store: &Store, run: &RunRecord, tree: &str) {
    let err = store.save_run(run).await;
    assert!(
        matches!(&err, Err(StoreError::Leaves { tree: t, .. }) if t == tree),
        "{err:?}"
    );
}

/// Saving `run` fails with [`StoreError::Leaves`] naming `tree` and saying `problem`.
async fn refused_because(store: &Store, run: &RunRecord, tree: &str, problem: &str) {
    let err = store.save_run(run).await;
    assert!(
        matches!(&err, Err(StoreError::Leaves { tree: t, problem: p }) if t == tree && *p == problem),
        "{err:?}"
    );
}

async fn exercise(store: &Store) {
    assert_eq!(
        store.save_run(&record("0x01")).await.unwrap(),
        Saved::Inserted
    );
    // Same run again: idempotent, nothing added.
    assert_eq!(
        store.save_run(&record("0x01")).await.unwrap(),
        Saved::AlreadyStored
    );
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 1);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), USERS);
    assert_eq!(store.count(StoredTable::Claims).await.unwrap(), 5);
    // A user's claims in its own row, in tree order, amounts as digit strings (written out
    // here, not by recoup).
    let texts: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT claims_json FROM user_results WHERE account IN ($1, $2, $3) ORDER BY account",
    )
    .bind(account(1))
    .bind(account(2))
    .bind(account(3))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        texts,
        [
            Some(format!(
                "{{\"t\":[0,\"{T_CLAIM_1}\"],\"u\\\"é\":[0,\"7\"]}}"
            )),
            Some("{\"t\":[1,\"5\"]}".to_owned()),
            None,
        ]
    );
    let claims: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT tree, account, amount, leaf_index FROM claims ORDER BY tree, account",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let want = [
        ("t", 1, T_CLAIM_1, 0),
        ("t", 2, "5", 1),
        ("t-uniswap", 1, T_CLAIM_1, 0),
        ("t-uniswap", 2, "5", 1),
        (U, 1, "7", 0),
    ]
    .map(|(t, a, v, i)| (t.to_owned(), account(a), v.to_owned(), i));
    assert_eq!(claims, want);
    // A tree's leaves read through the view by its name, as before they were shared.
    let shared: Vec<(String, String)> = sqlx::query_as(
        "SELECT account, amount FROM claims WHERE tree = 't-uniswap' ORDER BY leaf_index",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        shared,
        [(1, T_CLAIM_1), (2, "5")].map(|(a, v)| (account(a), v.to_owned()))
    );
    assert_eq!(
        store.root("0x01", "t").await.unwrap().as_deref(),
        Some("0xab")
    );
    let total: String = sqlx::query_scalar(
        "SELECT CAST(total AS TEXT) FROM roots WHERE run_id = '0x01' AND tree = 't'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(total, U256_MAX);
    // The run's row is inserted before its summary is known and updated at the end: the
    // stored summary is the one given, not the stand-in.
    let summary: String = sqlx::query_scalar("SELECT summary_json FROM runs WHERE run_id = '0x01'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(summary, "{}");
    // Per-user rows are streamed before the rest of the run is known; when the rest never
    // comes (a claim tree failed), they are rolled back with the run's row.
    let r = record("0x03");
    let refused = async { Err::<RunTail, _>("no trees".to_owned()) };
    let err = store
        .save_run_streamed(
            &r.incident,
            &r.run_id,
            r.users.iter().cloned(),
            refused,
            async { Ok(()) },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Aborted(m) if m == "no trees"),
        "{err}"
    );
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 1);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), USERS);
    // A row that repeats another's key fails its statement (on SQLite an `INSERT OR FAIL`,
    // which keeps the statement's earlier rows): the whole run is still rolled back.
    let mut twice = record("0x04");
    twice.users.push(twice.users[1234].clone());
    let err = store.save_run(&twice).await;
    assert!(
        matches!(&err, Err(StoreError::Query { context, .. }) if *context == "saving per-user results"),
        "{err:?}"
    );
    // A user with two claims in one tree.
    let mut twice = record("0x05");
    twice.users[2]
        .claims
        .push(claim("t", Amount::from(6u64), 2));
    refused_for_tree(store, &twice, "t").await;
    assert_eq!(
        store.count(StoredTable::Runs).await.unwrap(),
        1,
        "rolled back: no run row"
    );
    assert_eq!(
        store.count(StoredTable::Claims).await.unwrap(),
        5,
        "rolled back: no claims"
    );
    // Roots and claim rows that disagree on whose leaves are whose: refused, rolled back.
    let mut bad = record("0x06");
    bad.roots[1].leaves_of = Some("nowhere".into());
    refused_for_tree(store, &bad, "t-uniswap").await;
    let mut bad = record("0x07");
    bad.roots[1].leaves = 3;
    refused_for_tree(store, &bad, "t-uniswap").await;
    let mut bad = record("0x08");
    bad.roots[0].leaves_of = Some("t-uniswap".into());
    refused_for_tree(store, &bad, "t").await;
    // Claims given for the tree that shares `t`'s leaves would show twice in `claims`.
    let mut bad = record("0x09");
    bad.users[3]
        .claims
        .push(claim("t-uniswap", Amount::from(1u64), 2));
    refused_for_tree(store, &bad, "t-uniswap").await;
    // Claims of a tree the run has no root of.
    let mut bad = record("0x0a");
    bad.users[3].claims.push(claim("v", Amount::from(1u64), 0));
    refused_for_tree(store, &bad, "v").await;
    // A root counting more leaves than its tree's claims (and its twin alike, so that the
    // roots agree among themselves).
    let mut bad = record("0x0b");
    bad.roots[0].leaves = 3;
    bad.roots[1].leaves = 3;
    refused_for_tree(store, &bad, "t").await;
    // ... and one counting fewer.
    let mut bad = record("0x0c");
    bad.users[3].claims.push(claim(U, Amount::from(1u64), 1));
    refused_for_tree(store, &bad, U).await;
    // Claims that are not the leaves their root was built from, though as many: two at one
    // leaf index, one at an index past the root's count (so some leaf has none), amounts
    // that do not sum to the root's total, or whose sum is past 2^256 − 1; and an index no
    // tree of recoup's can have, refused as it comes.
    let with_second_u = |run_id, leaf_index| {
        let mut bad = record(run_id);
        bad.users[3]
            .claims
            .push(claim(U, Amount::from(1u64), leaf_index));
        bad.roots[2].leaves = 2;
        bad.roots[2].total = Amount::from(8u64);
        bad
    };
    assert_eq!(
        store.save_run(&with_second_u("0x0d", 1)).await.unwrap(),
        Saved::Inserted,
        "the same with the index right is stored"
    );
    refused_because(
        store,
        &with_second_u("0x0e", 0),
        U,
        "two claims have one leaf index",
    )
    .await;
    refused_because(
        store,
        &with_second_u("0x0f", 2),
        U,
        "a claim's leaf index is not below its root's leaf count",
    )
    .await;
    let mut bad = record("0x10");
    bad.roots[2].total = Amount::from(8u64);
    refused_because(
        store,
        &bad,
        U,
        "its users' claims do not sum to its root's total",
    )
    .await;
    let mut bad = record("0x11");
    bad.users[3].claims.push(claim("t", Amount::from(1u64), 2));
    bad.roots[0].leaves = 3;
    bad.roots[1].leaves = 3;
    refused_because(
        store,
        &bad,
        "t",
        "its users' claims do not sum to its root's total",
    )
    .await;
    let mut bad = record("0x12");
    bad.users[3]
        .claims
        .push(claim(U, Amount::from(1u64), u64::from(u32::MAX)));
    refused_because(store, &bad, U, "a claim's leaf index is 2^32 - 1 or more").await;
    // Only 0x01 and 0x0d are stored.
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 2);
    assert_eq!(store.count(StoredTable::Roots).await.unwrap(), 6);
    assert_eq!(store.count(StoredTable::Claims).await.unwrap(), 11);
    assert_eq!(
        store.count(StoredTable::UserResults).await.unwrap(),
        2 * USERS,
        "rolled back: no user rows"
    );
    assert_eq!(
        store.save_simulation("h", "m", 1, 10, "{}").await.unwrap(),
        Saved::Inserted
    );
    assert_eq!(
        store.save_simulation("h", "m", 1, 10, "{}").await.unwrap(),
        Saved::AlreadyStored
    );
}

#[tokio::test]
async fn sqlite_store_is_idempotent_and_transactional() {
    let dir = support::tempdir();
    let url = format!("sqlite:{}", dir.path().join("r.db").display());
    let store = Store::open(&url).await.unwrap();
    exercise(&store).await;
    // Reopening runs no migration twice.
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.count(StoredTable::Runs).await.unwrap(), 2);
}

/// The value a PRAGMA statement returns (text or integer).
async fn pragma<T>(store: &Store, sql: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row as _;
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test]
async fn sqlite_database_is_made_with_64_kib_pages_and_an_older_one_keeps_its_own() {
    let dir = support::tempdir();
    let url = format!("sqlite:{}", dir.path().join("new.db").display());
    let store = Store::open(&url).await.unwrap();
    store.save_run(&record("0x01")).await.unwrap();
    assert_eq!(pragma::<i64>(&store, "PRAGMA page_size").await, 65536);
    store.pool().close().await;
    // A database an earlier version made, with SQLite's default 4 KiB pages.
    let old = dir.path().join("old.db");
    {
        use sqlx::ConnectOptions as _;
        let mut conn = format!("sqlite:{}?mode=rwc", old.display())
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("PRAGMA page_size = 4096; CREATE TABLE made_before (a INTEGER);")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let store = Store::open(&format!("sqlite:{}", old.display()))
        .await
        .unwrap();
    store.save_run(&record("0x01")).await.unwrap();
    assert_eq!(pragma::<i64>(&store, "PRAGMA page_size").await, 4096);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), USERS);
    store.pool().close().await;
}

#[tokio::test]
async fn sqlite_database_left_in_wal_mode_gets_a_rollback_journal_and_keeps_its_rows() {
    let dir = support::tempdir();
    let url = format!("sqlite:{}", dir.path().join("r.db").display());
    let store = Store::open(&url).await.unwrap();
    store.save_run(&record("0x01")).await.unwrap();
    // As versions before the rollback journal left it.
    assert_eq!(
        pragma::<String>(&store, "PRAGMA journal_mode = WAL").await,
        "wal"
    );
    store.pool().close().await;
    let again = Store::open(&url).await.unwrap();
    assert_eq!(
        pragma::<String>(&again, "PRAGMA journal_mode").await,
        "delete"
    );
    assert_eq!(again.count(StoredTable::UserResults).await.unwrap(), USERS);
    again.pool().close().await;
    assert!(
        !dir.path().join("r.db-wal").exists(),
        "the WAL is folded in"
    );
}

/// A run long enough for the store to hint writeback of its pages several times while
/// its rows go in (`Writeback` in src/store: every 8 statements of 4,096 rows; 200,000 rows
/// make 49 statements) stores every row, and the database passes SQLite's integrity check.
/// That the hint drops written pages from the page cache is a unit test there.
#[tokio::test]
async fn sqlite_run_written_back_while_its_rows_go_in_keeps_every_row() {
    let dir = support::tempdir();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("r.db").display()))
        .await
        .unwrap();
    let mut run = record("0x01");
    let pad = "x".repeat(100);
    run.users.extend((USERS..200_000).map(|i| UserRecord {
        account: account(i),
        result_json: format!("{{\"i\":{i},\"pad\":\"{pad}\"}}"),
        claims: Vec::new(),
    }));
    store.save_run(&run).await.unwrap();
    assert_eq!(
        store.count(StoredTable::UserResults).await.unwrap(),
        200_000
    );
    let last: String =
        sqlx::query_scalar("SELECT result_json FROM user_results WHERE account = $1")
            .bind(account(199_999))
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(last, format!("{{\"i\":199999,\"pad\":\"{pad}\"}}"));
    assert_eq!(
        pragma::<String>(&store, "PRAGMA integrity_check").await,
        "ok"
    );
    store.pool().close().await;
}

#[tokio::test]
async fn postgres_store_is_idempotent_and_transactional() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    exercise(&store).await;
    store.pool().close().await;
    support::drop_pg_database(&url).await;
}

/// recoup writes every amount from its U256 value, so never one above 2^256 − 1; on
/// PostgreSQL `roots.total`'s CHECK also refuses one written around recoup (README, "The
/// database"), and takes 2^256 − 1 itself.
#[tokio::test]
async fn postgres_rejects_a_root_total_above_u256_max() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    store.save_run(&record("0x04")).await.unwrap();
    let insert = |tree: &str, total: &str| {
        format!(
            "INSERT INTO roots (run_id, tree, format, asset, root, leaves, total) \
             VALUES ('0x04', '{tree}', 'oz-standard', 'DAI', '0x00', 1, '{total}')"
        )
    };
    let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    let err = sqlx::query(sqlx::AssertSqlSafe(insert("v", over)))
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check"), "{err}");
    sqlx::query(sqlx::AssertSqlSafe(insert("w", U256_MAX)))
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    support::drop_pg_database(&url).await;
}

/// A database of the first schema, at `url`, with `rows` inserted: made by running only
/// the first migration of `backend`.
async fn first_schema_database(url: &str, backend: &str, rows: &[&str]) {
    sqlx::any::install_default_drivers();
    let first = support::tempdir();
    let name = "20261121000001_init.sql";
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend)
            .join(name),
        first.path().join(name),
    )
    .unwrap();
    let connect = if backend == "sqlite" {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    let pool = sqlx::AnyPool::connect(&connect).await.unwrap();
    sqlx::migrate::Migrator::new(first.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for sql in rows {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

/// A database made by the first schema (run ids repeated in every row) keeps every row
/// when a newer recoup opens it: the second migration numbers the runs and moves the rows,
/// the third (SQLite) rebuilds `claims` without its amount CHECK, the sixth moves each
/// user's claims into its row.
async fn migrates_rows_of_the_first_schema(url: &str, backend: &str) {
    use sqlx::Row as _;
    first_schema_database(url, backend, &[
        "INSERT INTO incidents (id, name, chain_id, snapshot_block) VALUES ('inc', NULL, 1, 5)",
        "INSERT INTO runs (run_id, incident_id, recoup_version, summary_json) VALUES ('0xaa', 'inc', '0.1.0', '{}')",
        "INSERT INTO runs (run_id, incident_id, recoup_version, summary_json) VALUES ('0xbb', 'inc', '0.1.0', '{}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xaa', '0x01', '{\"a\":1}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xbb', '0x01', '{\"b\":1}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xbb', '0x02', '{\"b\":2}')",
        "INSERT INTO claims (run_id, tree, account, amount, leaf_index) VALUES ('0xbb', 'u', '0x02', '9', 3)",
        "INSERT INTO claims (run_id, tree, account, amount, leaf_index) VALUES ('0xbb', 't', '0x02', '7', 0)",
        "INSERT INTO roots (run_id, tree, format, asset, root, leaves, total) VALUES ('0xbb', 't', 'oz-standard', 'DAI', '0xcd', 1, '7')",
        "INSERT INTO roots (run_id, tree, format, asset, root, leaves, total) VALUES ('0xbb', 'u', 'oz-standard', 'WETH', '0xef', 1, '9')",
    ]).await;

    let store = Store::open(url).await.unwrap();
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 2);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), 3);
    assert_eq!(store.count(StoredTable::Claims).await.unwrap(), 2);
    let rows = sqlx::query(
        "SELECT c.tree, c.account, c.amount, c.leaf_index FROM claims c JOIN runs r ON r.seq = c.run_seq WHERE r.run_id = '0xbb' ORDER BY c.tree",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let got: Vec<(String, String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        [("t", "0x02", "7", 0), ("u", "0x02", "9", 3)].map(|(t, a, v, i)| (
            t.to_owned(),
            a.to_owned(),
            v.to_owned(),
            i
        ))
    );
    // The user's claims, in its row as recoup writes them: compact, in tree order.
    let claims: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT u.claims_json FROM user_results u JOIN runs r ON r.seq = u.run_seq ORDER BY r.run_id, u.account",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        claims,
        [
            None,
            None,
            Some("{\"t\":[0,\"7\"],\"u\":[3,\"9\"]}".to_owned())
        ]
    );
    let results: Vec<String> = sqlx::query(
        "SELECT u.result_json FROM user_results u JOIN runs r ON r.seq = u.run_seq WHERE r.run_id = '0xbb' ORDER BY u.account",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert_eq!(results, ["{\"b\":1}", "{\"b\":2}"]);
    // A run saved afterwards gets the next number.
    store.save_run(&record("0xcc")).await.unwrap();
    let seq: i64 = sqlx::query("SELECT seq FROM runs WHERE run_id = '0xcc'")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq, 3);
    store.pool().close().await;
}

/// A claim of an account that has no per-user row cannot move into one: the migration that
/// moves the claims fails, and the claim stays where it was instead of being dropped.
async fn a_claim_of_no_user_is_not_dropped(url: &str, backend: &str) {
    first_schema_database(url, backend, &[
        "INSERT INTO incidents (id, name, chain_id, snapshot_block) VALUES ('inc', NULL, 1, 5)",
        "INSERT INTO runs (run_id, incident_id, recoup_version, summary_json) VALUES ('0xaa', 'inc', '0.1.0', '{}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xaa', '0x01', '{}')",
        "INSERT INTO claims (run_id, tree, account, amount, leaf_index) VALUES ('0xaa', 't', '0x02', '7', 0)",
    ]).await;
    let err = Store::open(url).await.unwrap_err();
    assert!(matches!(err, StoreError::Migrate(_)), "{err}");
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let kept: Vec<(String, String)> = sqlx::query_as("SELECT account, amount FROM claim_leaves")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kept, [("0x02".to_owned(), "7".to_owned())]);
    // ... and the migration's other steps are undone with it.
    let column = sqlx::query("SELECT claims_json FROM user_results")
        .fetch_all(&pool)
        .await;
    assert!(column.is_err(), "claims_json was added");
    pool.close().await;
}

#[tokio::test]
async fn sqlite_database_of_the_first_schema_keeps_its_rows() {
    let dir = support::tempdir();
    let url = |name: &str| format!("sqlite:{}", dir.path().join(name).display());
    migrates_rows_of_the_first_schema(&url("old.db"), "sqlite").await;
    a_claim_of_no_user_is_not_dropped(&url("orphan.db"), "sqlite").await;
}

#[tokio::test]
async fn postgres_database_of_the_first_schema_keeps_its_rows() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    migrates_rows_of_the_first_schema(&url, "postgres").await;
    support::drop_pg_database(&url).await;
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    a_claim_of_no_user_is_not_dropped(&url, "postgres").await;
    support::drop_pg_database(&url).await;
}

/// `recoup run` on the bundled example, with `more_trees` (`[[outputs.trees]]` tables)
/// appended to its manifest, into `url`, then the stored run against the files it wrote:
/// the summary byte for byte, one user row per user, each tree's claims exactly the
/// `claims.csv` rows of its asset at the leaf indices its file publishes, each root the
/// summary's, and the trees that take another's leaves exactly `shared` ((tree, owner), by
/// tree name). The rows are streamed from the checked policy result on and the summary filled
/// in last, so this is that path, end to end.
async fn run_example_into(url: &str, more_trees: &str, shared: &[(&str, &str)]) {
    use sqlx::Row;
    let dir = support::tempdir();
    let out = dir.path().join("out");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/harbor-2026");
    let copy = dir.path().join("example");
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(&example).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let manifest = copy.join("incident.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}\n{more_trees}")).unwrap();
    let st = support::recoup(&[
        "-q",
        "--db",
        url,
        "run",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let summary_text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary_text).unwrap();
    let store = Store::open(url).await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT summary_json FROM runs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(stored, summary_text);
    assert_eq!(
        store.count(StoredTable::UserResults).await.unwrap(),
        summary["users"].as_i64().unwrap()
    );
    let csv = std::fs::read_to_string(out.join("claims.csv")).unwrap();
    let trees = summary["trees"].as_array().unwrap();
    assert_eq!(
        trees.len(),
        3 + more_trees.matches("[[outputs.trees]]").count()
    );
    for t in trees {
        let (file, asset) = (t["file"].as_str().unwrap(), t["asset"].as_str().unwrap());
        let mut want: Vec<(String, String)> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|v| v[1] == asset)
            .map(|v| (v[0].to_owned(), v[2].to_owned()))
            .collect();
        want.sort();
        let stored: Vec<(String, String, i64)> =
            sqlx::query("SELECT account, amount, leaf_index FROM claims WHERE tree = $1")
                .bind(file)
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
        // Sorted here: PostgreSQL's collation may order mixed-case text otherwise.
        let mut got: Vec<(String, String)> = stored
            .iter()
            .map(|(a, v, _)| (a.clone(), v.clone()))
            .collect();
        got.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{file}");
        // Each claim's leaf index is its account's position in the published tree: in an
        // OpenZeppelin dump the index of its value, in a merkle-distributor file its `index`.
        let published: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(file)).unwrap()).unwrap();
        let mut want: Vec<(String, i64)> = match published["values"].as_array() {
            Some(values) => {
                let at = published["leafEncoding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|e| e == "address")
                    .unwrap();
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v["value"][at].as_str().unwrap().to_owned(), i as i64))
                    .collect()
            }
            None => published["claims"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(a, c)| (a.clone(), c["index"].as_i64().unwrap()))
                .collect(),
        };
        want.sort();
        let mut got: Vec<(String, i64)> = stored.into_iter().map(|(a, _, i)| (a, i)).collect();
        got.sort();
        assert_eq!(got, want, "{file}: leaf indices");
        let root = store
            .root(summary["run_id"].as_str().unwrap(), file)
            .await
            .unwrap();
        assert_eq!(root.as_deref(), t["root"].as_str(), "{file}");
    }
    stored_users_are_their_rows_totals(&store, &out).await;
    // Trees whose leaves are another's keep none of their own; every other tree's claims
    // are in the users' rows, as many as its root's leaves.
    let got: Vec<(String, String)> =
        sqlx::query_as("SELECT tree, leaves_of FROM roots WHERE leaves_of IS NOT NULL")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let want: Vec<(String, String)> = shared
        .iter()
        .map(|&(t, o)| (t.to_owned(), o.to_owned()))
        .collect();
    assert_eq!(got, want);
    let owned: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(leaves) AS BIGINT) FROM roots WHERE leaves_of IS NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let entries: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM claims c JOIN roots r ON r.tree = c.tree WHERE r.leaves_of IS NULL",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(entries, owned);
    store.pool().close().await;
}

/// Each stored per-user row (`user_results.result_json`) against the files of the same run,
/// text for text: its tier, its loss value (the sum of its rows' values) and, per asset, its
/// loss and haircut summed over its rows of `user_results.csv` and its payout as `claims.csv`
/// states it, in the documented shape and key order. The residual value is not in the files:
/// it is only checked to be a decimal no larger than the loss value.
async fn stored_users_are_their_rows_totals(store: &Store, out: &std::path::Path) {
    use recoup::primitives::Decimal;
    use std::collections::BTreeMap;
    use std::str::FromStr;
    #[derive(Default)]
    struct Want {
        tier: String,
        value: Decimal,
        losses: BTreeMap<String, u128>,
        haircuts: BTreeMap<String, u128>,
        payouts: BTreeMap<String, String>,
    }
    let mut want: BTreeMap<String, Want> = BTreeMap::new();
    let mut rows = csv::Reader::from_path(out.join("user_results.csv")).unwrap();
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (account, asset, tier, loss, value, haircut) = (
        col("account"),
        col("asset"),
        col("tier"),
        col("loss"),
        col("value"),
        col("haircut"),
    );
    for r in rows.records() {
        let r = r.unwrap();
        let w = want.entry(r[account].to_owned()).or_default();
        w.tier = r[tier].to_owned();
        w.value += Decimal::from_str(&r[value]).unwrap();
        // Checked: a sum past 2^128 - 1 fails the test instead of wrapping.
        let add = |sum: &mut u128, digits: &str| {
            *sum = sum.checked_add(digits.parse().unwrap()).unwrap();
        };
        add(w.losses.entry(r[asset].to_owned()).or_default(), &r[loss]);
        add(
            w.haircuts.entry(r[asset].to_owned()).or_default(),
            &r[haircut],
        );
    }
    let mut claims = csv::Reader::from_path(out.join("claims.csv")).unwrap();
    assert_eq!(
        claims.headers().unwrap(),
        vec!["account", "asset", "amount"]
    );
    for r in claims.records() {
        let r = r.unwrap();
        let w = want.get_mut(&r[0]).expect("a claimant is a user");
        assert!(w.payouts.insert(r[1].to_owned(), r[2].to_owned()).is_none());
    }
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT account, result_json FROM user_results")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(stored.len(), want.len());
    let object = |m: Vec<(&String, String)>| {
        let pairs: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
        format!("{{{}}}", pairs.join(","))
    };
    for (account, json) in stored {
        let w = &want[&account];
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let residual = Decimal::from_str(parsed["residual_value"].as_str().unwrap()).unwrap();
        assert!(residual <= w.value, "{account}: {json}");
        let tier = match w.tier.as_str() {
            "" => "null".to_owned(),
            t => format!("\"{t}\""),
        };
        let expected = format!(
            "{{\"tier\":{tier},\"loss_value\":\"{}\",\"residual_value\":\"{residual}\",\"losses\":{},\"haircuts\":{},\"payouts\":{}}}",
            w.value,
            object(w.losses.iter().map(|(k, v)| (k, v.to_string())).collect()),
            object(w.haircuts.iter().map(|(k, v)| (k, v.to_string())).collect()),
            object(w.payouts.iter().map(|(k, v)| (k, v.clone())).collect()),
        );
        assert_eq!(json, expected, "{account}");
    }
}

/// Trees added to the example for [`sqlite_stores_every_tree_s_leaf_indices_as_published`]:
/// one with the same leaves as `usdc-claims.json` (so one of the two takes the other's), a
/// merkle-distributor numbered in entry order (largest claim first), and an OpenZeppelin tree
/// of values in that order with the index in the leaf.
const MORE_TREES: &str = r#"
[[outputs.trees]]
format = "oz-standard"
leaf_encoding = ["address", "uint256"]
asset = "USDC"
file = "usdc-claims-copy.json"

[[outputs.trees]]
format = "uniswap"
asset = "USDC"
file = "usdc-by-amount-distributor.json"
sort_leaves = false
order = "amount-desc"

[[outputs.trees]]
format = "oz-standard"
leaf_encoding = ["uint256", "address", "uint256"]
asset = "WETH"
file = "weth-by-amount.json"
sort_leaves = false
order = "amount-desc"
"#;

#[tokio::test]
async fn sqlite_stores_the_example_run_as_its_files_state_it() {
    let dir = support::tempdir();
    // The example publishes its USDC claims in two formats whose leaf indices differ (an
    // OpenZeppelin dump's values in account order, a merkle-distributor's indices in EIP-55
    // text order): neither takes the other's leaves.
    run_example_into(
        &format!("sqlite:{}", dir.path().join("r.db").display()),
        "",
        &[],
    )
    .await;
}

#[tokio::test]
async fn sqlite_stores_every_tree_s_leaf_indices_as_published() {
    let dir = support::tempdir();
    let url = format!("sqlite:{}", dir.path().join("r.db").display());
    // Of two trees with the same leaves, the first by name owns them.
    run_example_into(
        &url,
        MORE_TREES,
        &[("usdc-claims.json", "usdc-claims-copy.json")],
    )
    .await;
}

#[tokio::test]
async fn postgres_stores_the_example_run_as_its_files_state_it() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    run_example_into(&url, "", &[]).await;
    support::drop_pg_database(&url).await;
}
