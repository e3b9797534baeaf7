//! How many WebSocket clients one server holds with events flowing: opens N clients on
//! `/ws`, spawns pipelines through the API and checks every client receives every event.
//!
//! `cargo run --release -p governance-http --example ws_clients -- http://127.0.0.1:3101 2000 20`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3101".to_owned());
    let clients: usize = args.next().map_or(1000, |v| v.parse().expect("clients"));
    let pipelines: usize = args.next().map_or(10, |v| v.parse().expect("pipelines"));
    // live events only: earlier pipelines are not replayed into the count
    let ws_url = format!("{}/ws?replay_secs=0", base.replacen("http", "ws", 1));
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for i in 0..clients {
        let (ws, _) = match tokio_tungstenite::connect_async(&ws_url).await {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("client {i} failed to connect: {e}");
                break;
            }
        };
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            while let Some(Ok(m)) = rx.next().await {
                if m.is_text() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let connected = tasks.len();
    println!("{connected} clients connected in {:?}", started.elapsed());
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..pipelines {
        let v: serde_json::Value = http
            .post(format!("{base}/api/spawn"))
            .json(&serde_json::json!({"objective": "Design a caching strategy", "auto_continue": true}))
            .send()
            .await
            .expect("spawn")
            .json()
            .await
            .expect("spawn body");
        ids.push(v["pipeline_id"].as_str().expect("id").to_owned());
    }
    // total events = sum of last_seq once every pipeline has ended
    let mut total = 0;
    for id in &ids {
        loop {
            let rec: serde_json::Value = http
                .get(format!("{base}/api/pipeline/{id}"))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("record");
            let terminal = !matches!(
                rec["status"].as_str(),
                Some("SPAWNED" | "RUNNING" | "REPORT" | "ORCHESTRATING")
            );
            if terminal {
                total += rec["last_seq"].as_u64().unwrap_or(0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let want = total * connected as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.load(Ordering::Relaxed);
    println!(
        "{connected} clients, {pipelines} pipelines, {total} events each: {got}/{want} messages delivered in {:?}",
        started.elapsed()
    );
}
