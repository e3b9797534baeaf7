//! The `governance_core::testkit` conformance suites on the real PostgreSQL server, each test
//! in a schema of its own.

mod common;

use std::sync::Arc;

use governance_core::testkit::{checkpoint_suite, ledger_suite, registry_suite, state_store_suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_conforms_and_verifies() {
    let db = common::TestSchema::new();
    let store = Arc::new(db.store().await);
    ledger_suite(store.clone()).await;
    let report = store.verify().await.expect("verify");
    assert!(report.is_intact(), "{report}");
    assert!(report.entries > 0 && report.warnings.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_conform() {
    let db = common::TestSchema::new();
    checkpoint_suite(Arc::new(db.store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_conforms() {
    let db = common::TestSchema::new();
    registry_suite(Arc::new(db.store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_store_conforms() {
    let db = common::TestSchema::new();
    let store = Arc::new(db.store().await);
    state_store_suite(store.clone()).await;
    let report = store.verify().await.expect("verify");
    assert!(report.is_intact(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suites_pass_twice_on_one_schema_after_reconnect() {
    let db = common::TestSchema::new();
    ledger_suite(Arc::new(db.store().await)).await;
    let again = Arc::new(db.store().await);
    ledger_suite(again.clone()).await;
    checkpoint_suite(again.clone()).await;
    assert!(again.verify().await.expect("verify").is_intact());
}
