//! The remote-role protocol as a worker sees it (wire protocol version 2): a work item of
//! another version is left pending, a `{"type":"cancel"}` control message from ORCHESTRATOR
//! stops the role, and the end is reported as a tagged `done` on topic `control`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{Agent, CONTROL_TOPIC, Config, Control, LocalLlm, PipelineId, Role};
use governance_core::{Alpha, Beta, Gamma};
use governance_redis::remote::{PROTOCOL_VERSION, WORKER_GROUP};
use governance_redis::{RedisBackend, Worker};
use tokio_util::sync::CancellationToken;

fn worker(b: &RedisBackend) -> Worker {
    let roles: Vec<Arc<dyn Agent>> = vec![Arc::new(Alpha), Arc::new(Beta), Arc::new(Gamma)];
    let config = {
        let mut conf = Config::default();
        conf.agent_poll_interval = Duration::from_millis(20);
        conf
    };
    Worker::new(
        b,
        "w1",
        roles,
        Arc::new(LocalLlm::default()),
        config,
        Duration::from_secs(30),
    )
    .expect("worker builds")
}

fn work_item(v: u32, pipeline: &PipelineId) -> String {
    serde_json::json!({"v": v, "pipeline_id": pipeline, "role": "ALPHA",
        "objective": "Design a caching strategy", "quorum": 2, "model": "local/deterministic"})
    .to_string()
}

async fn queue(conn: &mut redis::aio::MultiplexedConnection, item: &str) -> String {
    redis::cmd("XADD")
        .arg("gov:work:ALPHA")
        .arg("*")
        .arg("w")
        .arg(item)
        .query_async(conn)
        .await
        .expect("XADD")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaves_other_versions_pending_and_obeys_a_typed_cancel() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (old, new) = (PipelineId::generate(), PipelineId::generate());
    // a version-1 item first, then one this worker speaks
    let old_entry = queue(&mut conn, &work_item(1, &old)).await;
    queue(&mut conn, &work_item(PROTOCOL_VERSION, &new)).await;

    let cancel = CancellationToken::new();
    let running = tokio::spawn(worker(&backend(&server).await).run(cancel.clone()));
    // the worker plays ALPHA in `new`: its first proposal shows on the blackboard
    let bus = b.bus();
    let bb = b.blackboard();
    while bb.proposals(&new).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.publish(&new, Control::Cancel.message("ALPHA"))
        .await
        .unwrap();
    // the worker ends the role: a tagged `done` report to ORCHESTRATOR
    let done = loop {
        let msgs = bus.read(&new, 0, 1_000).await.unwrap();
        if let Some(m) = msgs.into_iter().find(|m| {
            m.from == Role::ALPHA
                && m.to == "ORCHESTRATOR"
                && m.topic == CONTROL_TOPIC
                && m.content.contains(r#""type":"done""#)
        }) {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        done.content,
        r#"{"type":"done","outcome":"idle","message":"cancelled"}"#
    );
    // its events went to ORCHESTRATOR as tagged reports too
    let msgs = bus.read(&new, 0, 1_000).await.unwrap();
    assert!(
        msgs.iter().any(|m| m.from == Role::ALPHA
            && m.topic == CONTROL_TOPIC
            && m.content
                .starts_with(r#"{"type":"event","event":{"type":"proposal_created""#)),
        "{msgs:#?}"
    );

    // the played item is acknowledged and deleted; the version-1 item stays pending, never
    // played (no heartbeat, nothing on its bus)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg("gov:work:ALPHA")
            .arg(WORKER_GROUP)
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut conn)
            .await
            .unwrap();
        let pending: Vec<String> = pending.into_iter().map(|p| p.0).collect();
        if pending == [old_entry.clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pending: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let len: u64 = redis::cmd("XLEN")
        .arg("gov:work:ALPHA")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        len, 1,
        "the version-1 item is kept for a worker that speaks it"
    );
    let heartbeat: bool = redis::cmd("EXISTS")
        .arg(format!("gov:{{{old}}}:worker:ALPHA"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!heartbeat);
    assert!(bus.read(&old, 0, 10).await.unwrap().is_empty());
    cancel.cancel();
    running.await.unwrap().unwrap();
}
