//! `governance serve` on SQLite killed with SIGKILL while pipelines wait for approval: after a
//! restart they still wait (not re-run), a decision completes one, a rejection runs its
//! revision round, and a deadline set for the next start ends the other TIMEOUT.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A `governance serve` process, SIGKILLed on drop (`Child::kill` is SIGKILL on Unix).
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &Path, approval_timeout: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
    cmd.arg("serve")
        .env("PORT", "0")
        .env("GOVERNANCE_DB", db)
        .env("GOVERNANCE_LOCAL_LATENCY_MS", "0")
        .env_remove("GOVERNANCE_LLM_MODE")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("REDIS_URL")
        .env_remove("GOVERNANCE_API_TOKEN")
        .env_remove("GOVERNANCE_REQUIRE_APPROVAL")
        .env_remove("GOVERNANCE_APPROVAL_TIMEOUT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = approval_timeout {
        cmd.env("GOVERNANCE_APPROVAL_TIMEOUT", t);
    }
    let mut child = cmd.spawn().expect("server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("start-up line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server { child, addr }
}

fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let payload = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

fn wait_status(addr: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
        assert_eq!(code, 200, "{rec}");
        if rec["status"] == want {
            return rec;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline stuck at {}, expected {want}",
            rec["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(addr: &str, id: &str) -> Vec<Value> {
    let (code, logs) = http(
        addr,
        "GET",
        &format!("/api/pipeline/logs?pipeline_id={id}&limit=1000"),
        None,
    );
    assert_eq!(code, 200, "{logs}");
    logs["events"].as_array().expect("events").clone()
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
    server.kill9();

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
    server.kill9();

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
    server.kill9();

    // started with a deadline: counted from the wait's start, which has passed: TIMEOUT
    let server = serve(&db, Some("1"));
    let rec = wait_status(&server.addr, &second, "TIMEOUT");
    let failure = rec["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("GOVERNANCE_APPROVAL_TIMEOUT"), "{rec}");
    drop(server);

    let verify = Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["ledger", "verify", "--db", db.to_str().unwrap()])
        .output()
        .expect("runs");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
