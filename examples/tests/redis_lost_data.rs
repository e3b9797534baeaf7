//! `governance serve` with `REDIS_URL` (blackboard and bus in Redis, the system of record in
//! SQLite) while its redis-server, started without persistence, is killed mid-run and started
//! again empty on the same port after 5 s and after 30 s: every one of 50 pipelines in flight
//! ends COMPLETED with one consensus and a solution, the ledgers show the rebuild
//! (`coordination_rebuilt`) and `governance ledger verify` passes.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Node, Redis, all_logs as ledger, governance, http};

const PIPELINES: usize = 50;

/// `governance serve` on the SQLite file `db` with its blackboard and bus on `redis`; its log
/// is `<dir>/serve.log`.
fn serve(db: &Path, redis: &str) -> Node {
    let dir = db.parent().expect("the database's directory");
    Node::start_with("serve", dir, |cmd| {
        cmd.env("GOVERNANCE_DB", db)
            .env("REDIS_URL", redis)
            .env("GOVERNANCE_LOCAL_LATENCY_MS", "500")
            .env("RUST_LOG", "warn")
            .env_remove("GOVERNANCE_CLUSTER");
    })
}

fn status(addr: &str, id: &str) -> String {
    let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
    assert_eq!(code, 200, "{rec}");
    rec["status"].as_str().unwrap_or_default().to_owned()
}

fn count(entries: &[Value], kind: &str) -> usize {
    entries.iter().filter(|e| e["type"] == kind).count()
}

fn redis_restarted_empty_mid_run(outage: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let log = dir.path().join("serve.log");
    let mut redis = Redis::start();
    let server = serve(&db, &redis.url());
    let addr = server.addr.clone();
    let ids: Vec<String> = (0..PIPELINES)
        .map(|i| {
            let body = format!(
                r#"{{"objective": "Design a rollout plan for service {i}", "auto_continue": true}}"#
            );
            let (code, v) = http(&addr, "POST", "/api/spawn", Some(&body));
            assert!(code == 200 || code == 201, "{code} {v}");
            v["pipeline_id"]
                .as_str()
                .or_else(|| v["id"].as_str())
                .unwrap_or_else(|| panic!("no id in {v}"))
                .to_owned()
        })
        .collect();
    // in flight: most pipelines orchestrating (agents writing to the blackboard), none ended
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let statuses: Vec<String> = ids.iter().map(|id| status(&addr, id)).collect();
        let orchestrating = statuses.iter().filter(|s| *s == "ORCHESTRATING").count();
        if orchestrating >= PIPELINES / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pipelines never got in flight: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    redis.kill();
    // read from SQLite while Redis is down: these were live when the data was lost
    let live: Vec<String> = ids
        .iter()
        .filter(|id| status(&addr, id) == "ORCHESTRATING")
        .cloned()
        .collect();
    std::thread::sleep(outage);
    redis.start_again();

    let deadline = Instant::now() + Duration::from_secs(400);
    for id in &ids {
        loop {
            let s = status(&addr, id);
            if !matches!(
                s.as_str(),
                "SPAWNED" | "RUNNING" | "REPORT" | "ORCHESTRATING"
            ) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {s}; server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut rebuilt = 0;
    let mut not_completed = Vec::new();
    for id in &ids {
        let (_, rec) = http(&addr, "GET", &format!("/api/pipeline/{id}"), None);
        let entries = ledger(&addr, id);
        if rec["status"] != "COMPLETED" {
            not_completed.push(format!("{id}: {} {}", rec["status"], rec["failure"]));
            continue;
        }
        assert_eq!(
            count(&entries, "consensus_reached"),
            1,
            "{id}: one consensus"
        );
        assert!(
            rec["results"]["consensus"].is_object() && !rec["results"]["solution"].is_null(),
            "{id}: COMPLETED with its consensus and solution: {}",
            rec["results"]
        );
        let was_rebuilt = count(&entries, "coordination_rebuilt") > 0;
        rebuilt += usize::from(was_rebuilt);
        assert!(
            was_rebuilt || !live.contains(id),
            "{id} was orchestrating when Redis lost its data, yet its ledger shows no rebuild"
        );
    }
    assert!(
        not_completed.is_empty(),
        "{} of {PIPELINES} did not complete:\n{}\nserver log:\n{}",
        not_completed.len(),
        not_completed.join("\n"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    println!(
        "outage {outage:?}: {PIPELINES}/{PIPELINES} COMPLETED, {} live at the loss, {rebuilt} rebuilt",
        live.len()
    );
    assert!(
        !live.is_empty(),
        "no pipeline was live when Redis lost its data: proves nothing"
    );
    drop(server);
    let (ok, out) = governance(&["ledger", "verify", "--db", db.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
}

#[test]
fn fifty_pipelines_complete_when_redis_comes_back_empty_after_5_s() {
    redis_restarted_empty_mid_run(Duration::from_secs(5));
}

#[test]
fn fifty_pipelines_complete_when_redis_comes_back_empty_after_30_s() {
    redis_restarted_empty_mid_run(Duration::from_secs(30));
}
