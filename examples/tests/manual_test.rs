//! The README's manual test, verbatim, against `governance serve` as a new user starts it (no
//! latency configured: `serve` paces the local LLM so a person can watch a pipeline move):
//! a watcher on all pipelines started first, the spawn, the pipeline's own stream connected
//! after the spawn (`?pipeline_id=<id>&since=0`), the orchestration. The record, the
//! `orchestration_started` and `llm_call` events name the model that answered (the local LLM's),
//! not the OpenRouter default. The server logs JSON status-change lines with `pipeline_id`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::{Node, http};

const LOCAL_MODEL: &str = "local/deterministic";

/// `governance serve` as the README starts it: no database, latency or model configured.
fn serve(dir: &std::path::Path) -> Node {
    Node::start_with("serve", dir, |cmd| {
        cmd.current_dir(dir)
            .env("GOVERNANCE_LOG_FORMAT", "json")
            .env_remove("GOVERNANCE_DB")
            .env_remove("GOVERNANCE_LOCAL_LATENCY_MS")
            .env_remove("OPENROUTER_MODEL")
            .env_remove("RUST_LOG");
    })
}

/// `curl -N http://<addr><path>`: an open Server-Sent Events stream (HTTP/1.0, so the body is
/// the plain event stream, not chunked).
fn sse(addr: &str, path: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).expect("connect");
    // bounded: only a hang trips it
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    assert!(line.contains(" 200 "), "{path}: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        if line.trim().is_empty() {
            return r;
        }
    }
}

/// Events of `id` from an SSE stream until its `status_changed` to a terminal status.
fn events_until_end(stream: &mut BufReader<TcpStream>, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = stream.read_line(&mut line).expect("event line");
        assert!(n > 0, "stream ended early after {events:#?}");
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let ev: Value = serde_json::from_str(data.trim()).expect("JSON data");
        if ev["data"]["pipeline_id"] != id {
            continue;
        }
        let end = ev["type"] == "status_changed"
            && matches!(
                ev["data"]["status"].as_str(),
                Some("COMPLETED" | "FAILED" | "TIMEOUT" | "STOPPED")
                    | Some("ORCHESTRATION_FAILED" | "ORCHESTRATION_ERROR")
            );
        events.push(ev);
        if end {
            return events;
        }
    }
}

fn statuses(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "status_changed")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect()
}

#[test]
fn the_readme_manual_test_shows_a_pipeline_move_with_the_model_that_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let addr = server.addr.as_str();
    // 2. the watcher on all pipelines, started first
    let mut all = sse(addr, "/api/events");
    // 3. the spawn
    let (code, body) = http(
        addr,
        "POST",
        "/api/spawn",
        Some(r#"{"objective": "Design a caching strategy", "auto_continue": true}"#),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_owned();
    // 4. the pipeline's own stream, connected after the spawn: replayed from the start
    let mut own = sse(addr, &format!("/api/events?pipeline_id={id}&since=0"));
    let own_events = events_until_end(&mut own, &id);
    let all_events = events_until_end(&mut all, &id);
    let lifecycle = ["SPAWNED", "RUNNING", "REPORT", "ORCHESTRATING", "COMPLETED"];
    assert_eq!(statuses(&own_events), lifecycle);
    assert_eq!(statuses(&all_events), lifecycle);
    for (i, e) in own_events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "replay then live, gap-free");
    }

    // the model that answered, everywhere
    let started = own_events
        .iter()
        .find(|e| e["type"] == "orchestration_started")
        .expect("orchestration_started");
    assert_eq!(started["data"]["model"], LOCAL_MODEL, "{started}");
    let calls: Vec<&Value> = own_events
        .iter()
        .filter(|e| e["type"] == "llm_call")
        .collect();
    assert!(!calls.is_empty());
    for c in &calls {
        assert_eq!(c["data"]["model"], LOCAL_MODEL, "{c}");
        // serve paces the local LLM (default 300 ms a call) so a person can watch
        let ms = c["data"]["latency_ms"].as_u64().expect("latency_ms");
        assert!(ms >= 300, "an unpaced local LLM call ({ms} ms): {c}");
    }
    let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
    assert_eq!(code, 200);
    assert_eq!(rec["status"], "COMPLETED", "{rec}");
    assert_eq!(rec["model"], LOCAL_MODEL, "{rec}");
    // 5. the orchestration: agents, votes, results
    let (code, orch) = http(
        addr,
        "GET",
        &format!("/api/pipeline/{id}/orchestration"),
        None,
    );
    assert_eq!(code, 200, "{orch}");
    assert_eq!(orch["model"], LOCAL_MODEL, "{orch}");
    assert!(orch["results"]["solution"].is_string(), "{orch}");
    drop(server);

    // the server's JSON log: one status-change line per status, each with the pipeline id
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let changes: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .filter(|l| l["message"] == "pipeline status changed" && l["pipeline_id"] == id.as_str())
        .collect();
    let logged: Vec<&str> = changes
        .iter()
        .filter_map(|l| l["status"].as_str())
        .collect();
    assert_eq!(logged, lifecycle, "{log}");
    // the embedded default: SQLite in the working directory
    assert!(dir.path().join("governance.db").is_file());
}
