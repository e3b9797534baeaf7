//! An agent in another language: `examples/python/critic_agent.py` (redis-py only, written from
//! `docs/wire-protocol.md`) plays the custom role CRITIC in a pipeline run by `governance serve`
//! (`GOVERNANCE_REMOTE_ROLES=CRITIC`) on a Redis of the test's own. Needs `redis-server`,
//! `python3` and redis-py (`pip install redis`); fails, never skips, when one is missing.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where `redis-server` is expected (`.ci/run` installs it).
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The local LLM's latency. The critic reviews as soon as the first proposal exists; the
/// pipeline completes two LLM calls later (BETA's vote, then the solution). The critic's report
/// reaches the ledger about 300 ms after the proposal (its 100 ms blackboard poll + the owner's
/// 200 ms bus poll), so two calls of 750 ms leave it more than a second to spare. (At 50 ms the
/// report lost the race against completion in some runs.)
const LATENCY_MS: &str = "750";
/// Only so that a broken run ends instead of hanging; nothing is asserted about durations.
const DEADLINE: Duration = Duration::from_secs(180);

/// A `redis-server` on a free port in a temp dir, no persistence, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: install redis-server (apt-get install redis-server) — \
             this test needs a real server and never skips"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let log = dir.path().join("redis.log");
        let mut child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REDIS_SERVER}: {e}"));
        let started = Instant::now();
        loop {
            if raw(port, &["PING"]).is_ok_and(|l| l == "+PONG") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server never answered PING:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command over RESP and returns the first reply line.
fn raw(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// A child process killed on drop, with its stderr in a file for failure messages and its
/// stdout after the first line collected (so it never writes into a closed pipe).
struct Proc {
    child: Child,
    stderr: PathBuf,
    stdout: Arc<Mutex<String>>,
}

impl Proc {
    fn new(child: Child, stderr: PathBuf) -> Self {
        Self {
            child,
            stderr,
            stdout: Arc::default(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Reads the first stdout line (the process's "I am ready" line); the rest is collected.
    fn first_line(&mut self, what: &str) -> String {
        let mut out = BufReader::new(self.child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading {what}'s stdout: {e}"));
        assert!(
            !line.is_empty(),
            "{what} exited before it was ready: {:?}\n{}",
            self.child.try_wait(),
            self.stderr()
        );
        let rest = self.stdout.clone();
        std::thread::spawn(move || {
            for l in out.lines() {
                let Ok(l) = l else { return };
                let mut rest = rest.lock().unwrap();
                rest.push_str(&l);
                rest.push('\n');
            }
        });
        line
    }

    fn wait(&mut self, what: &str) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{what} still running:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, redis_url: &str) -> (Proc, String) {
    let stderr = dir.join("serve.stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_governance"))
        .arg("serve")
        .env("PORT", "0")
        .env("REDIS_URL", redis_url)
        .env("GOVERNANCE_REMOTE_ROLES", "CRITIC")
        .env("GOVERNANCE_DB", dir.join("governance.db"))
        .env("GOVERNANCE_LOCAL_LATENCY_MS", LATENCY_MS)
        .env("GOVERNANCE_LLM_MODE", "local")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("GOVERNANCE_CLUSTER")
        .env_remove("GOVERNANCE_API_TOKEN")
        .env_remove("DRAGONFLY_PASSWORD")
        .env_remove("REDIS_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("governance serve starts");
    let mut server = Proc::new(child, stderr);
    let line = server.first_line("governance serve");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .map(|a| a.trim().to_owned())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, addr)
}

fn python3_with_redis_py() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, redis; print(sys.version_info[:2] >= (3, 11))",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is missing ({e}): this test runs the Python agent and never skips")
        });
    assert!(
        out.status.success(),
        "redis-py is missing for python3: `pip install redis` (the test never skips)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "True",
        "the Python agent needs Python 3.11 or newer"
    );
}

fn critic(dir: &Path, redis_url: &str) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/critic_agent.py");
    let stderr = dir.join("critic.stderr");
    let child = Command::new("python3")
        .arg(&script)
        .args(["--redis-url", redis_url, "--name", "critic-test", "--once"])
        .args(["--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let mut p = Proc::new(child, stderr);
    let ready = p.first_line("critic_agent.py");
    assert!(ready.starts_with("ready"), "{ready}");
    p
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

fn wait_terminal(addr: &str, id: &str, server: &Proc) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
        assert_eq!(code, 200, "{rec}");
        if matches!(
            rec["status"].as_str(),
            Some(
                "COMPLETED"
                    | "FAILED"
                    | "TIMEOUT"
                    | "ORCHESTRATION_FAILED"
                    | "ORCHESTRATION_ERROR"
                    | "STOPPED"
            )
        ) {
            return rec;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "pipeline stuck at {}\n{}",
            rec["status"],
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ledger(addr: &str, id: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let (code, page) = http(
            addr,
            "GET",
            &format!("/api/pipeline/logs?pipeline_id={id}&after={after}&limit=1000"),
            None,
        );
        assert_eq!(code, 200, "{page}");
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        if page["has_more"] != true {
            return events;
        }
        after = page["next_after"].as_u64().expect("next_after");
    }
}

#[test]
fn the_python_critic_plays_a_custom_role_in_a_rust_pipeline() {
    python3_with_redis_py();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &redis.url());
    let mut critic = critic(dir.path(), &redis.url());

    let (code, body) = http(
        &addr,
        "POST",
        "/api/spawn",
        Some(r#"{"objective": "Design a caching strategy", "auto_continue": true}"#),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_owned();

    let rec = wait_terminal(&addr, &id, &server);
    let status = critic.wait("critic_agent.py");
    let critic_log = critic.stderr();
    assert_eq!(
        rec["status"],
        "COMPLETED",
        "{rec}\n--- server:\n{}\n--- critic:\n{critic_log}",
        server.stderr()
    );
    assert!(status.success(), "critic_agent.py: {status}\n{critic_log}");
    let finished = critic.stdout();
    assert!(
        finished.contains(&format!("finished {id} CRITIC: done")),
        "critic_agent.py's stdout: {finished}\n{critic_log}"
    );

    let events = ledger(&addr, &id);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        events.iter().any(|e| e["type"] == "agent_spawned"
            && e["data"]["agent_id"] == "CRITIC"
            && e["data"]["role"] == "CRITIC"),
        "no agent_spawned for CRITIC in {types:?}"
    );
    let review = events
        .iter()
        .find(|e| e["type"] == "agent_message" && e["data"]["from"] == "CRITIC")
        .unwrap_or_else(|| {
            panic!(
                "no agent_message from CRITIC in {types:?} (recorded only while the pipeline \
                 runs: did it complete first?)\n{critic_log}"
            )
        });
    let content = review["data"]["content"].as_str().unwrap_or_default();
    assert!(
        content.starts_with("CRITIC: ") && content.contains("proposal(s) reviewed"),
        "{review}"
    );
    assert_eq!(review["data"]["to"], "*", "{review}");
    assert_eq!(review["data"]["pipeline_id"], id.as_str(), "{review}");

    // the worker cleaned up after itself: no work left, no heartbeat
    assert_eq!(raw(redis.port, &["XLEN", "gov:work:CRITIC"]).unwrap(), ":0");
    assert_eq!(
        raw(
            redis.port,
            &["EXISTS", &format!("gov:{{{id}}}:worker:CRITIC")]
        )
        .unwrap(),
        ":0"
    );
}

#[test]
fn the_python_agent_embeds_the_publish_script_verbatim() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/critic_agent.py");
    let source = std::fs::read_to_string(&script).expect("critic_agent.py");
    let publish = governance_redis::scripts::PUBLISH.source;
    assert!(
        source.contains(&format!("PUBLISH_LUA = r\"\"\"{publish}\"\"\"")),
        "critic_agent.py's PUBLISH_LUA differs from governance_redis::scripts::PUBLISH"
    );
}
