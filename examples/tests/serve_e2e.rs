//! `governance serve` as an operator runs it: the seed's manual test over HTTP on the embedded
//! default (SQLite file), the ledger verified, the run replayed offline, and a server killed with
//! SIGKILL mid-run whose pipeline finishes after a restart.

mod support;

use std::path::Path;

use support::{Node, governance, http, wait_status};

/// `governance serve` on the SQLite file `db`, the local LLM answering after `latency_ms`.
fn serve(db: &Path, latency_ms: u64) -> Node {
    let dir = db.parent().expect("the database's directory");
    let db = db.to_str().expect("UTF-8 path").to_owned();
    Node::start("serve", dir, &[("GOVERNANCE_DB", db)], latency_ms)
}

fn spawn_pipeline(addr: &str) -> String {
    support::spawn_pipeline(addr, "Design a caching strategy")
}

#[test]
fn seed_manual_test_then_verify_and_replay_offline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let id = {
        let server = serve(&db, 0);
        let id = spawn_pipeline(&server.addr);
        let rec = wait_status(&server.addr, &id, "COMPLETED");
        assert!(rec["results"]["solution"].is_string(), "{rec}");
        id
    };
    let db_s = db.to_str().unwrap();
    let (ok, out) = governance(&["ledger", "verify", "--db", db_s], &[]);
    assert!(ok, "{out}");
    let (ok, out) = governance(&["replay", "--db", db_s, "--pipeline", &id], &[]);
    assert!(ok, "replay of the recorded exchanges: {out}");
}

#[test]
fn a_server_killed_mid_run_resumes_the_pipeline_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let id = {
        // slow LLM: the pipeline is still running when the process is killed
        let server = serve(&db, 300);
        let id = spawn_pipeline(&server.addr);
        wait_status(&server.addr, &id, "ORCHESTRATING");
        id
        // dropped here: SIGKILL, no shutdown, no final checkpoint
    };
    let server = serve(&db, 0);
    let rec = wait_status(&server.addr, &id, "COMPLETED");
    assert_eq!(
        rec["results"]["consensus"]["proposal_id"]
            .as_str()
            .map(|s| s.starts_with("ALPHA")),
        Some(true),
        "{rec}"
    );
    let (code, logs) = http(
        &server.addr,
        "GET",
        &format!("/api/pipeline/logs?pipeline_id={id}&limit=1000"),
        None,
    );
    assert_eq!(code, 200);
    let entries = logs["entries"]
        .as_array()
        .or_else(|| logs["events"].as_array())
        .expect("ledger entries");
    let consensus = entries
        .iter()
        .filter(|e| e["type"] == "consensus_reached")
        .count();
    assert_eq!(consensus, 1, "decided once across the crash");
    drop(server);
    let (ok, out) = governance(&["ledger", "verify", "--db", db.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
}
