//! The all-pipelines stream replays recent pipelines (`replay_secs`, default 60 s), so a watcher
//! that connects after a pipeline ended still sees it; then it goes live without duplicates.
//! Over a real socket: SSE with reqwest, WebSocket with tungstenite.

mod common;

use std::time::Duration;

use common::{Server, start};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A bounded wait that only fails on a hang.
const HANG: Duration = Duration::from_secs(60);

fn is_final(v: &Value, id: &str) -> bool {
    v["type"] == "checkpoint_created"
        && v["data"]["final"] == true
        && v["data"]["pipeline_id"] == id
}

/// Reads `GET /api/events?{query}` until the final checkpoint of `until`; returns every event.
async fn read_sse(s: &Server, query: &str, until: &str) -> Vec<Value> {
    let r = s
        .client
        .get(s.url(&format!("/api/events{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let (mut text, mut out) = (String::new(), Vec::new());
    loop {
        let chunk = tokio::time::timeout(HANG, body.next())
            .await
            .expect("the all-pipelines stream sent nothing more")
            .expect("stream ended")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue; // keep-alive comment
            };
            let v: Value = serde_json::from_str(data).unwrap();
            let done = is_final(&v, until);
            out.push(v);
            if done {
                return out;
            }
        }
    }
}

fn of<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["data"]["pipeline_id"] == id)
        .collect()
}

fn seqs(events: &[&Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn statuses(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "status_changed")
        .map(|e| e["data"]["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn curl_events_after_the_pipeline_ended_still_shows_it() {
    let s = start().await;
    let id = s.spawn("Design a caching strategy", true).await;
    assert_eq!(s.wait(&id).await.as_str(), "COMPLETED");
    // the README's `curl -N http://localhost:3000/api/events`, verbatim: no parameters
    let events = read_sse(&s, "", &id).await;
    let mine = of(&events, &id);
    assert_eq!(
        statuses(&mine),
        ["SPAWNED", "RUNNING", "REPORT", "ORCHESTRATING", "COMPLETED"]
    );
    let n = mine.len() as u64;
    assert_eq!(seqs(&mine), (1..=n).collect::<Vec<_>>());
    s.shutdown().await;
}

#[tokio::test]
async fn replay_is_oldest_pipeline_first_and_since_skips_each_ones_start() {
    let s = start().await;
    let a = s.spawn("first objective", true).await;
    s.wait(&a).await;
    let b = s.spawn("second objective", true).await;
    s.wait(&b).await;
    let events = read_sse(&s, "?replay_secs=3600&since=3", &b).await;
    let first_b = events
        .iter()
        .position(|e| e["data"]["pipeline_id"] == b.as_str())
        .unwrap();
    assert!(
        events[..first_b].iter().any(|e| is_final(e, &a)),
        "pipeline {a} (older) is replayed before {b}"
    );
    for id in [&a, &b] {
        let mine = of(&events, id);
        let last = mine.last().unwrap()["seq"].as_u64().unwrap();
        assert_eq!(seqs(&mine), (4..=last).collect::<Vec<_>>(), "{id}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn replay_then_live_sends_every_seq_once() {
    let s = start().await;
    // resting at REPORT: replayed up to there, the rest comes live after `continue`
    let id = s.spawn("Design a caching strategy", false).await;
    assert_eq!(s.wait_until_rest(&id).await.as_str(), "REPORT");
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url("/ws"))
        .await
        .expect("ws connect");
    let mut events = Vec::new();
    let mut continued = false;
    loop {
        let msg = tokio::time::timeout(HANG, ws.next())
            .await
            .expect("no WebSocket message")
            .expect("closed")
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        let done = is_final(&v, &id);
        let at_report = v["type"] == "checkpoint_created" && v["data"]["status"] == "REPORT";
        events.push(v);
        if done {
            break;
        }
        if at_report && !continued {
            continued = true;
            let (st, body) = s
                .post("/api/pipeline/continue", &json!({"pipeline_id": id}))
                .await;
            assert_eq!(st, 202, "{body}");
        }
    }
    assert!(continued, "the replay reached the REPORT checkpoint");
    let mine = of(&events, &id);
    let n = mine.len() as u64;
    assert_eq!(seqs(&mine), (1..=n).collect::<Vec<_>>());
    assert_eq!(
        statuses(&mine),
        ["SPAWNED", "RUNNING", "REPORT", "ORCHESTRATING", "COMPLETED"]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn replay_secs_zero_is_live_only() {
    let s = start().await;
    let old = s.spawn("an ended pipeline", true).await;
    s.wait(&old).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url("/ws?replay_secs=0"))
        .await
        .expect("ws connect");
    let new = s.spawn("a new pipeline", true).await;
    let first = loop {
        let msg = tokio::time::timeout(HANG, ws.next())
            .await
            .expect("no WebSocket message")
            .expect("closed")
            .unwrap();
        if let Message::Text(t) = msg {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    assert_eq!(first["data"]["pipeline_id"], new.as_str(), "{first}");
    assert_eq!(first["seq"], 1);
    for q in ["?replay_secs=3601", "?replay_secs=x", "?since=-1"] {
        let r = s
            .client
            .get(s.url(&format!("/api/events{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
    }
    s.shutdown().await;
}
