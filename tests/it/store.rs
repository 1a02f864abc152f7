//! The store on real SQLite and real PostgreSQL: migrations, idempotent runs, rollback.

use crate::support;
use recoup::primitives::Amount;
use recoup::store::{
    ClaimRecord, IncidentRecord, RootRecord, RunRecord, RunTail, Saved, Store, StoreError,
    StoredTable,
};

/// 2^256 − 1, the largest amount a claim can have, in the digits it is stored as (written out
/// here, not formatted by recoup).
const U256_MAX: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// Per-user rows in [`record`]'s run: more than two of the store's multi-row INSERTs
/// (`ROWS_PER_INSERT` in src/store, 4,096 rows when this was written; raise this with it), so
/// that full statements and a shorter last one are all exercised.
const USERS: i64 = 9_000;

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
            .map(|i| (format!("0x{i:040x}"), format!("{{\"i\":{i}}}")))
            .collect(),
        claims: vec![
            ClaimRecord {
                tree: "t".into(),
                account: "0x01".into(),
                amount: Amount::MAX,
                leaf_index: 0,
            },
            // Another tree's row between two of `t`'s: rows are grouped by tree into
            // statements that bind the tree once, and none may land under the wrong one.
            ClaimRecord {
                tree: "u".into(),
                account: "0x01".into(),
                amount: Amount::from(7u64),
                leaf_index: 0,
            },
            ClaimRecord {
                tree: "t".into(),
                account: "0x02".into(),
                amount: Amount::from(5u64),
                leaf_index: 1,
            },
        ],
        roots: vec![
            RootRecord {
                tree: "t".into(),
                format: "oz-standard".into(),
                asset: "DAI".into(),
                root: "0xab".into(),
                leaves: 2,
                total: Amount::from(5u64),
                leaves_of: None,
            },
            // `t`'s leaves in another format: no rows of its own, shown under both names.
            RootRecord {
                tree: "t-uniswap".into(),
                format: "uniswap-merkle-distributor".into(),
                asset: "DAI".into(),
                root: "0xcd".into(),
                leaves: 2,
                total: Amount::from(5u64),
                leaves_of: Some("t".into()),
            },
        ],
    }
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
    assert_eq!(store.count(StoredTable::ClaimLeaves).await.unwrap(), 3);
    let claims: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT tree, account, amount, leaf_index FROM claims ORDER BY tree, account",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let want = [
        ("t", "0x01", U256_MAX, 0),
        ("t", "0x02", "5", 1),
        ("t-uniswap", "0x01", U256_MAX, 0),
        ("t-uniswap", "0x02", "5", 1),
        ("u", "0x01", "7", 0),
    ]
    .map(|(t, a, v, i)| (t.to_owned(), a.to_owned(), v.to_owned(), i));
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
        [("0x01", U256_MAX), ("0x02", "5")].map(|(a, v)| (a.to_owned(), v.to_owned()))
    );
    assert_eq!(
        store.root("0x01", "t").await.unwrap().as_deref(),
        Some("0xab")
    );
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
    let refused =
        async { Err::<RunTail<std::vec::IntoIter<ClaimRecord>>, _>("no trees".to_owned()) };
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
    let mut twice = record("0x05");
    let again = twice.claims[2].clone();
    twice.claims.push(again);
    let err = store.save_run(&twice).await;
    assert!(
        matches!(&err, Err(StoreError::Query { context, .. }) if *context == "saving claims"),
        "{err:?}"
    );
    assert_eq!(
        store.count(StoredTable::Runs).await.unwrap(),
        1,
        "rolled back: no run row"
    );
    assert_eq!(
        store.count(StoredTable::ClaimLeaves).await.unwrap(),
        3,
        "rolled back: no claim rows"
    );
    // Roots and claim rows that disagree on whose leaves are whose: refused, rolled back.
    let mut bad = record("0x06");
    bad.roots[1].leaves_of = Some("nowhere".into());
    let err = store.save_run(&bad).await;
    assert!(
        matches!(&err, Err(StoreError::Leaves { tree, .. }) if tree == "t-uniswap"),
        "{err:?}"
    );
    let mut bad = record("0x07");
    bad.roots[1].leaves = 3;
    let err = store.save_run(&bad).await;
    assert!(
        matches!(&err, Err(StoreError::Leaves { tree, .. }) if tree == "t-uniswap"),
        "{err:?}"
    );
    let mut bad = record("0x08");
    bad.roots[0].leaves_of = Some("t-uniswap".into());
    let err = store.save_run(&bad).await;
    assert!(matches!(&err, Err(StoreError::Leaves { .. })), "{err:?}");
    // Rows given for the tree that shares `t`'s leaves would show twice in `claims`.
    let mut bad = record("0x09");
    bad.claims.push(ClaimRecord {
        tree: "t-uniswap".into(),
        account: "0x03".into(),
        amount: Amount::from(1u64),
        leaf_index: 2,
    });
    let err = store.save_run(&bad).await;
    assert!(
        matches!(&err, Err(StoreError::Leaves { tree, .. }) if tree == "t-uniswap"),
        "{err:?}"
    );
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 1);
    assert_eq!(store.count(StoredTable::Roots).await.unwrap(), 2);
    assert_eq!(store.count(StoredTable::ClaimLeaves).await.unwrap(), 3);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), USERS);
    assert_eq!(
        store.count(StoredTable::UserResults).await.unwrap(),
        USERS,
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
    assert_eq!(again.count(StoredTable::Runs).await.unwrap(), 1);
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

/// recoup stores amounts from their U256 values, so it never writes one above 2^256 − 1; on
/// PostgreSQL the column's own CHECK also refuses one written around recoup.
#[tokio::test]
async fn postgres_rejects_amounts_above_u256_max() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    store.save_run(&record("0x04")).await.unwrap();
    let raw = format!(
        "INSERT INTO claim_leaves (run_seq, tree, account, amount, leaf_index) \
         SELECT seq, 'v', '0x09', '{over}', 0 FROM runs WHERE run_id = '0x04'"
    );
    let err = sqlx::query(sqlx::AssertSqlSafe(raw))
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check"), "{err}");
    store.pool().close().await;
    support::drop_pg_database(&url).await;
}

