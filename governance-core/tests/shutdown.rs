//! Graceful shutdown suspends running pipelines with a checkpoint; a later engine resumes them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use governance_core::{
    Fault, FaultKind, Governance, LocalLlm, LocalLlmConfig, MemoryBlackboard, MemoryStore,
    PipelineRegistry, PipelineStatus, Purpose, SpawnRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_checkpoints_running_pipelines_and_a_new_engine_resumes_them() {
    let store = Arc::new(MemoryStore::default());
    let board = Arc::new(MemoryBlackboard::default()); // shared, like Redis would be
    let stall = Fault::new(
        Some("BETA"),
        Some(Purpose::Evaluate),
        FaultKind::Stall,
        u32::MAX,
    );
    let a = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(LocalLlm::new(faults(vec![stall]))))
        .blackboard(board.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let mut rx = a.subscribe();
    let id = a
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    while rx.recv().await.unwrap().kind.type_name() != "vote_cast" {}
    a.shutdown(Duration::from_secs(10)).await;
    assert!(
        a.spawn(SpawnRequest::new("late")).await.is_err(),
        "no new work after shutdown"
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        rec.status,
        PipelineStatus::Orchestrating,
        "suspended, not stopped"
    );
    let events = a.events(&id, 0, 1000).await.unwrap();
    assert_eq!(
        events.last().unwrap().kind.type_name(),
        "checkpoint_created",
        "a checkpoint was the last thing written"
    );

    let b = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(LocalLlm::new(LocalLlmConfig::default())))
        .blackboard(board)
        .store(store.clone())
        .build()
        .unwrap();
    assert_eq!(b.resume_incomplete().await.unwrap(), vec![id.clone()]);
    let rec = b.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    let events = b.events(&id, 0, 1000).await.unwrap();
    assert_gap_free(&events);
    assert_eq!(count(&events, "consensus_reached"), 1);
    assert_eq!(count(&events, "proposal_created"), 1);
}
