//! `POST /api/pipeline/{id}/fork` over a real socket on the local LLM: a fork at REPORT runs
//! to COMPLETED and leaves its source as it was; a fork mid-orchestration carries the
//! proposals up to its seq only; overrides apply; 400/404/409; forks of a running source are
//! consistent with its ledger.

mod common;

use common::{Opts, Server, error_code, start, start_with};
use governance_core::{PipelineId, PipelineStatus};
use serde_json::{Value, json};

async fn ledger(s: &Server, id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (st, logs) = s
            .get(&format!(
                "/api/pipeline/logs?pipeline_id={id}&after={after}&limit=1000"
            ))
            .await;
        assert_eq!(st, 200, "{logs}");
        let page = logs["events"].as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        after = last["seq"].as_u64().unwrap();
        all.extend(page);
    }
    all
}

/// A pipeline run to COMPLETED (auto-continue) and its ledger.
async fn completed(s: &Server) -> (String, Vec<Value>) {
    let id = s.spawn("Design a caching strategy", true).await;
    assert_eq!(s.wait(&id).await, PipelineStatus::Completed);
    let events = ledger(s, &id).await;
    (id, events)
}

fn seq_of(events: &[Value], pred: impl Fn(&Value) -> bool) -> u64 {
    events
        .iter()
        .find(|e| pred(e))
        .expect("event in the ledger")["seq"]
        .as_u64()
        .unwrap()
}

async fn fork(s: &Server, id: &str, body: &Value) -> (u16, Value) {
    s.post(&format!("/api/pipeline/{id}/fork"), body).await
}

#[tokio::test]
async fn a_fork_at_report_runs_to_completed_and_leaves_the_source_unchanged() {
    let s = start().await;
    let (src, before) = completed(&s).await;
    let (_, src_rec) = s.get(&format!("/api/pipeline/{src}")).await;
    let report_seq = seq_of(&before, |e| {
        e["type"] == "status_changed" && e["data"]["status"] == "REPORT"
    });

    let (st, body) = fork(&s, &src, &json!({"at_status": "REPORT"})).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        body["forked_from"],
        json!({"pipeline_id": src, "seq": report_seq})
    );
    assert_eq!(body["status"], "REPORT");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_ne!(id, src);
    assert_eq!(s.wait(&id).await, PipelineStatus::Completed);

    let events = ledger(&s, &id).await;
    assert_eq!(events[0]["type"], "forked_from", "{}", events[0]);
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(
        events[0]["data"],
        json!({"pipeline_id": id, "source": src, "seq": report_seq, "status": "REPORT"})
    );
    assert_eq!(events[1]["type"], "status_changed");
    assert_eq!(events[1]["data"]["status"], "REPORT");
    assert!(events[1]["data"].get("previous").is_none());
    // the fork orchestrated on its own: one consensus, its own proposals
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "consensus_reached")
            .count(),
        1
    );
    let (_, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(rec["status"], "COMPLETED");
    assert_eq!(
        rec["report"], src_rec["report"],
        "the report is the source's"
    );
    assert_eq!(rec["objective"], src_rec["objective"]);

    // the source: not one event more, none changed, its record as it was
    let after = ledger(&s, &src).await;
    assert_eq!(after, before);
    let (_, src_after) = s.get(&format!("/api/pipeline/{src}")).await;
    assert_eq!(src_after, src_rec);
    s.shutdown().await;
}

#[tokio::test]
async fn a_fork_mid_orchestration_carries_the_proposals_up_to_its_seq_only() {
    let s = start().await;
    let (src, before) = completed(&s).await;
    let first = before
        .iter()
        .find(|e| e["type"] == "proposal_created")
        .expect("a proposal")
        .clone();
    let seq = first["seq"].as_u64().unwrap();
    let proposals_after_seq = before
        .iter()
        .filter(|e| e["type"] == "proposal_created" && e["seq"].as_u64().unwrap() > seq)
        .count();
    let votes_up_to_seq = before
        .iter()
        .filter(|e| e["type"] == "vote_cast" && e["seq"].as_u64().unwrap() <= seq)
        .count();

    let (st, body) = fork(&s, &src, &json!({"at_seq": seq})).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["status"], "ORCHESTRATING");
    assert_eq!(body["forked_from"]["seq"], seq);
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait(&id).await, PipelineStatus::Completed);

    let events = ledger(&s, &id).await;
    assert_eq!(events[0]["type"], "forked_from");
    assert_eq!(events[1]["data"]["status"], "ORCHESTRATING");
    // what the fork started with is recorded before its orchestration goes on: exactly the
    // source's proposals (and votes) up to the fork point
    let start = events
        .iter()
        .position(|e| e["type"] == "orchestration_started")
        .expect("orchestration_started");
    let carried: Vec<&Value> = events[..start]
        .iter()
        .filter(|e| e["type"] == "proposal_created")
        .collect();
    assert_eq!(carried.len(), 1, "{events:#?}");
    assert_eq!(
        carried[0]["data"]["proposal_id"],
        first["data"]["proposal_id"]
    );
    assert_eq!(carried[0]["data"]["title"], first["data"]["title"]);
    let carried_votes = events[..start]
        .iter()
        .filter(|e| e["type"] == "vote_cast")
        .count();
    assert_eq!(carried_votes, votes_up_to_seq);
    assert!(
        proposals_after_seq > 0 || carried.len() == 1,
        "the source went on after the fork point"
    );
    // the source is untouched
    assert_eq!(ledger(&s, &src).await, before);
    s.shutdown().await;
}

