//! Cluster mode on PostgreSQL over real processes, with the redis-server that holds the
//! blackboard and the bus killed mid-run and started again EMPTY (no persistence): three
//! `governance serve` nodes share PostgreSQL (system of record, leases) and Redis; every
//! pipeline still ends COMPLETED with one consensus, the nodes answer the same ledgers, the
//! ledgers of the pipelines that were orchestrating show the rebuild
//! (`coordination_rebuilt`), and `governance ledger verify` passes against PostgreSQL.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    LogsOnPanic, Node, Redis, Schema, all_logs, get, governance, spawn_pipeline, statuses,
    wait_terminal,
};

const PIPELINES: usize = 200;
const SPAWNERS: usize = 4;
const LEASE_MS: u64 = 1000;
/// Slow enough that many pipelines are orchestrating when Redis goes away.
const LATENCY_MS: u64 = 200;

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

#[test]
fn three_nodes_on_postgres_ride_out_redis_restarting_empty() {
    let deadline = Instant::now() + Duration::from_secs(420);
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::new();
    let mut redis = Redis::start();
    let env = vec![
        ("DATABASE_URL", schema.url.clone()),
        ("GOVERNANCE_PG_SCHEMA", schema.name.clone()),
        ("REDIS_URL", redis.url()),
        ("GOVERNANCE_CLUSTER", "true".to_owned()),
        ("GOVERNANCE_LEASE_MS", LEASE_MS.to_string()),
    ];
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| Node::start(n, dir.path(), &env, LATENCY_MS))
        .collect();
    let _logs = LogsOnPanic(
        ["n1", "n2", "n3"]
            .iter()
            .map(|n| dir.path().join(format!("{n}.log")))
            .collect(),
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    let spawned: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SPAWNERS)
            .map(|t| {
                let addrs = &addrs;
                s.spawn(move || {
                    (t..PIPELINES)
                        .step_by(SPAWNERS)
                        .map(|i| (i, spawn_pipeline(&addrs[i % 3], &format!("Plan task #{i}"))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("spawner"))
            .collect()
    });
    let all: BTreeSet<String> = spawned.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(all.len(), PIPELINES);

    // Redis goes away while pipelines are orchestrating, and comes back with nothing
    let orchestrating = statuses(&addrs[1])
        .expect("the pipeline list")
        .values()
        .filter(|s| *s == "ORCHESTRATING")
        .count();
    assert!(
        orchestrating > 0,
        "no pipeline was orchestrating when Redis was killed (raise LATENCY_MS)"
    );
    redis.restart_empty(Duration::from_secs(3));
    eprintln!("redis restarted empty with {orchestrating} pipelines orchestrating");

    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let final_status = wait_terminal(&refs, &all, deadline);
    let mut problems = Vec::new();
    let mut rebuilt = 0;
    for (i, id) in &spawned {
        let who = format!("pipeline #{i} {id}");
        if final_status[id] != "COMPLETED" {
            let rec = get(&addrs[0], &format!("/api/pipeline/{id}"));
            problems.push(format!("{who}: {} ({})", final_status[id], rec["failure"]));
        }
        let events = all_logs(&addrs[0], id);
        if all_logs(&addrs[1], id) != events || all_logs(&addrs[2], id) != events {
            problems.push(format!("{who}: the nodes answer different ledgers"));
        }
        let consensus = count(&events, "consensus_reached");
        if consensus != 1 {
            problems.push(format!("{who}: {consensus} consensus_reached events"));
        }
        let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
        if seqs != (1..=events.len() as u64).collect::<Vec<_>>() {
            problems.push(format!("{who}: seqs not gap-free"));
        }
        if count(&events, "coordination_rebuilt") > 0 {
            rebuilt += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("{rebuilt} of {PIPELINES} ledgers show coordination_rebuilt");
    assert!(
        rebuilt > 0,
        "no ledger shows coordination_rebuilt although {orchestrating} pipelines were orchestrating"
    );

    let verify_env = [
        ("DATABASE_URL", schema.url.clone()),
        ("GOVERNANCE_PG_SCHEMA", schema.name.clone()),
    ];
    let (ok, out) = governance(&["ledger", "verify"], &verify_env);
    assert!(ok, "ledger verify failed: {out}");
}
