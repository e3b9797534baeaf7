//! The `governance_core::testkit` conformance suites on a real SQLite file.

mod common;

use std::sync::Arc;

use governance_core::testkit::{checkpoint_suite, ledger_suite, registry_suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_conforms() {
    let db = common::temp_db();
    let store = Arc::new(common::open(&db).await);
    ledger_suite(store.clone()).await;
    let report = governance_sqlite::verify(&db.path).expect("verify");
    assert!(report.is_intact(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_conform() {
    let db = common::temp_db();
    checkpoint_suite(Arc::new(common::open(&db).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_conforms() {
    let db = common::temp_db();
    registry_suite(Arc::new(common::open(&db).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suites_pass_twice_on_one_file_after_reopen() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    ledger_suite(Arc::new(store.clone())).await;
    store.close().await.expect("close");
    let store = Arc::new(common::open(&db).await);
    ledger_suite(store.clone()).await;
    checkpoint_suite(store).await;
}
