//! A Redis that loses its data while a pipeline runs an approval *revision round*: the rebuild
//! replays each round on its own and re-makes the round's fresh board between them, so the
//! round goes on and the reviewer is asked about the new round's outcome, never again about the
//! proposal they rejected.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    ApprovalDecision, Config, Event, EventKind, Governance, LocalLlm, LocalLlmConfig, MemoryStore,
    PipelineId, PipelineStatus as S, SpawnRequest,
};

const PIPELINES: usize = 4;

async fn engine(server: &RedisServer) -> Governance {
    let b = backend(server).await;
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        // slow enough that a revision round is still running when Redis goes away
        conf.latency = Duration::from_millis(150);
        conf
    });
    Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf.approval.max_revisions = 2;
            conf
        })
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()))
        .llm("local", Arc::new(llm))
        .build()
        .expect("engine builds")
}

/// Waits until `id` rests at AWAITING_APPROVAL (or ends); returns its status.
async fn wait_waiting(gov: &Governance, id: &PipelineId) -> S {
    for _ in 0..6000 {
        let rec = gov.get(id).await.expect("record");
        if rec.status == S::AwaitingApproval || rec.status.is_terminal() {
            return rec.status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never came to rest");
}

/// The proposal asked about in each `approval_requested`, in order.
fn asked(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ApprovalRequested { proposal_id, .. } => Some(
                proposal_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            _ => None,
        })
        .collect()
}

/// Whether the revision round has written a proposal (after the rejection).
fn round_started(events: &[Event]) -> bool {
    let Some(rejected_at) = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::ApprovalDecided { approve: false, .. }))
    else {
        return false;
    };
    events[rejected_at..]
        .iter()
        .any(|e| matches!(e.kind, EventKind::ProposalCreated { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revision_round_survives_redis_coming_back_empty() {
    let mut server = RedisServer::start();
    let gov = engine(&server).await;
    let mut ids = Vec::new();
    for i in 0..PIPELINES {
        let mut req = SpawnRequest::new(format!("Plan a zero-downtime migration of database {i}"));
        req.require_approval = Some(true);
        ids.push(gov.spawn(req).await.expect("spawn"));
    }
    for id in &ids {
        assert_eq!(wait_waiting(&gov, id).await, S::AwaitingApproval);
        let decision = ApprovalDecision::reject("reviewer", "cover the rollback").for_revision(0);
        gov.approve(id, decision).await.expect("reject");
    }
    // Redis goes away once every revision round has begun, and comes back with nothing
    for _ in 0..6000 {
        let mut started = 0;
        for id in &ids {
            let events = gov.events(id, 0, 100_000).await.expect("events");
            if round_started(&events) {
                started += 1;
            }
        }
        if started == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again();

    let mut rebuilt = 0;
    for id in &ids {
        let status = wait_waiting(&gov, id).await;
        let events = gov.events(id, 0, 100_000).await.expect("events");
        if events
            .iter()
            .any(|e| matches!(e.kind, EventKind::CoordinationRebuilt { .. }))
        {
            rebuilt += 1;
        }
        let rec = gov.get(id).await.expect("record");
        assert_eq!(status, S::AwaitingApproval, "{id}: {:?}", rec.failure);
        let asked = asked(&events);
        assert_eq!(asked.len(), 2, "{id}: asked {asked:?}");
        assert_ne!(
            asked[0], asked[1],
            "{id}: the reviewer is asked again about the proposal they rejected"
        );
        let done = gov
            .approve(id, ApprovalDecision::approve("reviewer").for_revision(1))
            .await
            .expect("approve");
        assert_eq!(done, S::Completed);
        let consensus = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ConsensusReached { .. }))
            .count();
        assert_eq!(consensus, 2, "{id}: one consensus per round");
    }
    assert!(
        rebuilt > 0,
        "Redis lost its data mid-round, yet no ledger shows a rebuild"
    );
}
