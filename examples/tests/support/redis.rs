//! A redis-server of the test's own.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The redis-server binary (`/usr/bin/redis-server` or on the `PATH`); a missing one fails the
/// test, never skips it.
pub fn redis_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin/redis-server"))
        .chain(std::env::split_paths(&path).map(|d| d.join("redis-server")))
        .find(|c| c.is_file())
        .expect("redis-server is missing: install it (apt-get install redis-server); never skipped")
}

/// One redis-server: free port, temp dir, no persistence, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    appendonly: bool,
}

impl Redis {
    /// Starts one on a free port, without persistence.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts one on a free port with `appendonly yes` (cluster mode refuses a Redis without
    /// persistence unless told to accept the loss).
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(appendonly: bool) -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            appendonly,
        };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server (without `start_persistent` it kept nothing on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a server on the same port (empty unless persistent); waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        self.kill();
        let log = self.dir.path().join("redis.log");
        let mut child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly"])
            .arg(if self.appendonly { "yes" } else { "no" })
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(25));
        }
        self.child = Some(child);
    }

    /// SIGKILLs the server, waits `outage`, and starts an empty one on the same port.
    pub fn restart_empty(&mut self, outage: Duration) {
        self.kill();
        std::thread::sleep(outage);
        self.start_again();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
