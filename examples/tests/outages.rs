//! Failures at the edges end fast and lose nothing (issue 15, items 3 and 4), with real parts: a
//! SQLite file that fills up (its size cap, `PRAGMA max_page_count`, yields the same
//! `SQLITE_FULL` as a full disk) under pipelines that are running, and a `redis-server` of our
//! own that stops answering (SIGSTOP) while the HTTP server is asked for readiness and reads.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use governance_core::{
    Governance, LedgerStore, LocalLlm, LocalLlmConfig, PipelineId, PipelineRegistry, PipelineStatus,
};
use governance_http::{AppState, HttpSettings};
use governance_redis::{RedisBackend, RedisConfig};
use governance_sqlite::{SqliteOptions, SqliteStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The size cap of the test database: small, so a filler reaches it at once.
const CAP_BYTES: u64 = 2 * 1024 * 1024;
const PAGE: u64 = 4096;

// --- an HTTP server on a real socket -----------------------------------------------------------

struct Server {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    async fn start(gov: Governance, backends: Vec<(String, String)>) -> Self {
        let settings = HttpSettings {
            backends,
            ..HttpSettings::default()
        };
        let state = AppState::new(gov, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(governance_http::serve(
            listener,
            state,
            async move { s.cancelled().await },
            Duration::from_secs(1),
        ));
        Self {
            base: format!("http://{addr}"),
            // bounded so a hang fails the test instead of stalling it; never hit when the
            // server answers as it must (fast)
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            stop,
        }
    }

    /// GET `path`: status and JSON body. Panics when no answer comes within the client's
    /// timeout (a hang).
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} did not answer within 5 s: {e}"));
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    async fn spawn(&self) -> (u16, Value) {
        self.spawn_in("local").await
    }

    async fn spawn_in(&self, mode: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/api/spawn", self.base))
            .json(&serde_json::json!({"objective": "Design a caching strategy", "auto_continue": true, "mode": mode}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/spawn did not answer within 5 s: {e}"));
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }
}

/// Polls `cond` until it holds; fails only when it never does within `limit` (a hang).
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match cond().await {
            Ok(()) => return,
            Err(why) => why,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not so after {limit:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- item 3: a full disk -----------------------------------------------------------------------

/// Another connection on the same file takes every page the size cap leaves, as another
/// program filling the disk would; `DELETE FROM filler` frees them again.
fn fill(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.pragma_update(
        None,
        "max_page_count",
        i64::try_from(CAP_BYTES / PAGE).unwrap(),
    )
    .unwrap();
    conn.execute_batch("CREATE TABLE filler (b BLOB)").unwrap();
    for chunk in [65_536, 4096, 512, 64] {
        loop {
            match conn.execute("INSERT INTO filler VALUES (zeroblob(?1))", [chunk]) {
                Ok(_) => {}
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => break,
                Err(e) => panic!("filling the database: {e}"),
            }
        }
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_running_pipelines_until_space_returns_then_they_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let store = Arc::new(
        SqliteStore::open_with(
            &db,
            SqliteOptions {
                max_size_bytes: Some(CAP_BYTES),
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    // paced, so the pipelines are still running when the disk fills
    let llm = LocalLlm::new(LocalLlmConfig {
        latency: Duration::from_millis(100),
        ..LocalLlmConfig::default()
    });
    let gov = Governance::builder()
        .stores(store.clone())
        .llm("local", Arc::new(llm))
        .build()
        .unwrap();
    let server = Server::start(gov.clone(), Vec::new()).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (code, body) = server.spawn().await;
        assert_eq!(code, 201, "{body}");
        ids.push(PipelineId::new(body["pipeline_id"].as_str().unwrap()).unwrap());
    }
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 200, "{body}");

    let filler = fill(&db);
    assert!(
        gov.live_count() > 0,
        "every pipeline ended before the disk filled: pace the LLM more"
    );

    // the ledger cannot write: readiness says so (503 with the reason) ...
    wait_until(
        Duration::from_secs(60),
        "/readyz reports the ledger",
        || async {
            let (code, body) = server.get("/readyz").await;
            let msg = body["error"]["message"].as_str().unwrap_or_default();
            if code == 503 && msg.contains("ledger") && msg.contains("full") {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    // ... and every pipeline still running waits for the disk instead of dying
    wait_until(
        Duration::from_secs(60),
        "every running pipeline waits to write",
        || async {
            let (live, waiting) = (gov.live_count(), gov.pipelines_waiting_to_write());
            if live > 0 && waiting == live {
                Ok(())
            } else {
                Err(format!("{waiting} of {live} running pipelines wait"))
            }
        },
    )
    .await;
    let held = gov.live_count();
    // a new spawn is refused at once (or fits in what is left), never hangs or fails with 500
    let (code, body) = server.spawn().await;
    assert!(code == 503 || code == 201, "{code} {body}");
    eprintln!("{held} running pipelines waited for the disk; a spawn meanwhile got {code}");
    if code == 201 {
        ids.push(PipelineId::new(body["pipeline_id"].as_str().unwrap()).unwrap());
    } else {
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("full"),
            "{body}"
        );
    }

    // space returns: the pipelines go on by themselves and finish
    filler.execute("DELETE FROM filler", []).unwrap();
    drop(filler);
    wait_until(
        Duration::from_secs(120),
        "every pipeline finished",
        || async {
            for id in &ids {
                let rec = store.get(id).await.map_err(|e| e.to_string())?;
                match rec {
                    Some(r) if r.status.is_terminal() => {}
                    other => return Err(format!("{id}: {:?}", other.map(|r| r.status))),
                }
            }
            Ok(())
        },
    )
    .await;
    for id in &ids {
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            rec.status,
            PipelineStatus::Completed,
            "{id} ended {} ({:?}) though only the disk was full for a while",
            rec.status,
            rec.failure
        );
        let events = store.read(id, 0, 100_000).await.unwrap();
        let last_status = events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                governance_core::EventKind::StatusChanged { status, .. } => Some(*status),
                _ => None,
            })
            .expect("status events");
        assert_eq!(
            last_status, rec.status,
            "{id}: registry and ledger disagree"
        );
        assert_eq!(
            events.last().map(|e| e.seq),
            Some(rec.last_seq),
            "{id}: the registry's record is not the ledger's last state"
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "{id}: gap in the ledger");
        }
    }
    let report = governance_sqlite::verify(&db).unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    assert!(held > 0);
    wait_until(
        Duration::from_secs(30),
        "/readyz is ready again",
        || async {
            let (code, body) = server.get("/readyz").await;
            if code == 200 {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
}

// --- item 4: a Redis outage --------------------------------------------------------------------

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
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(server: &Server) {
    wait_until(Duration::from_secs(30), "/readyz is ready", || async {
        let (code, body) = server.get("/readyz").await;
        if code == 200 {
            Ok(())
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await;
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
    let slow = LocalLlm::new(LocalLlmConfig {
        latency: Duration::from_millis(300),
        ..LocalLlmConfig::default()
    });
    let gov = Governance::builder()
        .blackboard(backend.blackboard())
        .bus(backend.bus())
        .stores(store)
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
        .wait(&PipelineId::new(id.clone()).unwrap(), false)
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
            body["status"] == "SPAWNED" || body["status"] == "RUNNING",
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
    let done = gov
        .wait(&PipelineId::new(running).unwrap(), false)
        .await
        .unwrap();
    assert_eq!(done.status, PipelineStatus::Completed, "{:?}", done.failure);
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
        .ledger(store.clone())
        .checkpoints(store.clone())
        .registry(store)
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
