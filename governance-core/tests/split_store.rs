//! Separate ledger, checkpoint and registry backends are combined only through `SplitStore`,
//! and then every one of them is written: a pipeline run on three distinct stores leaves its
//! events in the first, its checkpoints in the second and its record in the third.

mod common;

use std::sync::Arc;

use governance_core::{
    CheckpointStore, Governance, LedgerStore, MemoryStore, PipelineRegistry, PipelineStatus,
    SpawnRequest, SplitStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_store_writes_each_of_its_parts() {
    let (ledger, checkpoints, registry) = (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
    );
    let gov = Governance::builder()
        .config(common::fast_config())
        .store(Arc::new(SplitStore::new(
            ledger.clone(),
            checkpoints.clone(),
            registry.clone(),
        )))
        .build()
        .expect("engine builds");
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .expect("spawn");
    let done = gov.wait(&id).await.expect("wait");
    assert_eq!(done.status, PipelineStatus::Completed, "{:?}", done.failure);

    let record = registry
        .get(&id)
        .await
        .unwrap()
        .expect("the registry part has the record");
    assert_eq!(record.status, PipelineStatus::Completed);
    let last = ledger.last_seq(&id).await.unwrap();
    assert!(last > 0, "the ledger part has the events");
    assert_eq!(
        record.last_seq, last,
        "the record is consistent with the ledger"
    );
    let checkpoint = checkpoints
        .latest(&id)
        .await
        .unwrap()
        .expect("the checkpoint part has the final checkpoint");
    assert!(checkpoint.is_final);
    assert_eq!(checkpoint.seq, last);
    // and nothing went where it does not belong
    assert_eq!(registry.last_seq(&id).await.unwrap(), 0);
    assert!(ledger.get(&id).await.unwrap().is_none());
    assert!(checkpoints.get(&id).await.unwrap().is_none());
    assert_eq!(ledger.count(&id).await.unwrap(), 0);
}
