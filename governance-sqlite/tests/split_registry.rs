//! A SQLite ledger combined with another registry through `SplitStore`: the other registry
//! is written at every status change (before the one-store builder, an engine built with
//! `.ledger(sqlite).registry(other)` wrote its records into SQLite's own table and never
//! updated `other`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use governance_core::{
    CheckpointStore, Config, Governance, LedgerStore, MemoryStore, PipelineRegistry,
    PipelineStatus, SpawnRequest, SplitStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_ledger_with_another_registry_updates_that_registry() {
    let db = common::temp_db();
    let sqlite = Arc::new(common::open(&db).await);
    let other = Arc::new(MemoryStore::new());
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(20);
            conf
        })
        .store(Arc::new(SplitStore::new(
            sqlite.clone(),
            other.clone(),
            other.clone(),
        )))
        .build()
        .expect("engine builds");
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .expect("spawn");
    let done = gov.wait(&id).await.expect("wait");
    assert_eq!(done.status, PipelineStatus::Completed, "{:?}", done.failure);

    let record = other
        .get(&id)
        .await
        .unwrap()
        .expect("the other registry has the record");
    assert_eq!(record.status, PipelineStatus::Completed);
    assert!(
        other
            .latest(&id)
            .await
            .unwrap()
            .expect("checkpoint")
            .is_final
    );
    assert!(sqlite.last_seq(&id).await.unwrap() >= record.last_seq);
    assert!(record.last_seq > 0);
    // SQLite held the ledger only
    assert!(sqlite.get(&id).await.unwrap().is_none());
    assert_eq!(sqlite.count(&id).await.unwrap(), 0);
}
