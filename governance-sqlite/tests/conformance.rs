//! The `governance_core::testkit` conformance suites on a real SQLite file.

mod common;

use std::sync::Arc;

use governance_core::testkit::{
    checkpoint_suite, failed_commit_leaves_nothing, ledger_suite, registry_suite, state_store_suite,
};
use governance_sqlite::{SqliteOptions, SqliteStore};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_store_conforms() {
    let db = common::temp_db();
    state_store_suite(Arc::new(common::open(&db).await)).await;
    let report = governance_sqlite::verify(&db.path).expect("verify");
    assert!(report.is_intact(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_past_the_size_cap_leaves_nothing_behind() {
    let db = common::temp_db();
    let options = {
        let mut conf = SqliteOptions::default();
        conf.max_size_bytes = Some(256 * 1024);
        conf
    };
    let store = SqliteStore::open_with(&db.path, options)
        .await
        .expect("open");
    // the second commit's checkpoint alone is larger than the whole file may grow
    let err = failed_commit_leaves_nothing(
        Arc::new(store),
        governance_core::PipelineId::generate(),
        1024 * 1024,
        || async {},
    )
    .await;
    assert!(err.to_string().contains("full"), "{err}");
}
