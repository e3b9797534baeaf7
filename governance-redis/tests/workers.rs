//! Agents played by workers: the owning engine registers `RemoteRole`s for ALPHA, BETA and
//! GAMMA, workers claim the work through the consumer group, and a worker that dies mid-run is
//! replaced by another after its lease.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    Agent, Config, EventKind, Governance, LlmClient, LlmRequest, LlmResponse, LocalLlm,
    LocalLlmConfig, MemoryStore, Message, PipelineId, PipelineStatus, SpawnRequest,
};
use governance_core::{Alpha, Beta, Gamma};
use governance_redis::{RedisBackend, RemoteRole, Worker};
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    let mut conf = Config::default();
    conf.agent_poll_interval = Duration::from_millis(20);
    conf
}

fn owner(b: &RedisBackend) -> Governance {
    Governance::builder()
        .config(config())
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()))
        .remote_role(Arc::new(RemoteRole::new(b, "ALPHA", true).unwrap()))
        .remote_role(Arc::new(RemoteRole::new(b, "BETA", true).unwrap()))
        .remote_role(Arc::new(RemoteRole::new(b, "GAMMA", true).unwrap()))
        .build()
        .expect("owner builds")
}

fn worker(b: &RedisBackend, name: &str, latency: Duration, lease: Duration) -> Worker {
    let roles: Vec<Arc<dyn Agent>> = vec![Arc::new(Alpha), Arc::new(Beta), Arc::new(Gamma)];
    Worker::new(
        b,
        name,
        roles,
        Arc::new(LocalLlm::new({
            let mut conf = LocalLlmConfig::default();
            conf.latency = latency;
            conf
        })),
        config(),
        lease,
    )
    .expect("worker builds")
}

/// A worker like [`worker`] with its own LLM client.
fn worker_with(b: &RedisBackend, name: &str, llm: Arc<dyn LlmClient>, lease: Duration) -> Worker {
    let roles: Vec<Arc<dyn Agent>> = vec![Arc::new(Alpha), Arc::new(Beta), Arc::new(Gamma)];
    Worker::new(b, name, roles, llm, config(), lease).expect("worker builds")
}

/// The local LLM, noting which pipeline and agent each call was for.
#[derive(Debug, Clone, Default)]
struct CallLog {
    llm: LocalLlm,
    calls: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl CallLog {
    fn asked(&self, pipeline: &str, agent: &str) -> bool {
        let calls = self.calls.lock().unwrap();
        calls.iter().any(|(p, a)| p == pipeline && a == agent)
    }
}

#[async_trait::async_trait]
impl LlmClient for CallLog {
    fn name(&self) -> &str {
        self.llm.name()
    }
    fn default_model(&self) -> &str {
        self.llm.default_model()
    }
    async fn complete(&self, r: &LlmRequest) -> governance_core::Result<LlmResponse> {
        self.calls
            .lock()
            .unwrap()
            .push((r.meta.pipeline_id.to_string(), r.meta.agent_id.to_string()));
        self.llm.complete(r).await
    }
}

/// The work entries pending for `consumer` in the role streams: (stream, entry id, pipeline,
/// role).
async fn pending_work(
    conn: &mut redis::aio::MultiplexedConnection,
    consumer: &str,
) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for role in ["ALPHA", "BETA", "GAMMA"] {
        let stream = format!("gov:work:{role}");
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(governance_redis::remote::WORKER_GROUP)
            .arg("-")
            .arg("+")
            .arg(1000)
            .arg(consumer)
            .query_async(conn)
            .await
            .unwrap_or_default();
        for (entry, _, _, _) in pending {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&entry)
                .arg(&entry)
                .query_async(conn)
                .await
                .unwrap();
            let json: String = reply.ids[0].get("w").expect("a work item");
            let item: governance_redis::WorkItem = serde_json::from_str(&json).unwrap();
            out.push((
                stream.clone(),
                entry,
                item.pipeline_id.to_string(),
                item.role.to_string(),
            ));
        }
    }
    out
}

/// ALPHA's worker reporting `event` (wire protocol v2: topic `control`, a tagged envelope).
fn report(event: &serde_json::Value) -> Message {
    let content = serde_json::json!({"type": "event", "event": event});
    Message::new(
        "ALPHA".parse().unwrap(),
        "ORCHESTRATOR",
        "control",
        content.to_string(),
    )
}

