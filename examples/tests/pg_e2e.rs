//! `governance serve` on PostgreSQL over real processes:
//! - three cluster nodes sharing PostgreSQL (leases there) and one redis-server (blackboard,
//!   bus), 200 pipelines, one node SIGKILLed mid-run: every pipeline COMPLETED with one
//!   consensus, the same ledger from every node (also from a node started afterwards, which
//!   never ran any of them), and `governance ledger verify --database-url` passes;
//! - a single node on a private PostgreSQL server that is stopped and started again mid-run:
//!   the pipelines wait and go on, and every write acknowledged before the outage is still
//!   there afterwards.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    LogsOnPanic, Node, PrivatePg, Redis, Schema, all_logs, get, governance, http, is_terminal,
    psql, spawn_pipeline, wait_terminal,
};

const PIPELINES: usize = 200;
const SPAWNERS: usize = 4;
const LEASE_MS: u64 = 1000;
const LATENCY_MS: u64 = 50;

/// The ledger checks of one pipeline: seqs 1..=n, one consensus, ended COMPLETED.
fn check_ledger(who: &str, events: &[Value], problems: &mut Vec<String>) {
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let n = events.len() as u64;
    if seqs != (1..=n).collect::<Vec<_>>() {
        problems.push(format!("{who}: seqs not 1..={n}: {seqs:?}"));
    }
    let consensus = events
        .iter()
        .filter(|e| e["type"] == "consensus_reached")
        .count();
    if consensus != 1 {
        problems.push(format!("{who}: {consensus} consensus_reached events"));
    }
    let last_status = events
        .iter()
        .rev()
        .find(|e| e["type"] == "status_changed")
        .and_then(|e| e["data"]["status"].as_str());
    if last_status != Some("COMPLETED") {
        problems.push(format!(
            "{who}: the ledger's last status is {last_status:?}"
        ));
    }
}

