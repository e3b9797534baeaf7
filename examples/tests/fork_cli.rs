//! `governance fork` against a running `governance serve` (SQLite, an API token): it prints
//! the new pipeline's id, which reaches COMPLETED with the role model asked for; refusals show
//! the server's status and message; an unreachable server is named; the source's ledger still
//! verifies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const TOKEN: &str = "fork-cli-token";

/// A `governance serve` process, killed on drop.
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

fn serve(db: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_governance"))
        .arg("serve")
        .env("PORT", "0")
        .env("GOVERNANCE_DB", db)
        .env("GOVERNANCE_LOCAL_LATENCY_MS", "0")
        .env("GOVERNANCE_API_TOKEN", TOKEN)
        .env_remove("GOVERNANCE_LLM_MODE")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("REDIS_URL")
        .env_remove("GOVERNANCE_REQUIRE_APPROVAL")
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

fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
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

/// Polls the record until its status is terminal (bounded: 60 s of polling).
fn wait_terminal(addr: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (st, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
        assert_eq!(st, 200, "{rec}");
        if [
            "COMPLETED",
            "FAILED",
            "TIMEOUT",
            "STOPPED",
            "ORCHESTRATION_ERROR",
            "ORCHESTRATION_FAILED",
        ]
        .contains(&rec["status"].as_str().unwrap_or(""))
        {
            return rec;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{id} did not end");
}

fn fork_cli(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_governance"))
        .arg("fork")
        .args(["--server", server])
        .args(args)
        .env("GOVERNANCE_API_TOKEN", TOKEN)
        .env_remove("GOVERNANCE_SERVER")
        .env_remove("RUST_LOG")
        .output()
        .expect("governance fork runs")
}

fn ledger(addr: &str, id: &str) -> Vec<Value> {
    let (st, logs) = http(
        addr,
        "GET",
        &format!("/api/pipeline/logs?pipeline_id={id}&limit=1000"),
        None,
    );
    assert_eq!(st, 200, "{logs}");
    logs["events"].as_array().unwrap().clone()
}

#[test]
fn governance_fork_prints_an_id_that_completes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fork.db");
    let server = serve(&db);
    let url = format!("http://{}", server.addr);
    let (st, body) = http(
        &server.addr,
        "POST",
        "/api/spawn",
        Some(&json!({"objective": "Design a caching strategy", "auto_continue": true})),
    );
    assert_eq!(st, 201, "{body}");
    let src = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(wait_terminal(&server.addr, &src)["status"], "COMPLETED");
    let before = ledger(&server.addr, &src);

    let out = fork_cli(
        &url,
        &[
            &src,
            "--at-status",
            "report",
            "--role-model",
            "BETA=local/cli-judge",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!id.is_empty() && !id.contains(' '), "{id:?}");
    let rec = wait_terminal(&server.addr, &id);
    assert_eq!(rec["status"], "COMPLETED", "{rec}");
    assert_eq!(rec["roles"]["BETA"]["model"], "local/cli-judge");
    let events = ledger(&server.addr, &id);
    assert_eq!(events[0]["type"], "forked_from");
    assert_eq!(events[0]["data"]["source"], src.as_str());

    // refusals: the server's status and message
    let out = fork_cli(&url, &["no-such-pipeline", "--at-seq", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("not found"),
        "{stderr}"
    );
    let last = before.last().unwrap()["seq"].as_u64().unwrap().to_string();
    let out = fork_cli(&url, &[&src, "--at-seq", &last]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("409") && stderr.contains("earlier seq"),
        "{stderr}"
    );
    // neither fork point: clap refuses before anything is sent
    let out = fork_cli(&url, &[&src]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--at-seq"));
    // no server there
    let out = fork_cli("http://127.0.0.1:9", &[&src, "--at-seq", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the server"), "{stderr}");

    // the source did not change, and the whole ledger file still verifies
    assert_eq!(ledger(&server.addr, &src), before);
    drop(server);
    let out = Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["ledger", "verify", "--db"])
        .arg(&db)
        .env_remove("RUST_LOG")
        .output()
        .expect("ledger verify runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
