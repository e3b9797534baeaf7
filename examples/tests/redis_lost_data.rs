//! `governance serve` with `REDIS_URL` (blackboard and bus in Redis, the system of record in
//! SQLite) while its redis-server, started without persistence, is killed mid-run and started
//! again empty on the same port after 5 s and after 30 s: every one of 50 pipelines in flight
//! ends COMPLETED with one consensus and a solution, the ledgers show the rebuild
//! (`coordination_rebuilt`) and `governance ledger verify` passes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PIPELINES: usize = 50;

fn redis_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin/redis-server"))
        .chain(std::env::split_paths(&path).map(|d| d.join("redis-server")))
        .find(|c| c.is_file())
        .expect("redis-server is missing: install it (apt-get install redis-server); never skipped")
}

/// A redis-server without persistence on a fixed port, killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let mut child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        for _ in 0..400 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "redis-server on port {} never accepted a connection",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `governance serve`, killed on drop.
struct Serve {
    child: Child,
    addr: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &Path, redis: &str, log: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_governance"))
        .arg("serve")
        .env("PORT", "0")
        .env("GOVERNANCE_DB", db)
        .env("REDIS_URL", redis)
        .env("GOVERNANCE_LOCAL_LATENCY_MS", "500")
        .env("RUST_LOG", "warn")
        .env_remove("GOVERNANCE_CLUSTER")
        .env_remove("GOVERNANCE_LLM_MODE")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("GOVERNANCE_API_TOKEN")
        .env_remove("GOVERNANCE_REMOTE_ROLES")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
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
    Serve { child, addr }
}

fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let payload = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

fn status(addr: &str, id: &str) -> String {
    let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
    assert_eq!(code, 200, "{rec}");
    rec["status"].as_str().unwrap_or_default().to_owned()
}

fn ledger(addr: &str, id: &str) -> Vec<Value> {
    let (code, logs) = http(
        addr,
        "GET",
        &format!("/api/pipeline/logs?pipeline_id={id}&limit=1000"),
        None,
    );
    assert_eq!(code, 200, "{logs}");
    logs["entries"]
        .as_array()
        .or_else(|| logs["events"].as_array())
        .cloned()
        .expect("ledger entries")
}

fn count(entries: &[Value], kind: &str) -> usize {
    entries.iter().filter(|e| e["type"] == kind).count()
}

fn redis_restarted_empty_mid_run(outage: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let log = dir.path().join("serve.log");
    let mut redis = Redis::start();
    let server = serve(&db, &redis.url(), &log);
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
    redis.spawn();

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
    let verify: Output = Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["ledger", "verify", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn fifty_pipelines_complete_when_redis_comes_back_empty_after_5_s() {
    redis_restarted_empty_mid_run(Duration::from_secs(5));
}

#[test]
fn fifty_pipelines_complete_when_redis_comes_back_empty_after_30_s() {
    redis_restarted_empty_mid_run(Duration::from_secs(30));
}