#[test]
fn three_nodes_on_postgres_one_killed_every_pipeline_completes() {
    let deadline = Instant::now() + Duration::from_secs(300);
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::new();
    let redis = Redis::start();
    let env = vec![
        ("DATABASE_URL", schema.url.clone()),
        ("GOVERNANCE_PG_SCHEMA", schema.name.clone()),
        ("REDIS_URL", redis.url()),
        ("GOVERNANCE_CLUSTER", "true".to_owned()),
        ("GOVERNANCE_LEASE_MS", LEASE_MS.to_string()),
    ];
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| Node::start(n, dir.path(), &env, LATENCY_MS))
        .collect();
    let _logs = LogsOnPanic(
        ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| dir.path().join(format!("{n}.log")))
            .collect(),
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let ready = get(&addrs[0], "/readyz");
    assert!(ready.to_string().contains("postgres"), "{ready}");

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

    // n1 holds leases of pipelines that have not ended: only a takeover can finish them
    let orphans = psql(
        &schema.url,
        &format!(
            "SELECT count(*) FROM {s}.leases l JOIN {s}.pipelines p ON p.id = l.pipeline_id \
             WHERE l.owner = 'n1' AND p.status NOT IN ('COMPLETED', 'FAILED', 'TIMEOUT', \
             'ORCHESTRATION_FAILED', 'ORCHESTRATION_ERROR', 'STOPPED')",
            s = schema.name
        ),
    );
    let orphans: u64 = orphans.parse().expect("a count");
    nodes[0].child.kill().expect("SIGKILL n1");
    nodes[0].child.wait().expect("reap n1");
    let killed = Instant::now();
    assert!(
        orphans > 0,
        "n1 ran no unfinished pipeline when it was killed (raise LATENCY_MS)"
    );
    eprintln!("n1 killed holding {orphans} unfinished pipelines");

    let (n2, n3) = (addrs[1].as_str(), addrs[2].as_str());
    let final_status = wait_terminal(&[n2, n3], &all, deadline);
    eprintln!(
        "all {PIPELINES} terminal {:?} after the kill",
        killed.elapsed()
    );

    // a node started now, which never ran any of them, answers for every one of them
    let n4 = Node::start("n4", dir.path(), &env, LATENCY_MS);
    let mut problems = Vec::new();
    for (i, id) in &spawned {
        let who = format!("pipeline #{i} {id}");
        if final_status[id] != "COMPLETED" {
            let rec = get(n2, &format!("/api/pipeline/{id}"));
            problems.push(format!("{who}: {} ({})", final_status[id], rec["failure"]));
        }
        let from_n2 = all_logs(n2, id);
        if all_logs(n3, id) != from_n2 || all_logs(&n4.addr, id) != from_n2 {
            problems.push(format!("{who}: the nodes answer different ledgers"));
        }
        check_ledger(&who, &from_n2, &mut problems);
        let rec = get(&n4.addr, &format!("/api/pipeline/{id}"));
        if rec["status"] != "COMPLETED" {
            problems.push(format!("{who}: n4 shows {}", rec["status"]));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    let verify_env = [
        ("DATABASE_URL", schema.url.clone()),
        ("GOVERNANCE_PG_SCHEMA", schema.name.clone()),
    ];
    let (ok, out) = governance(&["ledger", "verify"], &verify_env);
    assert!(ok, "ledger verify failed: {out}");
    assert!(
        out.contains("ledger intact (") && out.contains(&format!("in {PIPELINES} pipelines")),
        "{out}"
    );
    // no lease outlives its pipeline
    let leases = psql(
        &schema.url,
        &format!("SELECT count(*) FROM {}.leases", schema.name),
    );
    eprintln!("leases left: {leases}");
}

#[test]
fn postgres_restarted_mid_run_pipelines_wait_and_nothing_acknowledged_is_lost() {
    const N: usize = 30;
    let deadline = Instant::now() + Duration::from_secs(240);
    let pg = PrivatePg::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![("DATABASE_URL", pg.url())];
    let node = Node::start("solo", dir.path(), &env, 100);
    let _logs = LogsOnPanic(vec![
        dir.path().join("solo.log"),
        pg.dir.path().join("pg.log"),
    ]);
    let ids: BTreeSet<String> = (0..N)
        .map(|i| spawn_pipeline(&node.addr, &format!("Plan task #{i}")))
        .collect();
    // wait until they are under way (the first one orchestrating, or past it), then take
    // what the server has acknowledged
    let under_way = Instant::now() + Duration::from_secs(60);
    loop {
        let st = get(
            &node.addr,
            &format!("/api/pipeline/{}", ids.first().unwrap()),
        )["status"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if st == "ORCHESTRATING" || is_terminal(&st) {
            break;
        }
        assert!(
            Instant::now() < under_way,
            "the first pipeline is still {st} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: BTreeMap<String, Vec<Value>> = ids
        .iter()
        .map(|id| (id.clone(), all_logs(&node.addr, id)))
        .collect();
    let open_before = before
        .values()
        .filter(|evs| {
            !evs.iter().any(|e| {
                e["type"] == "status_changed"
                    && e["data"]["status"].as_str().is_some_and(is_terminal)
            })
        })
        .count();
    assert!(
        open_before > 0,
        "every pipeline ended before the outage: it would prove nothing"
    );

    pg.ctl(&["stop", "-m", "fast", "-w"]);
    let (code, body) = http(&node.addr, "GET", "/readyz", None);
    assert_eq!(code, 503, "/readyz during the outage: {body}");
    assert!(body.to_string().contains("ledger"), "{body}");
    std::thread::sleep(Duration::from_secs(4));
    pg.ctl(&["start", "-w", "-t", "60"]);
    eprintln!("PostgreSQL was down 4 s with {open_before} of {N} pipelines running");

    let final_status = wait_terminal(&[&node.addr], &ids, deadline);
    let mut problems = Vec::new();
    for id in &ids {
        if final_status[id] != "COMPLETED" {
            problems.push(format!("{id}: {}", final_status[id]));
        }
        let after = all_logs(&node.addr, id);
        let acknowledged = &before[id];
        if after.get(..acknowledged.len()) != Some(acknowledged.as_slice()) {
            problems.push(format!(
                "{id}: the {} entries acknowledged before the outage are not a prefix of the {} after",
                acknowledged.len(),
                after.len()
            ));
        }
        check_ledger(id, &after, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(get(&node.addr, "/readyz")["status"], "ready");
    let (ok, out) = governance(&["ledger", "verify", "--database-url", &pg.url()], &[]);
    assert!(ok && out.contains(&format!("in {N} pipelines")), "{out}");
}

#[test]
fn a_single_node_on_postgres_killed_mid_run_resumes_every_pipeline_at_its_restart() {
    const N: usize = 20;
    let deadline = Instant::now() + Duration::from_secs(240);
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::new();
    let env = vec![
        ("DATABASE_URL", schema.url.clone()),
        ("GOVERNANCE_PG_SCHEMA", schema.name.clone()),
    ];
    let mut first = Node::start("first", dir.path(), &env, 100);
    let _logs = LogsOnPanic(vec![
        dir.path().join("first.log"),
        dir.path().join("second.log"),
    ]);
    let ids: BTreeSet<String> = (0..N)
        .map(|i| spawn_pipeline(&first.addr, &format!("Plan task #{i}")))
        .collect();
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reap");
    let open = psql(
        &schema.url,
        &format!(
            "SELECT count(*) FROM {}.pipelines WHERE status NOT IN ('COMPLETED', 'FAILED', \
             'TIMEOUT', 'ORCHESTRATION_FAILED', 'ORCHESTRATION_ERROR', 'STOPPED')",
            schema.name
        ),
    );
    assert_ne!(
        open, "0",
        "every pipeline ended before the kill: it would prove nothing"
    );
    let second = Node::start("second", dir.path(), &env, 100);
    let final_status = wait_terminal(&[&second.addr], &ids, deadline);
    let mut problems = Vec::new();
    for id in &ids {
        if final_status[id] != "COMPLETED" {
            problems.push(format!("{id}: {}", final_status[id]));
        }
        check_ledger(id, &all_logs(&second.addr, id), &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "{open} of {N} pipelines were unfinished at the kill; all COMPLETED after the restart"
    );
}

/// Two cluster nodes on a private PostgreSQL that is down for longer than the lease: every
/// lease runs out meanwhile; when it is back, each pipeline goes on at its owner or at the
/// node that took it over (the other is fenced), and each ends once, with one consensus.
#[test]
fn two_nodes_ride_out_a_postgres_outage_longer_than_their_leases() {
    const N: usize = 40;
    let deadline = Instant::now() + Duration::from_secs(240);
    let pg = PrivatePg::start();
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![
        ("DATABASE_URL", pg.url()),
        ("REDIS_URL", redis.url()),
        ("GOVERNANCE_CLUSTER", "true".to_owned()),
        ("GOVERNANCE_LEASE_MS", LEASE_MS.to_string()),
    ];
    let nodes: Vec<Node> = ["a", "b"]
        .into_iter()
        .map(|n| Node::start(n, dir.path(), &env, 100))
        .collect();
    let _logs = LogsOnPanic(vec![
        dir.path().join("a.log"),
        dir.path().join("b.log"),
        pg.dir.path().join("pg.log"),
    ]);
    let ids: BTreeSet<String> = (0..N)
        .map(|i| spawn_pipeline(&nodes[i % 2].addr, &format!("Plan task #{i}")))
        .collect();
    let open = psql(
        &pg.url(),
        "SELECT count(*) FROM pipelines WHERE status NOT IN ('COMPLETED', 'FAILED', 'TIMEOUT', \
         'ORCHESTRATION_FAILED', 'ORCHESTRATION_ERROR', 'STOPPED')",
    );
    pg.ctl(&["stop", "-m", "fast", "-w"]);
    assert_ne!(
        open, "0",
        "every pipeline ended before the outage: it would prove nothing"
    );
    std::thread::sleep(Duration::from_millis(LEASE_MS * 4));
    pg.ctl(&["start", "-w", "-t", "60"]);
    let (a, b) = (nodes[0].addr.as_str(), nodes[1].addr.as_str());
    let final_status = wait_terminal(&[a, b], &ids, deadline);
    let mut problems = Vec::new();
    for id in &ids {
        if final_status[id] != "COMPLETED" {
            problems.push(format!("{id}: {}", final_status[id]));
        }
        let from_a = all_logs(a, id);
        if all_logs(b, id) != from_a {
            problems.push(format!("{id}: the nodes answer different ledgers"));
        }
        check_ledger(id, &from_a, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let (ok, out) = governance(&["ledger", "verify", "--database-url", &pg.url()], &[]);
    assert!(ok && out.contains(&format!("in {N} pipelines")), "{out}");
}
