//! A bus subscriber of a running pipeline (the `Governance` engine on Redis) that is dropped
//! mid-run and re-created gets exactly the messages it missed from `read(after = last_seq)`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use futures::StreamExt;
use governance_core::{
    Config, EventKind, Governance, LocalLlm, LocalLlmConfig, MemoryStore, Message, SpawnRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_subscriber_that_dies_replays_exactly_what_it_missed() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf
        })
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()))
        .llm(
            "local",
            Arc::new(LocalLlm::new({
                let mut conf = LocalLlmConfig::default();
                conf.latency = Duration::from_millis(40);
                conf
            })),
        )
        .build()
        .expect("engine builds");
    let id = gov
        .spawn(SpawnRequest::new("Plan a zero-downtime database migration"))
        .await
        .expect("spawn");
    let bus = gov.bus().clone();

    // A client: subscribe, catch up from the log, then follow live; it keeps its last seq.
    let mut received: Vec<Message> = Vec::new();
    let mut live = bus.subscribe(&id).await.expect("subscribe");
    received.extend(bus.read(&id, 0, 10_000).await.expect("catch up"));
    while received.is_empty() {
        let m = tokio::time::timeout(Duration::from_secs(60), live.next())
            .await
            .expect("the pipeline publishes")
            .expect("stream open");
        if m.seq > received.last().map_or(0, |l| l.seq) {
            received.push(m);
        }
    }
    let last_seq = received.last().expect("received").seq;
    drop(live); // the subscriber dies

    // Wait (bounded) until the pipeline has published more, then come back.
    let mut grown = false;
    for _ in 0..600 {
        if !bus.read(&id, last_seq, 1).await.expect("read").is_empty() {
            grown = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = bus.read(&id, 0, 100_000).await.expect("log").len();
    assert!(
        grown,
        "the pipeline published after the subscriber died (last_seq {last_seq}, log {total})"
    );
    let mut live = bus.subscribe(&id).await.expect("subscribe again");
    let missed = bus.read(&id, last_seq, 10_000).await.expect("replay");
    assert!(!missed.is_empty());
    for (i, m) in missed.iter().enumerate() {
        assert_eq!(
            m.seq,
            last_seq + 1 + i as u64,
            "replay is gap-free from last_seq"
        );
    }
    received.extend(missed);

    gov.wait(&id).await.expect("pipeline ends");
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), live.next()).await {
        if m.seq > received.last().map_or(0, |l| l.seq) {
            received.push(m);
        }
    }
    let seqs: Vec<u64> = received.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=received.len() as u64).collect::<Vec<_>>(),
        "the client saw every message exactly once, in order"
    );
    // The pipeline clears its bus log when it ends; the ledger's `agent_message` events are
    // the record of what was published.
    let events = gov.events(&id, 0, 100_000).await.expect("events");
    let mut published: Vec<(String, String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentMessage {
                from, to, content, ..
            } => Some((from.to_string(), to.clone(), content.clone())),
            _ => None,
        })
        .collect();
    let mut seen: Vec<(String, String, String)> = received
        .iter()
        .map(|m| (m.from.to_string(), m.to.clone(), m.content.clone()))
        .collect();
    published.sort();
    seen.sort();
    assert_eq!(seen, published, "the client saw every published message");
}
