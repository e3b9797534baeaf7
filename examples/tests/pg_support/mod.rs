//! What the PostgreSQL end-to-end tests share: a schema of their own on the machine's server
//! (dropped at the end), a private PostgreSQL server they may restart (initdb + pg_ctl in a
//! temp dir, on a free port), a redis-server, `governance serve` nodes, HTTP helpers.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TERMINAL: [&str; 6] = [
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "ORCHESTRATION_FAILED",
    "ORCHESTRATION_ERROR",
    "STOPPED",
];

pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Runs `sql` with psql against `url`; panics with psql's output when it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql runs (install postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A schema of one test on the machine's server (`GOVERNANCE_TEST_DATABASE_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`); dropped on drop.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new() -> Self {
        let url = std::env::var("GOVERNANCE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("gov_e2e_{}_{nanos:x}", std::process::id());
        Self { url, name }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.url,
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

/// A private PostgreSQL server (initdb in a temp dir, a free port, trust auth); stopped on
/// drop. Tests restart this one, never the machine's shared server.
pub struct PrivatePg {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePg {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("/usr/lib/postgresql exists (install postgresql)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null());
        as_postgres_user(&mut initdb, dir.path());
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        pg.ctl(&["start", "-w", "-t", "60"]);
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl <args>` on this server; panics when it fails.
    pub fn ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(args)
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("pg.log"))
            .stdout(Stdio::null());
        as_postgres_user(&mut cmd, self.dir.path());
        let out = cmd.output().expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(["stop", "-m", "immediate", "-D"]).arg(&data);
        as_postgres_user(&mut cmd, self.dir.path());
        let _ = cmd.output();
    }
}

/// PostgreSQL refuses to run as root: when the test runs as root, run the command as the
/// `postgres` user (the directory handed over to it).
fn as_postgres_user(cmd: &mut Command, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        if is_root() {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("postgres user")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            let _ = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(dir)
                .status();
            cmd.uid(uid).gid(gid);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// One redis-server: free port, temp dir, no persistence, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(25));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server, waits `outage`, and starts an empty one on the same port (it kept
    /// nothing on disk: `--save "" --appendonly no`).
    pub fn restart_empty(&mut self, outage: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(outage);
        // the old one is gone: dropping it only removes its (empty) directory
        *self = Self::start_on(self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `governance serve` process; killed on drop.
pub struct Node {
    pub name: String,
    pub child: Child,
    pub addr: String,
}

impl Node {
    /// Starts `governance serve` with `env` (plus a local LLM at `latency_ms` and an
    /// ephemeral port); its stderr goes to `<dir>/<name>.log`.
    pub fn start(name: &str, dir: &Path, env: &[(&str, String)], latency_ms: u64) -> Self {
        let log = File::create(dir.join(format!("{name}.log"))).expect("node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
        cmd.arg("serve")
            .env("PORT", "0")
            .env("GOVERNANCE_NODE_ID", name)
            .env("GOVERNANCE_DB", "memory")
            .env("GOVERNANCE_LOCAL_LATENCY_MS", latency_ms.to_string())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("GOVERNANCE_LLM_MODE")
            .env_remove("OPENROUTER_API_KEY")
            .env_remove("VAULT_ADDR")
            .env_remove("GOVERNANCE_API_TOKEN")
            .env_remove("GOVERNANCE_REMOTE_ROLES")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("governance serve starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if line.contains("http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "node {name} printed no start-up line:\n{}",
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
                )
            });
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("address in the start-up line")
            .to_owned();
        Self {
            name: name.to_owned(),
            child,
            addr,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints the tail of these logs when the test fails.
pub struct LogsOnPanic(pub Vec<PathBuf>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("----- {} -----\n{}", path.display(), tail.join("\n"));
        }
    }
}

/// One HTTP request: status and JSON body.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path} on {addr}: no status in {raw:?}"));
    let payload = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

pub fn get(addr: &str, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, None);
    assert_eq!(code, 200, "GET {path} on {addr}: {body}");
    body
}

pub fn spawn_pipeline(addr: &str, objective: &str) -> String {
    let body = serde_json::json!({"objective": objective, "auto_continue": true}).to_string();
    let (code, resp) = http(addr, "POST", "/api/spawn", Some(&body));
    assert_eq!(code, 201, "spawn on {addr}: {resp}");
    resp["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_owned()
}

/// Every pipeline's status as `addr` sees it, or `None` when the request failed (a 503
/// during an outage).
pub fn statuses(addr: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let (code, list) = http(addr, "GET", "/api/pipelines?limit=1000", None);
    if code != 200 {
        return None;
    }
    Some(
        list["pipelines"]
            .as_array()?
            .iter()
            .map(|p| {
                (
                    p["pipeline_id"].as_str().unwrap_or("?").to_owned(),
                    p["status"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect(),
    )
}

/// The whole ledger of `id` read from `addr`, page by page.
pub fn all_logs(addr: &str, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = get(
            addr,
            &format!("/api/pipeline/logs?pipeline_id={id}&after={after}&limit=200"),
        );
        out.extend(page["events"].as_array().expect("events").iter().cloned());
        if !page["has_more"].as_bool().expect("has_more") {
            return out;
        }
        after = page["next_after"].as_u64().expect("next_after");
    }
}

/// Waits until every pipeline of `ids` is terminal as `addrs` (in turn) see it.
pub fn wait_terminal(
    addrs: &[&str],
    ids: &std::collections::BTreeSet<String>,
    deadline: Instant,
) -> std::collections::BTreeMap<String, String> {
    let mut round = 0usize;
    loop {
        let addr = addrs[round % addrs.len()];
        round += 1;
        if let Some(seen) = statuses(addr) {
            let open: Vec<_> = ids
                .iter()
                .filter(|id| seen.get(*id).is_none_or(|s| !is_terminal(s)))
                .collect();
            if open.is_empty() {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{} pipelines not terminal in time: {:?}",
                open.len(),
                open.iter().take(10).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `governance <args>` with extra `env`: success and stdout + stderr.
pub fn governance(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
    cmd.env_remove("GOVERNANCE_DB").env_remove("DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("governance runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