#[tokio::test]
async fn overrides_apply_to_the_fork() {
    let s = start().await;
    let (src, _) = completed(&s).await;
    let (st, body) = fork(
        &s,
        &src,
        &json!({"at_status": "REPORT", "timeout": 77,
                "roles": {"BETA": {"model": "local/fork-judge", "temperature": 0.0}}}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait(&id).await, PipelineStatus::Completed);
    let (_, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(rec["timeout_secs"], 77, "{rec}");
    assert_eq!(rec["roles"]["BETA"]["model"], "local/fork-judge");
    let (_, o) = s.get(&format!("/api/pipeline/{id}/orchestration")).await;
    let beta = o["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "BETA")
        .expect("BETA ran in the fork")
        .clone();
    assert_eq!(beta["model"], "local/fork-judge", "{o}");
    let (_, src_rec) = s.get(&format!("/api/pipeline/{src}")).await;
    assert!(
        src_rec["roles"]["BETA"].is_null(),
        "the source's roles are unchanged: {src_rec}"
    );

    // a new objective before the report: the fork writes its own report for it
    let (st, body) = fork(
        &s,
        &src,
        &json!({"at_status": "RUNNING", "objective": "Plan a database migration"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["status"], "RUNNING");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait(&id).await, PipelineStatus::Completed);
    let (_, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(rec["objective"], "Plan a database migration");
    assert!(rec["report"].is_object(), "{rec}");
    s.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field_named() {
    let s = start().await;
    let (src, events) = completed(&s).await;
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    let bad = |body: Value, field: &'static str| (body, field);
    for (body, field) in [
        bad(json!({}), "at_seq"),
        bad(json!({"at_seq": 3, "at_status": "REPORT"}), "at_status"),
        bad(json!({"at_seq": 0}), "at_seq"),
        bad(json!({"at_seq": 1.5}), "at_seq"),
        bad(json!({"at_status": "NOPE"}), "at_status"),
        bad(
            json!({"at_status": "REPORT", "objective": "new"}),
            "objective",
        ),
        bad(
            json!({"at_status": "RUNNING", "objective": "   "}),
            "objective",
        ),
        bad(json!({"at_status": "REPORT", "timeout": 0}), "timeout"),
        bad(
            json!({"at_status": "REPORT", "roles": {"NOPE": {"model": "a/b"}}}),
            "roles.NOPE",
        ),
        bad(
            json!({"at_status": "REPORT", "roles": {"BETA": {"model": ""}}}),
            "roles.BETA.model",
        ),
        bad(json!({"at_status": "REPORT", "color": "red"}), "color"),
    ] {
        let (st, resp) = fork(&s, &src, &body).await;
        assert_eq!(st, 400, "{body} → {resp}");
        assert_eq!(error_code(&resp), "invalid_input", "{resp}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body}: {msg:?} does not name {field}");
    }
    // unknown source, a seq past the end, a status never entered: 404
    let (st, resp) = fork(&s, "no-such-pipeline", &json!({"at_seq": 1})).await;
    assert_eq!(st, 404, "{resp}");
    let (st, resp) = fork(&s, &src, &json!({"at_seq": last + 1})).await;
    assert_eq!(st, 404, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{last}"))
    );
    let (st, resp) = fork(&s, &src, &json!({"at_status": "AWAITING_APPROVAL"})).await;
    assert_eq!(st, 404, "{resp}");
    // a terminal point: 409, pick an earlier seq
    let (st, resp) = fork(&s, &src, &json!({"at_seq": last})).await;
    assert_eq!(st, 409, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("earlier seq")
    );
    let (st, resp) = fork(&s, &src, &json!({"at_status": "COMPLETED"})).await;
    assert_eq!(st, 409, "{resp}");
    // nothing was made of any of them
    let (_, list) = s.get("/api/pipelines?limit=100").await;
    assert_eq!(
        list["pipelines"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    assert_eq!(ledger(&s, &src).await, events);
    s.shutdown().await;
}

#[tokio::test]
async fn forks_of_a_running_source_match_its_ledger() {
    // a slow local LLM (100 ms a call) keeps the source running while it is forked every
    // 50 ms at its last committed seq (RUNNING, REPORT and ORCHESTRATING points)
    let s = start_with(Opts {
        latency_ms: 100,
        ..Opts::default()
    })
    .await;
    let src = s.spawn("Design a caching strategy", true).await;
    let pid = PipelineId::new(&src).unwrap();
    let mut forks = Vec::new();
    loop {
        let done = s.gov.get(&pid).await.unwrap().status.is_terminal();
        let last = s.gov.ledger().last_seq(&pid).await.unwrap();
        let (st, body) = fork(&s, &src, &json!({"at_seq": last})).await;
        match st {
            201 => {
                assert_eq!(body["forked_from"]["seq"], last, "{body}");
                forks.push((body["pipeline_id"].as_str().unwrap().to_owned(), last));
            }
            // the point reached was the end
            409 => assert!(done || s.gov.get(&pid).await.unwrap().status.is_terminal()),
            _ => panic!("fork of a running source: {st} {body}"),
        }
        if done || forks.len() >= 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!forks.is_empty());
    assert_eq!(s.wait(&src).await, PipelineStatus::Completed);
    let source = ledger(&s, &src).await;
    for (id, seq) in &forks {
        // the status the source was in at that seq, read off its finished ledger
        let status = source
            .iter()
            .rev()
            .find(|e| e["seq"].as_u64().unwrap() <= *seq && e["type"] == "status_changed")
            .unwrap()["data"]["status"]
            .clone();
        let events = ledger(&s, id).await;
        assert_eq!(events[0]["type"], "forked_from");
        assert_eq!(
            events[0]["data"],
            json!({"pipeline_id": id, "source": src, "seq": seq, "status": status})
        );
        assert_eq!(events[1]["data"]["status"], status);
        let carried = events
            .iter()
            .take_while(|e| e["type"] != "orchestration_started")
            .filter(|e| e["type"] == "proposal_created")
            .count();
        let up_to = source
            .iter()
            .filter(|e| e["seq"].as_u64().unwrap() <= *seq && e["type"] == "proposal_created")
            .count();
        if status == "ORCHESTRATING" {
            assert_eq!(carried, up_to, "fork {id} at {seq}");
        }
        assert_eq!(s.wait(id).await, PipelineStatus::Completed, "fork {id}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_fork() {
    let s = start().await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    let op = &doc["paths"]["/api/pipeline/{id}/fork"]["post"];
    assert_eq!(op["operationId"], "fork");
    for code in ["201", "400", "401", "404", "409", "413", "415"] {
        assert!(op["responses"][code].is_object(), "{code} missing: {op}");
    }
    let req = &doc["components"]["schemas"]["ForkRequest"];
    let variants = req["oneOf"].as_array().expect("oneOf");
    let required: Vec<&Value> = variants.iter().map(|v| &v["required"][0]).collect();
    assert_eq!(required, [&json!("at_seq"), &json!("at_status")]);
    assert!(doc["components"]["schemas"]["Forked"].is_object());
    assert!(
        doc["components"]["schemas"]["SseEvent"]
            .to_string()
            .contains("forked_from")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_fork_inside_a_revision_round_goes_on_with_that_round() {
    let s = start().await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Plan a zero-downtime migration", "require_approval": true}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let src = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.wait_until_rest(&src).await,
        PipelineStatus::AwaitingApproval
    );
    let url = format!("/api/pipeline/{src}/approve");
    let (st, body) = s
        .post(
            &url,
            &json!({"approve": false, "feedback": "Add a rollback plan", "by": "alice"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        s.wait_until_rest(&src).await,
        PipelineStatus::AwaitingApproval
    );
    let (st, body) = s.post(&url, &json!({"approve": true, "by": "bob"})).await;
    assert_eq!(st, 200, "{body}");
    let source = ledger(&s, &src).await;
    let rejected = source
        .iter()
        .find(|e| e["type"] == "approval_decided")
        .unwrap()["data"]["proposal_id"]
        .clone();
    // the ORCHESTRATING the rejection led to (the revision round's start)
    let decided = seq_of(&source, |e| e["type"] == "approval_decided");
    let round = seq_of(&source, |e| {
        e["type"] == "status_changed"
            && e["data"]["status"] == "ORCHESTRATING"
            && e["seq"].as_u64().unwrap() > decided
    });
    // AWAITING_APPROVAL itself is not forkable
    let (st, _) = fork(&s, &src, &json!({"at_status": "AWAITING_APPROVAL"})).await;
    assert_eq!(st, 409);

    let (st, body) = fork(&s, &src, &json!({"at_seq": round})).await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.wait_until_rest(&id).await,
        PipelineStatus::AwaitingApproval
    );
    let (_, rec) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(rec["revisions"], 1, "{rec}");
    let events = ledger(&s, &id).await;
    let asked: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "approval_requested")
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["data"]["revision"], 1);
    assert_ne!(
        asked[0]["data"]["proposal_id"], rejected,
        "the fork's round decided anew, not on the rejected proposal"
    );
    let (st, body) = s
        .post(
            &format!("/api/pipeline/{id}/approve"),
            &json!({"approve": true, "by": "carol", "revision": 1}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(ledger(&s, &src).await, source);
    s.shutdown().await;
}