async fn check_finished(gov: &Governance, id: &PipelineId) {
    let rec = gov.wait(id).await.unwrap();
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
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let held = pending_work(&mut conn, "w1").await;
    assert!(!held.is_empty(), "w1 died holding work");
    let w2_llm = CallLog::default();
    let w2 = tokio::spawn(
        worker_with(
            &backend(&server).await,
            "w2",
            Arc::new(w2_llm.clone()),
            lease,
        )
        .run(cancel.clone()),
    );
    for id in &ids {
        check_finished(&gov, id).await;
    }
    // w2 took w1's work over. Only a worker finishes (acknowledges and deletes) a work entry,
    // and an entry pending for a dead consumer reaches another one only by XAUTOCLAIM after
    // the lease: every entry w1 held was finished after it died, so w2 claimed it. Where the
    // pipeline still needed the role, w2 played it (asked its LLM as that role); where the
    // pipeline had gone on without it, w2 dropped it.
    for (stream, entry, _, _) in &held {
        let left: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(entry)
            .arg(entry)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(left.ids.is_empty(), "{stream} {entry} was never finished");
    }
    assert!(
        held.iter().any(|(_, _, p, role)| w2_llm.asked(p, role)),
        "w2 played none of the roles w1 held: {held:?}"
    );
    assert!(pending_work(&mut conn, "w1").await.is_empty());
    cancel.cancel();
    w2.await.unwrap().unwrap();
}

/// A remote agent may report only what an agent itself does, about itself: a forged status
/// change or another agent's vote never reaches the ledger; its own message does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_remote_reports_are_refused() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let gov = owner(&b);
    let mut live = gov.subscribe();
    let id = gov
        .spawn(SpawnRequest::new("nobody plays ALPHA here but us"))
        .await
        .unwrap();
    // wait until ALPHA's work is queued (the orchestration started)
    loop {
        let e = live.recv().await.unwrap();
        if e.pipeline_id() == &id
            && matches!(&e.kind, EventKind::AgentSpawned { agent_id, .. } if agent_id.as_str() == "ALPHA")
        {
            break;
        }
    }
    let bus = b.bus();
    let pid = id.to_string();
    for forged in [
        serde_json::json!({"type": "status_changed", "data": {"pipeline_id": pid, "status": "COMPLETED"}}),
        serde_json::json!({"type": "vote_cast", "data": {"pipeline_id": pid, "proposal_id": "ALPHA-1",
            "voter": "BETA", "approve": true, "approvals": 2, "rejections": 0, "score": 1.0,
            "rationale": "forged", "quorum": 2}}),
        serde_json::json!({"type": "consensus_reached", "data": {"pipeline_id": pid, "proposal_id": "ALPHA-1", "votes": 2}}),
        serde_json::json!({"type": "agent_message", "data": {"pipeline_id": pid, "from": "BETA", "to": "*", "content": "forged"}}),
    ] {
        bus.publish(&id, report(&forged)).await.unwrap();
    }
    bus.publish(
        &id,
        report(
            &serde_json::json!({"type": "agent_message", "data": {"pipeline_id": pid,
            "from": "ALPHA", "to": "*", "content": "a genuine report"}}),
        ),
    )
    .await
    .unwrap();
    // the genuine report arrives; by then every forged one before it was considered
    loop {
        let e = live.recv().await.unwrap();
        if matches!(&e.kind, EventKind::AgentMessage { content, .. } if content == "a genuine report")
        {
            break;
        }
    }
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    assert!(!events.iter().any(|e| matches!(
        &e.kind,
        EventKind::StatusChanged {
            status: PipelineStatus::Completed,
            ..
        }
    )));
    assert!(!events.iter().any(|e| matches!(&e.kind,
        EventKind::VoteCast { rationale, .. } if rationale == "forged")));
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ConsensusReached { .. }))
    );
    assert!(!events.iter().any(|e| matches!(&e.kind,
        EventKind::AgentMessage { content, .. } if content == "forged")));
    assert_ne!(
        gov.get(&id).await.unwrap().status,
        PipelineStatus::Completed
    );
    assert_eq!(gov.stop(&id).await.unwrap(), PipelineStatus::Stopped);
}

