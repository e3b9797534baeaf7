//! Agents played by workers: the owning engine registers `RemoteRole`s for ALPHA, BETA and
//! GAMMA, workers claim the work through the consumer group, and a worker that dies mid-run is
//! replaced by another after its lease.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::roles::{Alpha, Beta, Gamma};
use governance_core::{
    Agent, Config, EventKind, Governance, LocalLlm, LocalLlmConfig, MemoryStore, PipelineId,
    PipelineStatus, SpawnRequest,
};
use governance_redis::{RedisBackend, RemoteRole, Worker};
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    Config {
        agent_poll_interval: Duration::from_millis(20),
        ..Config::default()
    }
}

fn owner(b: &RedisBackend) -> Governance {
    Governance::builder()
        .config(config())
        .blackboard(b.blackboard())
        .bus(b.bus())
        .stores(Arc::new(MemoryStore::default()))
        .alpha(Arc::new(RemoteRole::new(b, "ALPHA", true).unwrap()))
        .beta(Arc::new(RemoteRole::new(b, "BETA", true).unwrap()))
        .gamma(Arc::new(RemoteRole::new(b, "GAMMA", true).unwrap()))
        .build()
        .expect("owner builds")
}

fn worker(b: &RedisBackend, name: &str, latency: Duration, lease: Duration) -> Worker {
    let roles: Vec<Arc<dyn Agent>> = vec![Arc::new(Alpha), Arc::new(Beta), Arc::new(Gamma)];
    Worker::new(
        b,
        name,
        roles,
        Arc::new(LocalLlm::new(LocalLlmConfig {
            latency,
            ..LocalLlmConfig::default()
        })),
        config(),
        lease,
    )
    .expect("worker builds")
}

async fn check_finished(gov: &Governance, id: &PipelineId) {
    let rec = gov.wait(id, false).await.unwrap();
    assert_eq!(
        rec.status,
        PipelineStatus::Completed,
        "{id}: {:?}",
        rec.failure
    );
    let events = gov.events(id, 0, 10_000).await.unwrap();
    let consensus = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ConsensusReached { .. }))
        .count();
    assert_eq!(consensus, 1, "{id}: exactly one consensus in the ledger");
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ProposalCreated { author, .. } if author.as_str() == "ALPHA")),
        "{id}: ALPHA's proposal, played by a worker, is in the owner's ledger"
    );
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::LlmCall { agent_id, .. } if agent_id.as_str() == "BETA")),
        "{id}: BETA's LLM calls are in the owner's ledger: {:?}",
        events
            .iter()
            .map(|e| format!("{}:{:?}", e.kind.type_name(), e.kind.agent_id()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_play_the_roles_of_pipelines_they_do_not_own() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let gov = owner(&b);
    let cancel = CancellationToken::new();
    let lease = Duration::from_secs(2);
    let w1 = tokio::spawn(
        worker(&backend(&server).await, "w1", Duration::ZERO, lease).run(cancel.clone()),
    );
    let w2 = tokio::spawn(
        worker(&backend(&server).await, "w2", Duration::ZERO, lease).run(cancel.clone()),
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            gov.spawn(SpawnRequest::new(format!("remote objective {i}")))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        check_finished(&gov, id).await;
    }
    cancel.cancel();
    w1.await.unwrap().unwrap();
    w2.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_roles_are_taken_over_after_its_lease() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let gov = owner(&b);
    let mut live = gov.subscribe();
    let lease = Duration::from_millis(900);
    let cancel = CancellationToken::new();
    // w1 is slow, so it is mid-run when it dies
    let w1 = tokio::spawn(
        worker(
            &backend(&server).await,
            "w1",
            Duration::from_millis(150),
            lease,
        )
        .run(CancellationToken::new()),
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            gov.spawn(SpawnRequest::new(format!("takeover objective {i}")))
                .await
                .unwrap(),
        );
    }
    // wait until w1 is playing (an event reported by a worker reached the ledger)
    loop {
        let e = live.recv().await.unwrap();
        if matches!(&e.kind, EventKind::LlmCall { agent_id, .. } if agent_id.as_str() == "ALPHA") {
            break;
        }
    }
    w1.abort(); // dies without acknowledging or saying goodbye
    let _ = w1.await;
    let running = ids.len();
    assert!(running > 0);
    let w2 = tokio::spawn(
        worker(&backend(&server).await, "w2", Duration::ZERO, lease).run(cancel.clone()),
    );
    for id in &ids {
        check_finished(&gov, id).await;
    }
    cancel.cancel();
    w2.await.unwrap().unwrap();
}
