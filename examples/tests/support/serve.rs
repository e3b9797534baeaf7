//! `governance serve` nodes and the `governance` CLI.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        Self::start_with(name, dir, |cmd| {
            cmd.env("GOVERNANCE_LOCAL_LATENCY_MS", latency_ms.to_string());
            for (k, v) in env {
                cmd.env(k, v);
            }
        })
    }

    /// Starts `governance serve` on an ephemeral port with the local LLM, the database in
    /// memory and no token, Redis or PostgreSQL, then lets `configure` change the command
    /// (environment, working directory); its stderr goes to `<dir>/<name>.log`.
    pub fn start_with(name: &str, dir: &Path, configure: impl FnOnce(&mut Command)) -> Self {
        let log = File::create(dir.join(format!("{name}.log"))).expect("node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
        cmd.arg("serve")
            .env("PORT", "0")
            .env("GOVERNANCE_NODE_ID", name)
            .env("GOVERNANCE_DB", "memory")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("GOVERNANCE_LLM_MODE")
            .env_remove("OPENROUTER_API_KEY")
            .env_remove("VAULT_ADDR")
            .env_remove("GOVERNANCE_API_TOKEN")
            .env_remove("GOVERNANCE_REMOTE_ROLES")
            .env_remove("REDIS_URL")
            .env_remove("DATABASE_URL")
            .env_remove("DRAGONFLY_PASSWORD")
            .env_remove("REDIS_PASSWORD")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        configure(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("governance serve starts");
        // the start-up line carries the address; log lines (if the logger writes to stdout)
        // may come before it. Everything is copied into `<name>.out`, read to the end so the
        // node never writes into a closed pipe.
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut out = File::create(dir.join(format!("{name}.out"))).expect("node stdout file");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(out, "{line}");
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

impl Node {
    /// SIGTERM (graceful: finish, archive, release leases) and wait for a successful exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(status.success(), "kill -TERM {} failed", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                assert!(exit.success(), "node {} exited with {exit}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not stop within 30 s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
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

/// `governance <args>` with extra `env`: success and stdout + stderr.
pub fn governance(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
    for var in [
        "GOVERNANCE_DB",
        "DATABASE_URL",
        "DRAGONFLY_PASSWORD",
        "REDIS_PASSWORD",
        "VAULT_ADDR",
    ] {
        cmd.env_remove(var);
    }
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
