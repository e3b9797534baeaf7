//! Record a pipeline into a SQLite file, replay it offline: in-process and with
//! `governance replay`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governance_core::{
    Config, ExchangeStore, Governance, LlmExchange, LocalLlm, LocalLlmConfig, PipelineId,
    PipelineRecord, PipelineStatus, Purpose, RecordingLlm, ReplayLlm, Result, SpawnRequest,
};
use governance_sqlite::SqliteStore;

const OBJECTIVE: &str = "Design a caching strategy for the catalogue service";

/// Keeps everything but the exchanges `drop` matches (to lose some on purpose).
#[derive(Debug)]
struct Lossy {
    inner: Arc<SqliteStore>,
    drop: fn(&LlmExchange) -> bool,
}

#[async_trait]
impl ExchangeStore for Lossy {
    async fn record(&self, x: &LlmExchange) -> Result<()> {
        if (self.drop)(x) {
            return Ok(());
        }
        self.inner.record(x).await
    }
    async fn exchanges(&self, p: &PipelineId) -> Result<Vec<LlmExchange>> {
        ExchangeStore::exchanges(self.inner.as_ref(), p).await
    }
}

fn config() -> Config {
    let mut conf = Config::default();
    conf.agent_poll_interval = Duration::from_millis(50);
    conf
}

/// Runs one pipeline on a recording LocalLlm (BETA rejects the first proposal) into `db`.
async fn record(db: &Path, drop: fn(&LlmExchange) -> bool) -> (PipelineRecord, LocalLlm) {
    let store = Arc::new(SqliteStore::open(db).await.unwrap());
    let local = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.disagree_first = 1;
        conf
    });
    let exchanges = Arc::new(Lossy {
        inner: store.clone(),
        drop,
    });
    let gov = Governance::builder()
        .config(config())
        .store(store)
        .llm(
            "local",
            Arc::new(RecordingLlm::new(Arc::new(local.clone()), exchanges)),
        )
        .build()
        .unwrap();
    let id = gov.spawn(SpawnRequest::new(OBJECTIVE)).await.unwrap();
    gov.wait(&id).await.unwrap();
    gov.shutdown(Duration::from_secs(10)).await;
    (gov.get(&id).await.unwrap(), local)
}

async fn consensus_title(gov: &Governance, id: &PipelineId) -> Option<String> {
    let snap = gov.blackboard_snapshot(id).await.unwrap();
    let cons = snap.consensus?;
    snap.proposals
        .into_iter()
        .find(|p| p.id == cons.proposal_id)
        .map(|p| p.title)
}

fn keep_all(_: &LlmExchange) -> bool {
    false
}

fn betas_evaluations(x: &LlmExchange) -> bool {
    x.agent_id.as_str() == "BETA" && x.purpose == Purpose::Evaluate
}

fn governance(db: &Path, pipeline: &PipelineId, json: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
    cmd.arg("replay")
        .arg("--db")
        .arg(db)
        .arg("--pipeline")
        .arg(pipeline.as_str());
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recorded_to_sqlite_replays_in_process_to_the_same_consensus() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let (rec, local) = record(&db, keep_all).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");
    let calls = local.calls();

    let store = SqliteStore::open(&db).await.unwrap();
    let recorded = ExchangeStore::exchanges(&store, &rec.id).await.unwrap();
    assert_eq!(recorded.len() as u64, calls);
    let recorded_title = governance_core::CheckpointStore::latest(&store, &rec.id)
        .await
        .unwrap()
        .and_then(|cp| {
            let c = cp.blackboard.consensus?;
            cp.blackboard
                .proposals
                .into_iter()
                .find(|p| p.id == c.proposal_id)
        })
        .map(|p| p.title);
    assert!(recorded_title.is_some());

    let replay = Arc::new(ReplayLlm::from_store(&store, &rec.id).await.unwrap());
    let gov = Governance::builder()
        .config(config())
        .llm("local", replay.clone())
        .build()
        .unwrap();
    let id = gov.spawn(SpawnRequest::new(OBJECTIVE)).await.unwrap();
    let again = gov.wait(&id).await.unwrap();
    assert_eq!(again.status, rec.status);
    assert_eq!(consensus_title(&gov, &id).await, recorded_title);
    assert_eq!(local.calls(), calls, "the replay reached the real client");
    let stats = replay.stats();
    assert_eq!(stats.served, calls);
    assert!(
        stats.missing.is_empty() && stats.diverged.is_empty(),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_replay_reproduces_the_recorded_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let (rec, _) = record(&db, keep_all).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");

    let out = governance(&db, &rec.id, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["recorded_status"], "COMPLETED");
    assert_eq!(doc["replayed_status"], "COMPLETED");
    assert!(doc["recorded_consensus"].is_string());
    assert_eq!(doc["recorded_consensus"], doc["replayed_consensus"]);
    assert_eq!(doc["replay"]["missing"], serde_json::json!([]));
    assert_eq!(doc["replay"]["served"], doc["recorded_exchanges"]);
    let events = doc["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "consensus_reached"));

    let text = governance(&db, &rec.id, false);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{stdout}");
    assert!(stdout.contains("replayed: COMPLETED"), "{stdout}");
    assert!(stdout.contains("consensus_reached"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_replay_fails_clearly_when_an_exchange_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let (rec, _) = record(&db, betas_evaluations).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");

    let out = governance(&db, &rec.id, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("no recorded exchange for (agent BETA, purpose evaluate, attempt 0)"),
        "{stdout}"
    );
    assert!(stdout.contains("DIFFERENT status"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_replay_names_what_it_cannot_find() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let (rec, _) = record(&db, |_| true).await;
    let out = governance(&db, &rec.id, false);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no LLM exchanges were recorded"),
        "{stderr}"
    );

    let out = governance(&db, &PipelineId::new("nope").unwrap(), false);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipeline nope is not in"), "{stderr}");
}
