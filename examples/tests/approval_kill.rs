//! `governance serve` on SQLite killed with SIGKILL while pipelines wait for approval: after a
//! restart they still wait (not re-run), a decision completes one, a rejection runs its
//! revision round, and a deadline set for the next start ends the other TIMEOUT.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::{Node, all_logs as events, wait_status};

/// `governance serve` on the SQLite file `db`; `approval_timeout` its
/// `GOVERNANCE_APPROVAL_TIMEOUT`. Killed with SIGKILL on drop (`Child::kill` on Unix).
fn serve(db: &Path, approval_timeout: Option<&str>) -> Node {
    let dir = db.parent().expect("the database's directory");
    Node::start_with("serve", dir, |cmd| {
        cmd.env("GOVERNANCE_DB", db)
            .env("GOVERNANCE_LOCAL_LATENCY_MS", "0")
            .env_remove("GOVERNANCE_REQUIRE_APPROVAL")
            .env_remove("GOVERNANCE_APPROVAL_TIMEOUT");
        if let Some(t) = approval_timeout {
            cmd.env("GOVERNANCE_APPROVAL_TIMEOUT", t);
        }
    })
}

/// A request with a JSON body.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string);
    support::http(addr, method, path, body.as_deref())
}

fn spawn_waiting(addr: &str, objective: &str) -> String {
    let body = json!({"objective": objective, "require_approval": true});
    let (code, resp) = http(addr, "POST", "/api/spawn", Some(&body));
    assert_eq!(code, 201, "{resp}");
    let id = resp["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_owned();
    wait_status(addr, &id, "AWAITING_APPROVAL");
    id
}

fn approve(addr: &str, id: &str, body: &Value) -> (u16, Value) {
    http(
        addr,
        "POST",
        &format!("/api/pipeline/{id}/approve"),
        Some(body),
    )
}

#[test]
fn waiting_pipelines_survive_kill_9_and_are_decided_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");

    let server = serve(&db, None);
    let first = spawn_waiting(&server.addr, "Plan a zero-downtime database migration");
    let second = spawn_waiting(&server.addr, "Design a caching strategy");
    drop(server); // SIGKILL

    // restarted: both still wait; the resume re-ran nothing
    let server = serve(&db, None);
    for id in [&first, &second] {
        let rec = wait_status(&server.addr, id, "AWAITING_APPROVAL");
        assert!(rec["results"].is_null(), "{rec}");
        let ev = events(&server.addr, id);
        let resumed = ev
            .iter()
            .rposition(|e| e["type"] == "resumed")
            .expect("the restart resumed it");
        assert_eq!(ev[resumed]["data"]["status"], "AWAITING_APPROVAL");
        assert!(
            ev[resumed..]
                .iter()
                .all(|e| e["type"] != "agent_spawned" && e["type"] != "llm_call"),
            "a waiting pipeline is not run again: {:?}",
            &ev[resumed..]
        );
    }
    // the first: rejected, its revision round runs, then the server dies again while it waits
    let (code, resp) = approve(
        &server.addr,
        &first,
        &json!({"approve": false, "by": "alice", "feedback": "Add a rollback plan", "revision": 0}),
    );
    assert_eq!(code, 200, "{resp}");
    assert_eq!(resp["status"], "ORCHESTRATING");
    let rec = wait_status(&server.addr, &first, "AWAITING_APPROVAL");
    assert_eq!(rec["revisions"], 1);
    drop(server); // SIGKILL

    let server = serve(&db, None);
    wait_status(&server.addr, &first, "AWAITING_APPROVAL");
    let (code, resp) = approve(
        &server.addr,
        &first,
        &json!({"approve": true, "by": "bob", "revision": 1}),
    );
    assert_eq!(code, 200, "{resp}");
    assert_eq!(resp["status"], "COMPLETED");
    let rec = wait_status(&server.addr, &first, "COMPLETED");
    assert!(rec["results"]["solution"].is_string(), "{rec}");
    let decided: Vec<Value> = events(&server.addr, &first)
        .iter()
        .filter(|e| e["type"] == "approval_decided")
        .map(|e| e["data"]["by"].clone())
        .collect();
    assert_eq!(decided, [json!("alice"), json!("bob")]);
    // a decided pipeline: 409
    let (code, _) = approve(
        &server.addr,
        &first,
        &json!({"approve": true, "by": "carol"}),
    );
    assert_eq!(code, 409);
    assert_eq!(
        wait_status(&server.addr, &second, "AWAITING_APPROVAL")["status"],
        "AWAITING_APPROVAL"
    );
    drop(server); // SIGKILL

    // started with a deadline: counted from the wait's start, which has passed: TIMEOUT
    let server = serve(&db, Some("1"));
    let rec = wait_status(&server.addr, &second, "TIMEOUT");
    let failure = rec["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("GOVERNANCE_APPROVAL_TIMEOUT"), "{rec}");
    drop(server);

    let (ok, out) = support::governance(&["ledger", "verify", "--db", db.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
}