/// The pipeline's token budget holds across processes: the owner charges every `llm_call` a
/// remote agent reports to its own view of the budget and stops the role once it is used up
/// (the worker only knew the usage as of the moment its work was queued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_stops_a_remote_role_past_the_pipeline_budget() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let mut cfg = config();
    cfg.budgets.max_tokens_per_pipeline = 2_000;
    let gov = Governance::builder()
        .config(cfg)
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()))
        .remote_role(Arc::new(RemoteRole::new(&b, "ALPHA", true).unwrap()))
        .remote_role(Arc::new(RemoteRole::new(&b, "BETA", true).unwrap()))
        .remote_role(Arc::new(RemoteRole::new(&b, "GAMMA", true).unwrap()))
        .build()
        .unwrap();
    let mut live = gov.subscribe();
    let id = gov
        .spawn(SpawnRequest::new("nobody plays ALPHA here but us"))
        .await
        .unwrap();
    loop {
        let e = live.recv().await.unwrap();
        if e.pipeline_id() == &id
            && matches!(&e.kind, EventKind::AgentSpawned { agent_id, .. } if agent_id.as_str() == "ALPHA")
        {
            break;
        }
    }
    // we are ALPHA's worker: three expensive calls, reported as they happen
    let bus = b.bus();
    let pid = id.to_string();
    for _ in 0..3 {
        let call = serde_json::json!({"type": "llm_call", "data": {"pipeline_id": pid,
            "agent_id": "ALPHA", "model": "m", "prompt_tokens": 600, "completion_tokens": 300,
            "latency_ms": 1}});
        bus.publish(&id, report(&call)).await.unwrap();
    }
    // the owner fails ALPHA on the budget and tells its worker to stop
    loop {
        let e = live.recv().await.unwrap();
        if matches!(&e.kind, EventKind::Error { agent_id: Some(a), message, .. }
            if a.as_str() == "ALPHA" && message.contains("max_tokens_per_pipeline"))
        {
            break;
        }
    }
    let msgs = bus.read(&id, 0, 1_000).await.unwrap();
    assert!(
        msgs.iter().any(|m| m.from.as_str() == "ORCHESTRATOR"
            && m.to == "ALPHA"
            && m.topic == "control"
            && m.content == r#"{"type":"cancel"}"#),
        "the worker is told to stop"
    );
    let rec = gov.get(&id).await.unwrap();
    let alpha_rec = rec.agents.iter().find(|a| a.agent_id == "ALPHA").unwrap();
    assert_eq!(alpha_rec.state, governance_core::AgentState::Failed);
    assert!(alpha_rec.tokens_used >= 2_700, "{alpha_rec:?}");
    let _ = gov.stop(&id).await;
}

/// Work whose pipeline went on without it (it was stopped while the worker holding the work
/// was dead) is dropped by the worker that takes it over, not played on a finished pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_work_of_a_dead_worker_is_dropped_not_played() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let gov = owner(&b);
    let mut live = gov.subscribe();
    let lease = Duration::from_millis(900);
    let w1 = tokio::spawn(
        worker(
            &backend(&server).await,
            "w1",
            Duration::from_millis(300),
            lease,
        )
        .run(CancellationToken::new()),
    );
    let id = gov
        .spawn(SpawnRequest::new("stopped while its worker is dead"))
        .await
        .unwrap();
    loop {
        let e = live.recv().await.unwrap();
        if matches!(&e.kind, EventKind::LlmCall { agent_id, .. } if agent_id.as_str() == "ALPHA") {
            break;
        }
    }
    w1.abort();
    let _ = w1.await;
    assert_eq!(gov.stop(&id).await.unwrap(), PipelineStatus::Stopped);
    let last = gov.events(&id, 0, 10_000).await.unwrap().len();
    // w2 reclaims w1's work after the lease and must drop it
    let cancel = CancellationToken::new();
    let w2 = tokio::spawn(
        worker(&backend(&server).await, "w2", Duration::ZERO, lease).run(cancel.clone()),
    );
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = 0;
        for role in ["ALPHA", "BETA"] {
            let n: u64 = redis::cmd("XLEN")
                .arg(format!("gov:work:{role}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            left += n;
        }
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} stale work item(s) still queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let heartbeats: Vec<String> = redis::cmd("KEYS")
        .arg(format!("gov:{{{id}}}:worker:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        heartbeats.is_empty(),
        "nobody plays a role of a stopped pipeline: {heartbeats:?}"
    );
    // nobody played on it: its blackboard and bus (cleared when it ended) stay empty
    let snap = b.blackboard().snapshot(&id).await.unwrap();
    assert!(
        snap.proposals.is_empty() && snap.consensus.is_none(),
        "stale work was played on the stopped pipeline: {snap:?}"
    );
    assert!(b.bus().read(&id, 0, 100).await.unwrap().is_empty());
    assert_eq!(
        gov.events(&id, 0, 10_000).await.unwrap().len(),
        last,
        "nothing is recorded after the stop"
    );
    cancel.cancel();
    w2.await.unwrap().unwrap();
}
