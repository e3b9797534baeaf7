//! Live events over WebSocket and SSE: replay with `since`, no gaps or duplicates, auth,
//! Origin check, slow clients, and the seed's manual test.

mod common;

use std::time::Duration;

use common::{Opts, Server, start, start_with};
use futures::StreamExt;
use governance_core::{Governance, PipelineId};
use governance_http::live::{Feed, FeedItem, FeedQuery, FeedSpec};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &Server, query: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(s.ws_url(&format!("/ws{query}")))
        .await
        .expect("ws connect");
    ws
}

/// Next JSON text message (skipping pings), or `None` when closed.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("no WebSocket message within 60 s")?;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Reads until the final checkpoint event of the pipeline; returns all events read.
async fn read_until_final(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(v) = next_json(ws).await {
        let last = v["type"] == "checkpoint_created" && v["data"]["final"] == true;
        out.push(v);
        if last {
            break;
        }
    }
    out
}

fn statuses(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "status_changed")
        .map(|e| e["data"]["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn seed_manual_test_spawn_then_watch_the_websocket() {
    let s = start().await;
    let mut ws = connect(&s, "").await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &serde_json::json!({"objective": "Design a caching strategy", "auto_continue": true}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap();
    let events = read_until_final(&mut ws).await;
    assert!(events.iter().all(|e| e["data"]["pipeline_id"] == id));
    assert_eq!(
        statuses(&events),
        ["SPAWNED", "RUNNING", "REPORT", "ORCHESTRATING", "COMPLETED"],
        "status_changed events"
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in [
        "orchestration_started",
        "agent_spawned",
        "orchestration_complete",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let spawned: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "agent_spawned")
        .map(|e| e["data"]["role"].as_str().unwrap())
        .collect();
    assert!(
        spawned.contains(&"ALPHA") && spawned.contains(&"BETA"),
        "{spawned:?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    s.shutdown().await;
}

#[tokio::test]
async fn ws_reconnect_with_since_gets_exactly_the_rest() {
    let s = start().await;
    let id = s.spawn("Design a caching strategy", true).await;
    s.wait(&id).await;
    let all: Vec<u64> = {
        let mut ws = connect(&s, &format!("?pipeline_id={id}&since=0")).await;
        read_until_final(&mut ws)
            .await
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    let n = all.len() as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    // read k, drop the connection, reconnect with since=k
    let k = 5;
    let mut ws = connect(&s, &format!("?pipeline_id={id}")).await;
    for want in 1..=k {
        assert_eq!(next_json(&mut ws).await.unwrap()["seq"], want);
    }
    drop(ws);
    let mut ws = connect(&s, &format!("?pipeline_id={id}&since={k}")).await;
    let rest: Vec<u64> = read_until_final(&mut ws)
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(rest, (k + 1..=n).collect::<Vec<_>>());
    s.shutdown().await;
}

#[tokio::test]
async fn ws_replay_while_running_switches_to_live_without_gaps() {
    let s = start_with(Opts {
        latency_ms: 20,
        ..Opts::default()
    })
    .await;
    let id = s.spawn("Design a caching strategy", true).await;
    // connect mid-run with since=1: replay then live
    let mut ev = s.gov.subscribe();
    while ev.recv().await.unwrap().seq < 4 {}
    let mut ws = connect(&s, &format!("?pipeline_id={id}&since=1")).await;
    let seqs: Vec<u64> = read_until_final(&mut ws)
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (2..=seqs.len() as u64 + 1).collect::<Vec<_>>());
    assert_eq!(s.wait(&id).await.as_str(), "COMPLETED");
    s.shutdown().await;
}

#[tokio::test]
async fn ws_rejects_bad_queries_and_foreign_origins() {
    let s = start().await;
    for (q, want) in [
        ("?replay_secs=3601", 400),
        ("?replay_secs=-1", 400),
        ("?pipeline_id=a:b", 400),
        ("?pipeline_id=unknown", 404),
        ("?since=x", 400),
    ] {
        match tokio_tungstenite::connect_async(s.ws_url(&format!("/ws{q}"))).await {
            Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), want, "{q}"),
            other => panic!("{q}: expected HTTP {want}, got {other:?}"),
        }
    }
    let mut req = s.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut req = s.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", format!("http://{}", s.addr).parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
    // a plain GET is not an upgrade
    let (st, body) = s.get("/ws").await;
    assert_eq!(st, 400, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn ws_and_sse_need_the_token_when_configured() {
    let s = start_with(Opts {
        token: Some("tok en/+"),
        ..Opts::default()
    })
    .await;
    for q in ["", "?token=wrong"] {
        match tokio_tungstenite::connect_async(s.ws_url(&format!("/ws{q}"))).await {
            Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 401, "{q}"),
            other => panic!("expected 401, got {other:?}"),
        }
    }
    assert!(
        tokio_tungstenite::connect_async(s.ws_url("/ws?token=tok%20en%2F%2B"))
            .await
            .is_ok()
    );
    let mut req = s.ws_url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer tok en/+".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());

    let r = s.client.get(s.url("/api/events")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .client
        .get(s.url("/api/events?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .client
        .get(s.url("/api/events?token=tok%20en%2F%2B"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    drop(r);
    s.shutdown().await;
}

#[tokio::test]
async fn sse_replays_with_since_and_last_event_id() {
    let s = start().await;
    let id = s.spawn("Design a caching strategy", true).await;
    s.wait(&id).await;
    let read = |since: Option<&'static str>, query: String| {
        let s = &s;
        async move {
            let mut req = s.client.get(s.url(&format!("/api/events?{query}")));
            if let Some(l) = since {
                req = req.header("last-event-id", l);
            }
            let mut body = req.send().await.unwrap().bytes_stream();
            let mut text = String::new();
            let mut seqs = Vec::new();
            while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), body.next())
                .await
                .expect("SSE stalled")
            {
                text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
                while let Some(end) = text.find("\n\n") {
                    let frame: String = text.drain(..end + 2).collect();
                    let data = frame
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .unwrap_or("null");
                    let v: Value = serde_json::from_str(data).unwrap();
                    if v.is_null() {
                        continue;
                    }
                    let name = frame.lines().find_map(|l| l.strip_prefix("event: "));
                    assert_eq!(name, v["type"].as_str());
                    let idl = frame.lines().find_map(|l| l.strip_prefix("id: "));
                    assert_eq!(idl.map(str::to_owned), Some(v["seq"].to_string()));
                    seqs.push(v["seq"].as_u64().unwrap());
                    if v["type"] == "checkpoint_created" && v["data"]["final"] == true {
                        return seqs;
                    }
                }
            }
            seqs
        }
    };
    let all = read(None, format!("pipeline_id={id}")).await;
    let n = all.len() as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    let rest = read(None, format!("pipeline_id={id}&since=10")).await;
    assert_eq!(rest, (11..=n).collect::<Vec<_>>());
    let rest = read(Some("12"), format!("pipeline_id={id}")).await;
    assert_eq!(rest, (13..=n).collect::<Vec<_>>());
    let r = s
        .client
        .get(s.url("/api/events?replay_secs=3601"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    s.shutdown().await;
}

async fn run_to_end(gov: &Governance) -> PipelineId {
    let id = gov
        .spawn(governance_core::SpawnRequest {
            objective: "Design a caching strategy".into(),
            auto_continue: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    gov.wait(&id).await.unwrap();
    id
}

#[tokio::test]
async fn a_slow_single_pipeline_client_catches_up_from_the_ledger() {
    let gov = Governance::builder().event_capacity(16).build().unwrap();
    // a feed that subscribes now and is not read until the pipeline has ended (lagging)
    let spec_query = FeedQuery {
        replay_secs: Some(0),
        ..FeedQuery::default()
    };
    let all_spec = FeedSpec::from_query(&gov, &spec_query).await.unwrap();
    let mut all_feed = Feed::new(&gov, all_spec, CancellationToken::new());
    let id = run_to_end(&gov).await;
    let last = gov.get(&id).await.unwrap().last_seq;
    assert!(
        last > 16,
        "the test needs more events than the channel holds"
    );
    // all-pipelines feed: told to resync
    match all_feed.next().await.unwrap() {
        FeedItem::Resync { missed } => assert!(missed > 0),
        other => panic!("expected resync, got {other:?}"),
    }
    // one-pipeline feed created before the run, read after it: every seq exactly once
    let gov2 = Governance::builder().event_capacity(16).build().unwrap();
    let cancel = CancellationToken::new();
    let pending_id = gov2
        .spawn(governance_core::SpawnRequest {
            objective: "Design a caching strategy".into(),
            auto_continue: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let q = FeedQuery {
        pipeline_id: Some(pending_id.to_string()),
        ..FeedQuery::default()
    };
    let mut feed = Feed::new(
        &gov2,
        FeedSpec::from_query(&gov2, &q).await.unwrap(),
        cancel.clone(),
    );
    let rec = gov2.wait(&pending_id).await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < usize::try_from(rec.last_seq).unwrap() {
        match feed.next().await.unwrap() {
            FeedItem::Event(e) => seqs.push(e.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=rec.last_seq).collect::<Vec<_>>());
    cancel.cancel();
    assert!(feed.next().await.is_none(), "a cancelled feed ends");
}
