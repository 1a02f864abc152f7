//! The store on real SQLite and real PostgreSQL: migrations, idempotent runs, rollback.

use crate::support;
use recoup::store::{
    ClaimRecord, IncidentRecord, RootRecord, RunRecord, Saved, Store, StoredTable,
};

fn record(run_id: &str, amount: &str) -> RunRecord {
    RunRecord {
        incident: IncidentRecord {
            id: "inc".into(),
            name: Some("Test".into()),
            chain_id: 1,
            snapshot_block: 100,
        },
        run_id: run_id.into(),
        summary_json: "{}".into(),
        users: (0..2500)
            .map(|i| (format!("0x{i:040x}"), format!("{{\"i\":{i}}}")))
            .collect(),
        claims: vec![
            ClaimRecord {
                tree: "t".into(),
                account: "0x01".into(),
                amount:
                    "115792089237316195423570985008687907853269984665640564039457584007913129639935"
                        .into(),
                leaf_index: 0,
            },
            ClaimRecord {
                tree: "t".into(),
                account: "0x02".into(),
                amount: amount.into(),
                leaf_index: 1,
            },
        ],
        roots: vec![RootRecord {
            tree: "t".into(),
            format: "oz-standard".into(),
            asset: "DAI".into(),
            root: "0xab".into(),
            leaves: 2,
            total: "5".into(),
        }],
    }
}

async fn exercise(store: &Store) {
    assert_eq!(
        store.save_run(&record("0x01", "5")).await.unwrap(),
        Saved::Inserted
    );
    // Same run again: idempotent, nothing added.
    assert_eq!(
        store.save_run(&record("0x01", "5")).await.unwrap(),
        Saved::AlreadyStored
    );
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 1);
    assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), 2500);
    assert_eq!(store.count(StoredTable::Claims).await.unwrap(), 2);
    assert_eq!(
        store.root("0x01", "t").await.unwrap().as_deref(),
        Some("0xab")
    );
    // A claim amount that is not base-unit digits violates the CHECK: the whole run rolls back.
    let err = store.save_run(&record("0x02", "-5")).await;
    assert!(
        err.is_err(),
        "a negative amount must be rejected by the schema"
    );
    assert_eq!(
        store.count(StoredTable::Runs).await.unwrap(),
        1,
        "rolled back: no run row"
    );
    assert_eq!(
        store.count(StoredTable::UserResults).await.unwrap(),
        2500,
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

#[tokio::test]
async fn postgres_rejects_amounts_above_u256_max() {
    let Some(url) = support::fresh_pg_database().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    assert!(store.save_run(&record("0x03", over)).await.is_err());
    assert_eq!(store.count(StoredTable::Runs).await.unwrap(), 0);
    store.pool().close().await;
    support::drop_pg_database(&url).await;
}
