//! Cluster mode without another system of record keeps the ledger in Redis, so it refuses a
//! Redis that reports no persistence unless `GOVERNANCE_ACCEPT_REDIS_LOSS=true`; and
//! `governance ledger verify --redis` fails on a store that was wiped (empty) or restored from
//! an older snapshot (checked against a node's archive), over real redis-server processes.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use governance_core::{
    Event, LedgerStore, PipelineId, PipelineRecord, PipelineRegistry, PipelineStatus,
};
use governance_redis::{RedisBackend, RedisConfig};
use governance_sqlite::SqliteStore;

/// A redis-server on a free port in its own dir, killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<&'static str>,
}

impl Redis {
    fn start(args: &[&'static str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            args: args.to_vec(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bin = std::iter::once(PathBuf::from("/usr/bin/redis-server"))
            .chain(std::env::split_paths(&path).map(|d| d.join("redis-server")))
            .find(|c| c.is_file())
            .expect("redis-server is missing (apt-get install redis-server); never skipped");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..400 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
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

    /// Sends one command without arguments and returns the first reply line.
    fn raw(&self, cmd: &str) -> String {
        use std::io::Write;
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "*1\r\n${}\r\n{cmd}\r\n", cmd.len()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim_end().to_owned()
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

fn cluster_serve(redis: &str, accept: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
    cmd.arg("serve")
        .env("PORT", "0")
        .env("GOVERNANCE_DB", "memory")
        .env("GOVERNANCE_CLUSTER", "true")
        .env("REDIS_URL", redis)
        .env_remove("GOVERNANCE_REMOTE_ROLES")
        .env_remove("GOVERNANCE_LLM_MODE")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("DRAGONFLY_PASSWORD")
        .env_remove("REDIS_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match accept {
        Some(v) => cmd.env("GOVERNANCE_ACCEPT_REDIS_LOSS", v),
        None => cmd.env_remove("GOVERNANCE_ACCEPT_REDIS_LOSS"),
    };
    cmd.spawn().expect("governance serve starts")
}

/// The node started: its start-up line names its address.
fn starts(mut child: Child) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        line.contains("http://"),
        "the node did not start: {line:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cluster_mode_refuses_a_redis_without_persistence_and_says_what_to_do() {
    let redis = Redis::start(&["--save", "", "--appendonly", "no"]);
    let out = cluster_serve(&redis.url(), None)
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for what in [
        "appendonly",
        "GOVERNANCE_ACCEPT_REDIS_LOSS=true",
        "no persistence",
    ] {
        assert!(stderr.contains(what), "expected {what:?} in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = cluster_serve(&redis.url(), Some("perhaps"))
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GOVERNANCE_ACCEPT_REDIS_LOSS"), "{stderr}");
}

#[test]
fn cluster_mode_starts_with_the_opt_in_or_an_append_only_file() {
    let volatile = Redis::start(&["--save", "", "--appendonly", "no"]);
    starts(cluster_serve(&volatile.url(), Some("true")));
    let durable = Redis::start(&["--save", "", "--appendonly", "yes"]);
    starts(cluster_serve(&durable.url(), None));
}

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["ledger", "verify"])
        .args(args)
        .env_remove("GOVERNANCE_DB")
        .env_remove("REDIS_PASSWORD")
        .env_remove("DRAGONFLY_PASSWORD")
        .env_remove("VAULT_ADDR")
        .output()
        .unwrap()
}

fn fails_with(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(what), "expected {what:?} in: {stderr}");
}

fn event(p: &PipelineId, seq: u64) -> Event {
    serde_json::from_value(serde_json::json!({
        "type": "agent_message", "seq": seq, "ts": format!("2026-01-01T00:00:{seq:02}Z"),
        "data": {"pipeline_id": p.as_str(), "from": "ALPHA", "to": "*", "content": format!("m{seq}")},
    }))
    .unwrap()
}

/// Writes entries `from..=to` of pipeline `p` to Redis and to the archive.
async fn write_both(redis: &RedisBackend, archive: &SqliteStore, p: &PipelineId, seqs: (u64, u64)) {
    let events: Vec<Event> = (seqs.0..=seqs.1).map(|s| event(p, s)).collect();
    redis.store().append(&events).await.unwrap();
    archive.append(&events).await.unwrap();
    let mut rec = PipelineRecord::new(p.clone(), "objective", events[0].ts);
    rec.status = PipelineStatus::Completed;
    archive.upsert(&rec).await.unwrap();
    redis.store().upsert(&rec).await.unwrap();
}

fn archive_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_fails_on_a_wiped_or_rolled_back_store() {
    let mut redis = Redis::start(&["--save", "", "--appendonly", "no"]);
    let url = redis.url();
    // empty: fails unless the operator says it is a fresh cluster
    fails_with(&verify(&["--redis", &url]), "holds no pipeline");
    assert!(verify(&["--redis", &url, "--allow-empty"]).status.success());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n1.db");
    let archive = SqliteStore::open(&path).await.unwrap();
    let backend = RedisBackend::connect(RedisConfig::new(url.clone()))
        .await
        .unwrap();
    let (a, b) = (
        PipelineId::new("p-a").unwrap(),
        PipelineId::new("p-b").unwrap(),
    );
    write_both(&backend, &archive, &a, (1, 4)).await;
    let ok = verify(&["--redis", &url, "--archive", archive_arg(&path)]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // rolled back: a snapshot, then more entries, then a restart from that snapshot
    assert_eq!(redis.raw("SAVE"), "+OK");
    write_both(&backend, &archive, &a, (5, 6)).await;
    write_both(&backend, &archive, &b, (1, 2)).await;
    redis.kill();
    redis.spawn();
    let out = verify(&["--redis", &url, "--archive", archive_arg(&path)]);
    fails_with(&out, "wiped or restored from an older snapshot");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 pipelines"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // wiped: a restart without any snapshot
    std::fs::remove_file(redis.dir.path().join("dump.rdb")).unwrap();
    redis.kill();
    redis.spawn();
    fails_with(&verify(&["--redis", &url]), "holds no pipeline");
}
