//! Cluster mode: a decision on a pipeline waiting for approval, sent to a node that does not
//! run it, is forwarded to the owner; of decisions racing from both nodes exactly one wins, and
//! each asking node learns from the shared ledger whether its own decision was the one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    ApprovalDecision, Config, ErrorKind, EventKind, Governance, LocalLlm, PipelineStatus,
    SpawnRequest,
};
use governance_redis::RedisLeases;

async fn node(server: &RedisServer, name: &str) -> (Governance, RedisLeases) {
    let b = backend(server).await;
    let (leases, store) = b
        .cluster(name, Duration::from_millis(900))
        .expect("cluster parts");
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(20);
            conf
        })
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(store))
        .ownership(Arc::new(leases.clone()))
        .llm("local", Arc::new(LocalLlm::default()))
        .build()
        .expect("engine builds");
    (gov, leases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_sent_to_another_node_is_carried_out_by_the_owner_and_exactly_one_wins() {
    let server = RedisServer::start();
    let (gov_a, leases_a) = node(&server, "node-a").await;
    let (gov_b, leases_b) = node(&server, "node-b").await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let ra = tokio::spawn(leases_a.clone().run(gov_a.clone(), cancel.clone()));
    let rb = tokio::spawn(leases_b.clone().run(gov_b.clone(), cancel.clone()));

    let waiting = |gov: Governance| async move {
        let mut req = SpawnRequest::new("Plan a zero-downtime migration");
        req.require_approval = Some(true);
        let id = gov.spawn(req).await.unwrap();
        let mut rec = gov.wait_until_rest(&id).await.unwrap();
        while !(rec.status == PipelineStatus::AwaitingApproval || rec.status.is_terminal()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            rec = gov.wait_until_rest(&id).await.unwrap();
        }
        assert_eq!(rec.status, PipelineStatus::AwaitingApproval);
        id
    };

    // one decision through B, which does not run it: A carries it out
    let id = waiting(gov_a.clone()).await;
    assert_eq!(gov_b.live_count(), 0, "node B does not run it");
    let status = gov_b
        .approve(&id, ApprovalDecision::approve("alice").for_revision(0))
        .await
        .expect("B hands the decision to A");
    assert_eq!(status, PipelineStatus::Completed);
    assert_eq!(
        gov_a.get(&id).await.unwrap().status,
        PipelineStatus::Completed
    );
    let e = gov_b
        .approve(&id, ApprovalDecision::approve("bob"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // decisions racing from both nodes: exactly one wins, on the owner and on the asker
    let id = waiting(gov_a.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let gov = if i % 2 == 0 {
            gov_a.clone()
        } else {
            gov_b.clone()
        };
        let id = id.clone();
        let d = if i % 4 < 2 {
            ApprovalDecision::approve(format!("approver-{i}"))
        } else {
            ApprovalDecision::reject(format!("rejecter-{i}"), "redo it")
        }
        .for_revision(0);
        tasks.push(tokio::spawn(async move { gov.approve(&id, d).await }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(won, 1);
    let decided = gov_a
        .events(&id, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::ApprovalDecided { .. }))
        .count();
    assert_eq!(decided, 1);
    gov_a.stop(&id).await.unwrap();
    cancel.cancel();
    ra.await.unwrap();
    rb.await.unwrap();
}
