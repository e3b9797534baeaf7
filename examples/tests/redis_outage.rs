//! A Redis outage under the HTTP server (issue 15, item 4), with a `redis-server` of our own
//! that stops answering (SIGSTOP, the worst kind of outage: connections stay open, no reply
//! comes): `/readyz` answers at once (503 naming redis), reads the SQLite store can serve keep
//! answering, and in cluster mode (registry in Redis) reads fail fast with 503.

mod outage_support;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use governance_core::{Governance, LocalLlm, LocalLlmConfig, PipelineId, PipelineStatus};
use governance_redis::{RedisBackend, RedisConfig};
use governance_sqlite::SqliteStore;
use outage_support::{Server, wait_ready, wait_until};

fn redis_server_binary() -> PathBuf {
    let candidates = std::iter::once(PathBuf::from("/usr/bin/redis-server")).chain(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join("redis-server")),
    );
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "redis-server is missing (looked in /usr/bin and PATH): install it \
         (apt-get install redis-server) — the outage tests need a real server and never skip"
    );
}

/// One `redis-server`: free port, temp dir, no persistence, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let bin = redis_server_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("redis.log");
        let mut child = Command::new(&bin)
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
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        for _ in 0..400 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {port} never accepted a connection");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP / SIGCONT: the server hangs (connections stay open, no reply ever comes), the
    /// worst kind of outage for a client.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn readyz_names_redis(server: &Server) {
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("redis"),
        "the reason does not name redis: {body}"
    );
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_readiness_at_once_and_sqlite_reads_still_answer() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = RedisBackend::connect(RedisConfig::new(redis.url()))
        .await
        .unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("g.db")).await.unwrap());
    // `slow` paces the LLM so a pipeline is still running when Redis stops
    let slow = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(1000);
        conf
    });
    let gov = Governance::builder()
        .blackboard(backend.blackboard())
        .bus(backend.bus())
        .store(store)
        .llm("slow", Arc::new(slow))
        .build()
        .unwrap();
    let backends = vec![
        ("blackboard".to_owned(), format!("redis:{}", redis.url())),
        ("bus".to_owned(), format!("redis:{}", redis.url())),
    ];
    let server = Server::start(gov.clone(), backends).await;
    let (code, body) = server.spawn().await;
    assert_eq!(code, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    let done = gov
        .wait(&PipelineId::new(id.clone()).unwrap())
        .await
        .unwrap();
    assert_eq!(done.status, PipelineStatus::Completed);
    wait_ready(&server).await;

    redis.signal("STOP");
    // the health check answers (503, naming redis) instead of riding the outage out
    readyz_names_redis(&server).await;
    // reads the SQLite store can serve do not wait for Redis
    let (code, body) = server.get("/api/pipelines").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["pipelines"][0]["pipeline_id"], id.as_str(), "{body}");
    let (code, body) = server.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "COMPLETED", "{body}");
    let (code, body) = server
        .get(&format!("/api/pipeline/logs?pipeline_id={id}"))
        .await;
    assert_eq!(code, 200, "{body}");

    // a running pipeline: its next status change (REPORT, after the report's LLM call) waits
    // for the Redis blackboard; reading it meanwhile answers from what is committed
    redis.signal("CONT");
    let (code, body) = server.spawn_in("slow").await;
    assert_eq!(code, 201, "{body}");
    let running = body["pipeline_id"].as_str().unwrap().to_owned();
    // RUNNING is committed (its checkpoint read the blackboard); the report's LLM call is on
    wait_until(Duration::from_secs(30), "the pipeline runs", || async {
        let (code, body) = server.get(&format!("/api/pipeline/{running}")).await;
        if code == 200 && body["status"] == "RUNNING" {
            Ok(())
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await;
    redis.signal("STOP");
    let mut after_report_call = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while after_report_call < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the report's LLM call never reached the ledger"
        );
        let (code, body) = server.get(&format!("/api/pipeline/{running}")).await;
        assert_eq!(code, 200, "{body}");
        assert!(
            ["RUNNING", "REPORT", "ORCHESTRATING"].contains(&body["status"].as_str().unwrap_or("")),
            "{body}"
        );
        let (code, logs) = server
            .get(&format!("/api/pipeline/logs?pipeline_id={running}"))
            .await;
        assert_eq!(code, 200, "{logs}");
        let reported = logs.to_string().contains("llm_call");
        if reported {
            after_report_call += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    redis.signal("CONT");
    wait_ready(&server).await;
    let done = gov.wait(&PipelineId::new(running).unwrap()).await.unwrap();
    assert_eq!(done.status, PipelineStatus::Completed, "{:?}", done.failure);

    // a server that is gone for good (connection refused) is reported as fast
    redis.signal("KILL");
    readyz_names_redis(&server).await;
    let (code, body) = server.get("/api/pipelines").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["total"], 2, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_reads_fail_fast_with_503_during_a_redis_outage() {
    let redis = Redis::start();
    let backend = RedisBackend::connect(RedisConfig::new(redis.url()))
        .await
        .unwrap();
    let (leases, store) = backend.cluster("node-a", Duration::from_secs(5)).unwrap();
    let store = Arc::new(store);
    let gov = Governance::builder()
        .blackboard(backend.blackboard())
        .bus(backend.bus())
        .store(store)
        .ownership(Arc::new(leases))
        .build()
        .unwrap();
    let server = Server::start(gov, Vec::new()).await;
    let (code, body) = server.get("/api/pipelines").await;
    assert_eq!(code, 200, "{body}");
    wait_ready(&server).await;

    redis.signal("STOP");
    // the registry lives in Redis: the read cannot be served, so it says so at once
    let (code, body) = server.get("/api/pipelines").await;
    assert_eq!(code, 503, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("did not answer"), "{body}");
    readyz_names_redis(&server).await;

    redis.signal("CONT");
    wait_ready(&server).await;
    let (code, body) = server.get("/api/pipelines").await;
    assert_eq!(code, 200, "{body}");
}