/// A database made by the first schema (run ids repeated in every row) keeps every row
/// when a newer recoup opens it: the second migration numbers the runs and moves the rows,
/// the third (SQLite) rebuilds `claims` without its amount CHECK.
async fn migrates_rows_of_the_first_schema(url: &str, backend: &str) {
    use sqlx::Row as _;
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
    for sql in [
        "INSERT INTO incidents (id, name, chain_id, snapshot_block) VALUES ('inc', NULL, 1, 5)",
        "INSERT INTO runs (run_id, incident_id, recoup_version, summary_json) VALUES ('0xaa', 'inc', '0.1.0', '{}')",
        "INSERT INTO runs (run_id, incident_id, recoup_version, summary_json) VALUES ('0xbb', 'inc', '0.1.0', '{}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xaa', '0x01', '{\"a\":1}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xbb', '0x01', '{\"b\":1}')",
        "INSERT INTO user_results (run_id, account, result_json) VALUES ('0xbb', '0x02', '{\"b\":2}')",
        "INSERT INTO claims (run_id, tree, account, amount, leaf_index) VALUES ('0xbb', 't', '0x02', '7', 0)",
        "INSERT INTO roots (run_id, tree, format, asset, root, leaves, total) VALUES ('0xbb', 't', 'oz-standard', 'DAI', '0xcd', 1, '7')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = Store::open(url).await.unwrap();
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 2);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), 3);
    assert_eq!(store.count(StoredTable::Claims).await.unwrap(), 1);
    let row = sqlx::query(
        "SELECT c.account, c.amount, c.leaf_index FROM claims c JOIN runs r ON r.seq = c.run_seq WHERE r.run_id = '0xbb'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), "0x02");
    assert_eq!(row.get::<String, _>(1), "7");
    assert_eq!(row.get::<i64, _>(2), 0);
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

#[tokio::test]
async fn sqlite_database_of_the_first_schema_keeps_its_rows() {
    let dir = support::tempdir();
    let url = format!("sqlite:{}", dir.path().join("old.db").display());
    migrates_rows_of_the_first_schema(&url, "sqlite").await;
}

#[tokio::test]
async fn postgres_database_of_the_first_schema_keeps_its_rows() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    migrates_rows_of_the_first_schema(&url, "postgres").await;
    support::drop_pg_database(&url).await;
}

/// `recoup run` on the bundled example into `url`, then the stored run against the files it
/// wrote: the summary byte for byte, one user row per user, each tree's claims exactly the
/// `claims.csv` rows of its asset, each root the summary's. The rows are streamed from the
/// checked policy result on and the summary filled in last, so this is that path, end to end.
async fn run_example_into(url: &str) {
    use sqlx::Row;
    let dir = support::tempdir();
    let out = dir.path().join("out");
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/harbor-2026/incident.toml");
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
    assert_eq!(trees.len(), 3);
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
        // Sorted here: PostgreSQL's collation may order mixed-case text otherwise.
        let mut got: Vec<(String, String)> =
            sqlx::query("SELECT account, amount FROM claims WHERE tree = $1")
                .bind(file)
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        got.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{file}");
        let root = store
            .root(summary["run_id"].as_str().unwrap(), file)
            .await
            .unwrap();
        assert_eq!(root.as_deref(), t["root"].as_str(), "{file}");
    }
    stored_users_are_their_rows_totals(&store, &out).await;
    // The example publishes its USDC claims in two formats with the same leaves: they are
    // stored once, under the tree that owns them, and the rows behind `claims` are the
    // leaves of the trees whose roots name no other's.
    let shared: Vec<(String, String)> =
        sqlx::query_as("SELECT tree, leaves_of FROM roots WHERE leaves_of IS NOT NULL")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        shared,
        [(
            "usdc-merkle-distributor.json".to_owned(),
            "usdc-claims.json".to_owned()
        )]
    );
    let owned: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(leaves) AS BIGINT) FROM roots WHERE leaves_of IS NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(store.count(StoredTable::ClaimLeaves).await.unwrap(), owned);
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

#[tokio::test]
async fn sqlite_stores_the_example_run_as_its_files_state_it() {
    let dir = support::tempdir();
    run_example_into(&format!("sqlite:{}", dir.path().join("r.db").display())).await;
}

#[tokio::test]
async fn postgres_stores_the_example_run_as_its_files_state_it() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    run_example_into(&url).await;
    support::drop_pg_database(&url).await;
}
