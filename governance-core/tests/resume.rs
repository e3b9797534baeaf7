//! A process dies mid-orchestration; a new engine on the same stores resumes and finishes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use governance_core::{
    Fault, FaultKind, Governance, LocalLlm, LocalLlmConfig, MemoryBlackboard, MemoryStore,
    PipelineRegistry, PipelineStatus, Purpose, SpawnRequest, SplitStore,
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
                .store(store.clone())
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
            .store(store.clone())
            .build()
            .unwrap();
        let resumed = gov.resume_incomplete().await.unwrap();
        assert_eq!(resumed, vec![id.clone()]);
        let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id))
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

/// A ledger whose process "dies" right before `consensus_reached` is written.
#[derive(Debug)]
struct DiesBeforeConsensus(Arc<MemoryStore>);

#[async_trait::async_trait]
impl governance_core::LedgerStore for DiesBeforeConsensus {
    async fn append(&self, events: &[governance_core::Event]) -> governance_core::Result<()> {
        if events
            .iter()
            .any(|e| e.kind.type_name() == "consensus_reached")
        {
            std::future::pending::<()>().await;
        }
        self.0.append(events).await
    }
    async fn read(
        &self,
        p: &governance_core::PipelineId,
        after: u64,
        limit: usize,
    ) -> governance_core::Result<Vec<governance_core::Event>> {
        self.0.read(p, after, limit).await
    }
    async fn last_seq(&self, p: &governance_core::PipelineId) -> governance_core::Result<u64> {
        self.0.last_seq(p).await
    }
}

#[test]
fn a_consensus_decided_but_not_yet_in_the_ledger_is_recorded_once_on_resume() {
    let store = Arc::new(MemoryStore::default());
    let id = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let gov = Governance::builder()
                .config(fast_config())
                .store(Arc::new(SplitStore::new(
                    Arc::new(DiesBeforeConsensus(store.clone())),
                    store.clone(),
                    store.clone(),
                )))
                .build()
                .unwrap();
            let mut rx = gov.subscribe();
            let id = gov.spawn(SpawnRequest::new("Design a caching strategy")).await.unwrap();
            // BETA's deciding vote is in the ledger; consensus_reached never will be
            loop {
                let ev = rx.recv().await.unwrap();
                if matches!(&ev.kind, governance_core::EventKind::VoteCast { voter, .. } if voter.as_str() == "BETA") {
                    break;
                }
            }
            id
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gov = Governance::builder()
            .config(fast_config())
            .store(store.clone())
            .build()
            .unwrap();
        assert_eq!(gov.resume_incomplete().await.unwrap(), vec![id.clone()]);
        let rec = tokio::time::timeout(Duration::from_secs(20), gov.wait(&id))
            .await
            .expect("finishes without waiting for STUCK")
            .unwrap();
        assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
        let events = gov.events(&id, 0, 10_000).await.unwrap();
        assert_gap_free(&events);
        assert_eq!(
            count(&events, "consensus_reached"),
            1,
            "the consensus is recorded exactly once"
        );
        assert_eq!(count(&events, "gamma_spawned"), 0, "nobody got stuck");
    });
}

/// A ledger that never stores events of one type (the process "dies" right before).
#[derive(Debug)]
struct DiesBefore(Arc<MemoryStore>, &'static str);

#[async_trait::async_trait]
impl governance_core::LedgerStore for DiesBefore {
    async fn append(&self, events: &[governance_core::Event]) -> governance_core::Result<()> {
        if events.iter().any(|e| e.kind.type_name() == self.1) {
            std::future::pending::<()>().await;
        }
        self.0.append(events).await
    }
    async fn read(
        &self,
        p: &governance_core::PipelineId,
        after: u64,
        limit: usize,
    ) -> governance_core::Result<Vec<governance_core::Event>> {
        self.0.read(p, after, limit).await
    }
    async fn last_seq(&self, p: &governance_core::PipelineId) -> governance_core::Result<u64> {
        self.0.last_seq(p).await
    }
}

/// With a blackboard that outlives the process (Redis), a proposal can be on the blackboard
/// while its `proposal_created` event and its author's endorsement never happened. The engine
/// that resumes records the proposal, the author endorses it on restart, and the pipeline goes
/// on without waiting for a STUCK mediator.
#[test]
fn a_proposal_written_but_not_recorded_is_recorded_and_endorsed_on_resume() {
    use governance_core::Blackboard as _;
    let store = Arc::new(MemoryStore::default());
    let blackboard = Arc::new(MemoryBlackboard::default());
    let id = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let gov = Governance::builder()
                .config(fast_config())
                .blackboard(blackboard.clone())
                .store(Arc::new(SplitStore::new(
                    Arc::new(DiesBefore(store.clone(), "proposal_created")),
                    store.clone(),
                    store.clone(),
                )))
                .build()
                .unwrap();
            let id = gov
                .spawn(SpawnRequest::new("Design a caching strategy"))
                .await
                .unwrap();
            while blackboard.proposals(&id).await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            id
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let orphan = blackboard.proposals(&id).await.unwrap()[0].clone();
        assert!(orphan.votes.is_empty(), "the author died before endorsing");
        let gov = Governance::builder()
            .config(fast_config())
            .blackboard(blackboard.clone())
            .store(store.clone())
            .build()
            .unwrap();
        assert_eq!(gov.resume_incomplete().await.unwrap(), vec![id.clone()]);
        let rec = tokio::time::timeout(Duration::from_secs(20), gov.wait(&id))
            .await
            .expect("finishes without waiting for STUCK")
            .unwrap();
        assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
        let events = gov.events(&id, 0, 10_000).await.unwrap();
        assert_gap_free(&events);
        let created = events
            .iter()
            .filter(|e| matches!(&e.kind, governance_core::EventKind::ProposalCreated { proposal_id, .. } if *proposal_id == orphan.id))
            .count();
        assert_eq!(created, 1, "the orphaned proposal is recorded exactly once");
        assert!(
            events.iter().any(|e| matches!(&e.kind,
                governance_core::EventKind::VoteCast { proposal_id, voter, .. }
                    if *proposal_id == orphan.id && *voter == orphan.author)),
            "its author endorsed it after the restart"
        );
        assert_eq!(count(&events, "gamma_spawned"), 0, "nobody got stuck");
    });
}
