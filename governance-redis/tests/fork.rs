//! A fork on a Redis blackboard (a real redis-server): the fork's blackboard is built in Redis
//! from the source's ledger up to the fork point, and because the fork records what it was
//! given as its own events, a Redis that comes back empty while the fork runs is rebuilt from
//! the fork's own ledger with the carried proposal on it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    Config, EventKind, ForkOverrides, ForkPoint, ForkRequest, Governance, LocalLlm, LocalLlmConfig,
    MemoryStore, PipelineStatus as S, SpawnRequest,
};

#[tokio::test]
async fn a_forks_blackboard_is_built_in_redis_and_rebuilt_from_its_own_ledger() {
    let mut server = RedisServer::start();
    let b = backend(&server).await;
    let store = Arc::new(MemoryStore::default());
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf
        })
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(store)
        .llm(
            "local",
            Arc::new(LocalLlm::new({
                let mut conf = LocalLlmConfig::default();
                // slow enough that the fork is still orchestrating when Redis goes away
                conf.latency = Duration::from_millis(150);
                conf
            })),
        )
        .build()
        .expect("engine builds");

    let mut req = SpawnRequest::new("Design a caching strategy");
    req.auto_continue = Some(true);
    let src = gov.spawn(req).await.expect("spawn");
    assert_eq!(gov.wait(&src).await.unwrap().status, S::Completed);
    let source = gov.events(&src, 0, 10_000).await.unwrap();
    let (seq, proposal, title) = source
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ProposalCreated {
                proposal_id, title, ..
            } => Some((e.seq, proposal_id.clone(), title.clone())),
            _ => None,
        })
        .expect("the source made a proposal");

    let forked = gov
        .fork(
            &src,
            ForkRequest {
                at: ForkPoint::Seq(seq),
                overrides: ForkOverrides::default(),
            },
        )
        .await
        .expect("fork");
    assert_eq!(forked.status, S::Orchestrating);
    let id = forked.pipeline_id.clone();
    // the fork's blackboard is in Redis, holding the source's proposal of the fork point
    let board = b.blackboard().snapshot(&id).await.expect("redis snapshot");
    let carried = board
        .proposals
        .iter()
        .find(|p| p.id == proposal)
        .expect("the carried proposal is on the fork's Redis blackboard");
    assert_eq!(carried.title, title);

    // Redis comes back empty while the fork runs
    server.kill();
    server.start_again();
    let done = tokio::time::timeout(Duration::from_secs(120), gov.wait(&id))
        .await
        .expect("the fork settles")
        .unwrap();
    assert_eq!(done.status, S::Completed, "{:?}", done.failure);
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    assert!(matches!(
        &events[0].kind,
        EventKind::ForkedFrom { source, seq: s, .. } if *source == src && *s == seq
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ConsensusReached { .. }))
            .count(),
        1
    );
    // the loss hit it mid-orchestration (it had several slow LLM calls to go): its blackboard
    // was rebuilt from its own ledger, which holds the proposal it was given
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::CoordinationRebuilt { .. })),
        "the fork was not rebuilt: {events:#?}"
    );
    let end = gov.blackboard_snapshot(&id).await.unwrap();
    assert!(
        end.proposals.iter().any(|p| p.id == proposal),
        "{:?}",
        end.proposals
    );
    // the source is as it was
    assert_eq!(gov.events(&src, 0, 10_000).await.unwrap(), source);
}
