//! `governance serve` as an operator runs it: the seed's manual test over HTTP on the embedded
//! default (SQLite file), the ledger verified, the run replayed offline, and a server killed with
//! SIGKILL mid-run whose pipeline finishes after a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &Path, latency_ms: u64) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_governance"))
        .arg("serve")
        .env("PORT", "0")
        .env("GOVERNANCE_DB", db)
        .env("GOVERNANCE_LOCAL_LATENCY_MS", latency_ms.to_string())
        .env_remove("GOVERNANCE_LLM_MODE")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("REDIS_URL")
        .env_remove("GOVERNANCE_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
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

fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let payload = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(payload).unwrap_or(serde_json::Value::Null),
    )
}

fn wait_status(addr: &str, id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
        assert_eq!(code, 200, "{rec}");
        if rec["status"] == want {
            return rec;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline stuck at {}",
            rec["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_pipeline(addr: &str) -> String {
    let (code, body) = http(
        addr,
        "POST",
        "/api/spawn",
        Some(r#"{"objective": "Design a caching strategy", "auto_continue": true}"#),
    );
    assert_eq!(code, 201, "{body}");
    body["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_owned()
}

fn governance(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(args)
        .output()
        .expect("runs")
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
    let verify = governance(&["ledger", "verify", "--db", db_s]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let replay = governance(&["replay", "--db", db_s, "--pipeline", &id]);
    assert!(
        replay.status.success(),
        "replay of the recorded exchanges: {}{}",
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
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
    let verify = governance(&["ledger", "verify", "--db", db.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
