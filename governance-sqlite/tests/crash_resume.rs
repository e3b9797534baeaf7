//! Crash and resume: a child process runs pipelines on a SQLite file and is killed with
//! SIGKILL mid-orchestration; this process opens the same file, resumes every pipeline that
//! was not terminal and checks that each completes with a gap-free, verifiable ledger, one
//! consensus per pipeline and every entry the child had committed still in place.
//!
//! The child is this test binary re-executed with `--exact crash_child --ignored`; the env
//! variable [`CHILD_DB`] tells it which file to use (without it, `crash_child` does nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governance_core::{
    Config, EventKind, Governance, LedgerStore, LocalLlm, LocalLlmConfig, PipelineFilter,
    PipelineId, PipelineRegistry, PipelineStatus, SpawnRequest,
};
use governance_sqlite::{SqliteStore, verify};

/// The database file of the child run (set only for the child).
const CHILD_DB: &str = "GOVERNANCE_SQLITE_CRASH_CHILD_DB";
/// The child's LLM latency in milliseconds.
const CHILD_LATENCY: &str = "GOVERNANCE_SQLITE_CRASH_CHILD_LATENCY_MS";
/// Pipelines the child spawns.
const PIPELINES: usize = 6;
/// Generous: the machine may be loaded (no timing is asserted, these only bound a hang).
const DEADLINE: Duration = Duration::from_secs(120);

/// The child half: runs pipelines on the file named by [`CHILD_DB`] until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of kill_9_mid_orchestration_then_resume_completes_every_pipeline"]
async fn crash_child() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return; // run by hand without the parent: nothing to do
    };
    let latency: u64 = std::env::var(CHILD_LATENCY)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let store = Arc::new(SqliteStore::open(&path).await.expect("child: open"));
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(latency);
        conf
    });
    let gov = Governance::builder()
        .config(Config::default())
        .store(store)
        .llm("local", Arc::new(llm))
        .build()
        .expect("child: engine");
    for i in 0..PIPELINES {
        gov.spawn(SpawnRequest {
            objective: format!("Design a rate limiter for tenant group {i}"),
            auto_continue: Some(true),
            ..SpawnRequest::default()
        })
        .await
        .expect("child: spawn");
    }
    // The parent kills this process long before; the sleep only bounds an orphaned child.
    tokio::time::sleep(DEADLINE).await;
}

/// Kills the child on drop (a failing parent leaves no process behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_child(path: &Path, latency_ms: u64) -> Killed {
    let exe = std::env::current_exe().expect("current test binary");
    let child = Command::new(exe)
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env(CHILD_DB, path)
        .env(CHILD_LATENCY, latency_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child process");
    Killed(child)
}

/// Pipelines that are ORCHESTRATING in the registry with a `proposal_created` in the ledger
/// (0 while the file or its tables do not exist yet).
fn orchestrating_with_proposal(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM pipelines p WHERE p.status = 'ORCHESTRATING' AND EXISTS \
         (SELECT 1 FROM ledger l WHERE l.pipeline_id = p.id AND l.type = 'proposal_created')",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn read_only(path: &Path) -> Option<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
}

/// Every ledger entry as `(pipeline, seq) -> hash`.
fn ledger_hashes(path: &Path) -> BTreeMap<(String, i64), Vec<u8>> {
    let conn = read_only(path).expect("open the file read-only");
    let mut stmt = conn
        .prepare("SELECT pipeline_id, seq, hash FROM ledger")
        .expect("prepare");
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// Runs the child until some pipeline is mid-orchestration, then SIGKILLs it. Returns `true`
/// when the kill landed mid-orchestration (some pipeline is still ORCHESTRATING on disk).
fn run_child_and_kill(path: &Path, latency_ms: u64) -> bool {
    let mut child = start_child(path, latency_ms);
    let started = Instant::now();
    let mut conn = None;
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "no pipeline reached ORCHESTRATING with a proposal within {DEADLINE:?}"
        );
        if let Some(status) = child.0.try_wait().expect("poll the child") {
            panic!("the child exited on its own ({status}) before it was killed");
        }
        if conn.is_none() && path.exists() {
            conn = read_only(path);
        }
        if conn
            .as_ref()
            .is_some_and(|c| orchestrating_with_proposal(c) > 0)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed: {status}");
    drop(conn);
    let conn = read_only(path).expect("reopen after the kill");
    orchestrating_with_proposal(&conn) > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_orchestration_then_resume_completes_every_pipeline() {
    // If the child outran the poll (every pipeline finished before the kill), run it again on
    // a fresh file with a slower LLM; the assertions below always run on a mid-run crash.
    let mut attempt = None;
    for latency_ms in [50, 200, 800] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crash.sqlite");
        let p = path.clone();
        let mid_run = tokio::task::spawn_blocking(move || run_child_and_kill(&p, latency_ms))
            .await
            .expect("child task");
        if mid_run {
            attempt = Some((dir, path));
            break;
        }
    }
    let (_dir, path) = attempt.expect("the kill landed mid-orchestration in some attempt");
    let before = ledger_hashes(&path);

    // A fresh process: a new store on the same file and a new engine (empty in-memory
    // blackboard); the zero-latency local LLM.
    let store = Arc::new(SqliteStore::open(&path).await.expect("reopen the store"));
    let records = store
        .list(&PipelineFilter::default())
        .await
        .expect("list pipelines");
    assert_eq!(records.len(), PIPELINES, "every spawn was committed");
    let unfinished: BTreeSet<PipelineId> = records
        .iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| r.id.clone())
        .collect();
    assert!(!unfinished.is_empty());
    let gov = Governance::builder()
        .config(Config::default())
        .store(store.clone())
        .build()
        .expect("engine");
    let resumed: BTreeSet<PipelineId> = gov
        .resume_incomplete()
        .await
        .expect("resume")
        .into_iter()
        .collect();
    assert_eq!(
        resumed, unfinished,
        "exactly the unfinished pipelines resume"
    );

    for rec in &records {
        let done = tokio::time::timeout(DEADLINE, gov.wait(&rec.id))
            .await
            .unwrap_or_else(|_| panic!("{} did not finish within {DEADLINE:?}", rec.id))
            .expect("wait");
        assert_eq!(
            done.status,
            PipelineStatus::Completed,
            "{}: {:?}",
            rec.id,
            done.failure
        );
        let events = store.read(&rec.id, 0, 100_000).await.expect("read ledger");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let expected: Vec<u64> = (1..=events.len() as u64).collect();
        assert_eq!(seqs, expected, "{}: the ledger is gap-free", rec.id);
        let consensus = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ConsensusReached { .. }))
            .count();
        assert_eq!(consensus, 1, "{}: exactly one consensus", rec.id);
        let terminal = events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::StatusChanged {
                        status: PipelineStatus::Completed,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(terminal, 1, "{}: completed once", rec.id);
    }
    gov.shutdown(Duration::from_secs(5)).await;

    // Every acknowledged write is committed: the file verifies while the store is open.
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{report}");
    let after = ledger_hashes(&path);
    assert!(after.len() > before.len(), "the resumed runs appended");
    for (key, hash) in &before {
        assert_eq!(
            after.get(key),
            Some(hash),
            "entry {key:?} committed before the crash is kept unchanged"
        );
    }
}
