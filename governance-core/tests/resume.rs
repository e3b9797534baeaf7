//! A process dies mid-orchestration; a new engine on the same stores resumes and finishes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use governance_core::{
    Fault, FaultKind, Governance, LocalLlm, LocalLlmConfig, MemoryBlackboard, MemoryStore,
    PipelineRegistry, PipelineStatus, Purpose, SpawnRequest,
};

#[test]
fn a_pipeline_whose_process_died_is_resumed_and_completes_without_doubling() {
    let store = Arc::new(MemoryStore::default());
    // process 1: BETA never answers; the process dies (its runtime is dropped) mid-run
    let id = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let llm = LocalLlm::new(faults(vec![Fault::new(
                Some("BETA"),
                Some(Purpose::Evaluate),
                FaultKind::Stall,
                u32::MAX,
            )]));
            let gov = Governance::builder()
                .config(fast_config())
                .llm("local", Arc::new(llm))
                .stores(store.clone())
                .build()
                .unwrap();
            let mut rx = gov.subscribe();
            let id = gov
                .spawn(SpawnRequest::new("Design a caching strategy"))
                .await
                .unwrap();
            while rx.recv().await.unwrap().kind.type_name() != "proposal_created" {}
            id
        })
        // dropping the runtime kills every task: no stop, no final checkpoint
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let before = store.get(&id).await.unwrap().unwrap();
        assert!(
            !before.status.is_terminal(),
            "the crash left it unfinished: {}",
            before.status
        );
        // process 2: a fresh blackboard (the in-memory one died with the process), same stores
        let gov = Governance::builder()
            .config(fast_config())
            .llm("local", Arc::new(LocalLlm::new(LocalLlmConfig::default())))
            .blackboard(Arc::new(MemoryBlackboard::default()))
            .stores(store.clone())
            .build()
            .unwrap();
        let resumed = gov.resume_incomplete().await.unwrap();
        assert_eq!(resumed, vec![id.clone()]);
        let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id, false))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
        let events = gov.events(&id, 0, 10_000).await.unwrap();
        assert_gap_free(&events);
        assert_eq!(count(&events, "consensus_reached"), 1);
        assert_eq!(
            count(&events, "proposal_created"),
            1,
            "ALPHA's proposal was rebuilt from the ledger, not written again"
        );
        assert!(
            gov.resume_incomplete().await.unwrap().is_empty(),
            "nothing left to resume"
        );
    });
}
