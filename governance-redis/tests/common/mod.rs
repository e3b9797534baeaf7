//! A `redis-server` of our own per test: free TCP port, temp dir, no persistence unless asked,
//! killed on drop. Fails loudly when the binary is missing.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helper"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use governance_redis::{RedisBackend, RedisConfig};

/// Where the server binary is expected (`.ci/run` installs it).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// One running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts a server with no extra arguments.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra arguments (e.g. `["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: install redis-server (apt-get install redis-server) — \
             the governance-redis tests need a real server and never skip"
        );
        let mut s = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir for redis-server"),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REDIS_SERVER}: {e}"));
        self.child = Some(child);
        for _ in 0..400 {
            if self.ping() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "redis-server exited with {status} on port {}:\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "redis-server on port {} never answered PING:\n{log}",
            self.port
        );
    }

    /// Sends one raw command and returns the first reply line.
    pub fn raw(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
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

    fn ping(&self) -> bool {
        matches!(self.raw(&["PING"]), Ok(l) if l.starts_with("+PONG") || l.starts_with("-NOAUTH"))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it; data is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server after writing a snapshot into its dir, so [`Self::start_again`]
    /// comes back with the same data (a restart that loses nothing acknowledged).
    pub fn stop_saving(&mut self) {
        let _ = self.raw(&["SHUTDOWN", "SAVE"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and dir.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A backend connected to `server` with default settings.
pub async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()))
        .await
        .expect("connect to the test redis-server")
}
