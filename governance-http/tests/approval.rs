//! `POST /api/pipeline/{id}/approve` over a real socket: approve, reject → revision, 400
//! naming the field, 404, 409, and racing requests of which exactly one wins.

mod common;

use common::{Server, error_code, start};
use governance_core::{PipelineId, PipelineStatus};
use serde_json::{Value, json};

/// Spawns a pipeline that asks for approval and waits (engine side) until it does.
async fn waiting(s: &Server) -> String {
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Plan a zero-downtime migration", "require_approval": true}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["require_approval"], true);
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    let pid = PipelineId::new(&id).unwrap();
    let mut rx = s.gov.subscribe();
    // it passes REPORT on its way (auto-continue): wait for the rest it is meant to reach
    while s.gov.get(&pid).await.unwrap().status != PipelineStatus::AwaitingApproval {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await;
    }
    id
}

async fn ledger_types(s: &Server, id: &str) -> Vec<Value> {
    let (st, logs) = s
        .get(&format!("/api/pipeline/logs?pipeline_id={id}&limit=1000"))
        .await;
    assert_eq!(st, 200, "{logs}");
    logs["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn approve_completes_and_reject_runs_a_revision_round() {
    let s = start().await;
    let id = waiting(&s).await;
    let (st, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(rec["status"], "AWAITING_APPROVAL");
    assert_eq!(rec["require_approval"], true);
    let events = ledger_types(&s, &id).await;
    let asked = events
        .iter()
        .find(|e| e["type"] == "approval_requested")
        .expect("approval_requested in the ledger");
    assert!(
        asked["data"]["proposal"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(
        asked["data"]["solution"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );

    let url = format!("/api/pipeline/{id}/approve");
    let (st, body) = s
        .post(
            &url,
            &json!({"approve": false, "feedback": "Add a rollback plan", "by": "alice"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "ORCHESTRATING");
    assert_eq!(
        s.wait_until_rest(&id).await,
        PipelineStatus::AwaitingApproval
    );
    let (st, body) = s.post(&url, &json!({"approve": true, "by": "bob"})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body, json!({"pipeline_id": id, "status": "COMPLETED"}));

    let decided: Vec<(bool, String)> = ledger_types(&s, &id)
        .await
        .iter()
        .filter(|e| e["type"] == "approval_decided")
        .map(|e| {
            assert!(e["data"]["decided_at"].is_string(), "{e}");
            (
                e["data"]["approve"].as_bool().unwrap(),
                e["data"]["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(decided, vec![(false, "alice".into()), (true, "bob".into())]);
    let (_, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(rec["status"], "COMPLETED");
    assert_eq!(rec["revisions"], 1);

    // `1.0` is the number 1 (JSON does not tell them apart): a 409 for the decided pipeline,
    // like any decision now
    let (st, _) = s
        .post(
            &url,
            &json!({"approve": true, "by": "carol", "revision": 1.0}),
        )
        .await;
    assert_eq!(st, 409);
    // decided: a further decision is a conflict
    let (st, body) = s.post(&url, &json!({"approve": true, "by": "carol"})).await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    s.shutdown().await;
}

#[tokio::test]
async fn a_bad_decision_is_a_400_naming_the_field_and_changes_nothing() {
    let s = start().await;
    let id = waiting(&s).await;
    let url = format!("/api/pipeline/{id}/approve");
    let long = "x".repeat(governance_core::MAX_FEEDBACK_LEN + 1);
    for (body, field) in [
        (json!({"approve": true, "by": "  "}), "by"),
        (json!({"approve": true}), "by"),
        (json!({"approve": "yes", "by": "alice"}), "approve"),
        (json!({"by": "alice"}), "approve"),
        (
            json!({"approve": false, "by": "alice", "feedback": long}),
            "feedback",
        ),
        (json!({"approve": true, "by": "x".repeat(129)}), "by"),
        (json!({"approve": true, "by": "alice", "extra": 1}), "extra"),
        (
            json!({"approve": true, "by": "alice", "revision": 1.5}),
            "revision",
        ),
        (
            json!({"approve": true, "by": "alice", "revision": -1}),
            "revision",
        ),
    ] {
        let (st, resp) = s.post(&url, &body).await;
        assert_eq!(st, 400, "{body}: {resp}");
        assert_eq!(error_code(&resp), "invalid_input");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body}: {msg}");
    }
    let (_, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(rec["status"], "AWAITING_APPROVAL");
    assert!(
        !ledger_types(&s, &id)
            .await
            .iter()
            .any(|e| e["type"] == "approval_decided")
    );

    let (st, body) = s
        .post(
            "/api/pipeline/nope/approve",
            &json!({"approve": true, "by": "a"}),
        )
        .await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = s
        .post(
            "/api/pipeline/bad:id/approve",
            &json!({"approve": true, "by": "a"}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    // not waiting: resting at REPORT
    let resting = s.spawn("Write a sonnet", false).await;
    assert_eq!(s.wait_until_rest(&resting).await, PipelineStatus::Report);
    let (st, body) = s
        .post(
            &format!("/api/pipeline/{resting}/approve"),
            &json!({"approve": true, "by": "a"}),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_requests_exactly_one_wins() {
    let s = start().await;
    for _ in 0..3 {
        let id = waiting(&s).await;
        let url = s.url(&format!("/api/pipeline/{id}/approve"));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (client, url) = (s.client.clone(), url.clone());
            let body = if i % 2 == 0 {
                json!({"approve": true, "by": format!("approver-{i}"), "revision": 0})
            } else {
                json!({"approve": false, "by": format!("rejecter-{i}"), "feedback": "redo", "revision": 0})
            };
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        codes.sort_unstable();
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
        assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
        let decided = ledger_types(&s, &id)
            .await
            .iter()
            .filter(|e| e["type"] == "approval_decided")
            .count();
        assert_eq!(decided, 1);
        let (st, _) = s
            .post(&format!("/api/pipeline/{id}/stop"), &json!({}))
            .await;
        assert_eq!(st, 200);
    }
    s.shutdown().await;
}
