//! SQLite numbers of issue 4, measured in one run and printed as a table.
//!
//! 1. **Ledger appends/s** through `SqliteStore` with 1,000 pipelines appending concurrently
//!    (one event per `append`, awaited, as the orchestrator does) versus raw rusqlite inserts of
//!    the same rows into the same table with the same pragmas (WAL, `synchronous=FULL`),
//!    1,000 rows per transaction, no hashing (the limit). Rounds alternate store/raw.
//! 2. **Durable pipelines/s end to end**: the real engine (`Governance` + `SqliteStore` +
//!    zero-latency `LocalLlm`), 1,000 pipelines spawned at once and waited to COMPLETED.
//! 3. **Bytes of SQLite per completed pipeline**: the file after the first engine round
//!    (WAL checkpointed and truncated) divided by the pipelines, with the per-table split.
//!
//! `CARGO_TARGET_DIR=target-sqlite cargo bench -p governance-benches --bench sqlite`
//! (`-- --quick` for one round of each).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use governance_core::{
    AgentId, Config, Event, EventKind, Governance, LedgerStore, PipelineId, PipelineStatus,
    SpawnRequest,
};
use governance_sqlite::SqliteStore;

const PIPELINES: usize = 1000;
const EVENTS: u64 = 10;
const CONTENT: &str = "ALPHA proposes a token bucket per tenant with a shared Redis counter, \
                       refilled every 100 ms; burst 2x the steady rate; reject with 429 + Retry-After.";

const RAW_DDL: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    pipeline_id TEXT NOT NULL, seq INTEGER NOT NULL CHECK (seq >= 1), type TEXT NOT NULL,
    agent_id TEXT, ts INTEGER NOT NULL, data TEXT NOT NULL, prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL, PRIMARY KEY (pipeline_id, seq)
) WITHOUT ROWID;";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pid(round: usize, i: usize) -> PipelineId {
    PipelineId::new(format!("r{round}-p{i:04}")).expect("id")
}

fn message(p: &PipelineId, seq: u64) -> Event {
    Event {
        seq,
        ts: Utc::now(),
        kind: EventKind::AgentMessage {
            pipeline_id: p.clone(),
            from: AgentId::new("ALPHA").expect("agent"),
            to: "*".into(),
            content: CONTENT.into(),
        },
    }
}

/// One store round: 1,000 concurrent pipelines × 10 single-event appends. Returns appends/s.
async fn store_round(store: &Arc<SqliteStore>, round: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..PIPELINES)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let p = pid(round, i);
                for seq in 1..=EVENTS {
                    store.append(&[message(&p, seq)]).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    per_second(PIPELINES as u64 * EVENTS, start.elapsed())
}

fn raw_open(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
         PRAGMA foreign_keys=ON;",
    )
    .expect("pragmas");
    conn.execute_batch(RAW_DDL).expect("ddl");
    conn
}

/// One raw round: the same rows as the store stores them (data without the pipeline id,
/// which is a column), 1,000 per transaction. Returns rows/s.
fn raw_round(conn: &mut rusqlite::Connection, round: usize) -> f64 {
    let data = serde_json::json!({"from": "ALPHA", "to": "*", "content": CONTENT}).to_string();
    let ids: Vec<String> = (0..PIPELINES).map(|i| pid(round, i).to_string()).collect();
    let hash = [7_u8; 32];
    let start = Instant::now();
    for seq in 1..=EVENTS {
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash) \
                     VALUES (?1, ?2, 'agent_message', 'ALPHA', ?3, ?4, ?5, ?6)",
                )
                .expect("prepare");
            for p in &ids {
                let ts = Utc::now().timestamp_nanos_opt().expect("ts");
                insert
                    .execute(rusqlite::params![
                        p,
                        i64::try_from(seq).expect("seq"),
                        ts,
                        data,
                        &hash[..],
                        &hash[..]
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    per_second(PIPELINES as u64 * EVENTS, start.elapsed())
}

/// One engine round: 1,000 pipelines in flight to COMPLETED. Returns pipelines/s.
async fn engine_round(gov: &Governance, round: usize) -> f64 {
    let start = Instant::now();
    let ids = futures::future::join_all((0..PIPELINES).map(|i| {
        let gov = gov.clone();
        async move {
            gov.spawn(SpawnRequest::new(format!(
                "Design a rate limiter for a multi-tenant API ({round}/{i})"
            )))
            .await
            .expect("spawn")
        }
    }))
    .await;
    for id in ids {
        let rec = gov.wait(&id).await.expect("wait");
        assert_eq!(rec.status, PipelineStatus::Completed, "{id}");
    }
    per_second(PIPELINES as u64, start.elapsed())
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes of the checkpointed file per pipeline, and the per-table split.
fn bytes_per_pipeline(path: &Path, pipelines: u64) -> (u64, Vec<(String, u64)>) {
    let raw = rusqlite::Connection::open(path).expect("raw");
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let file = std::fs::metadata(path).expect("size").len();
    let mut split = Vec::new();
    if let Ok(mut stmt) =
        raw.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
    {
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("dbstat");
        for row in rows {
            let (name, bytes) = row.expect("dbstat row");
            split.push((name, u64::try_from(bytes).unwrap_or(0) / pipelines));
        }
    }
    (file / pipelines, split)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 3 };
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();

    // 1. ledger appends vs raw inserts
    let store = Arc::new(
        rt.block_on(SqliteStore::open(dir.path().join("ledger.db")))
            .expect("open"),
    );
    let mut raw = raw_open(&dir.path().join("raw.db"));
    rt.block_on(store_round(&store, 0));
    raw_round(&mut raw, 0);
    let (mut store_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        store_rates.push(rt.block_on(store_round(&store, round)));
        raw_rates.push(raw_round(&mut raw, round));
    }
    drop(raw);
    let (s, r) = (median(store_rates), median(raw_rates));

    // 2. + 3. the real engine on a fresh file
    let path = dir.path().join("engine.db");
    let engine_store = Arc::new(rt.block_on(SqliteStore::open(&path)).expect("open"));
    let gov = Governance::builder()
        .config(Config::default())
        .store(engine_store)
        .build()
        .expect("engine");
    let first = rt.block_on(engine_round(&gov, 0));
    let (bytes, split) = bytes_per_pipeline(&path, PIPELINES as u64);
    let mut engine_rates = vec![first];
    for round in 1..rounds {
        engine_rates.push(rt.block_on(engine_round(&gov, round)));
    }
    let e = median(engine_rates.clone());
    let report = governance_sqlite::verify(&path).expect("verify");
    assert!(report.is_intact(), "{report}");
    let events = report.entries / report.pipelines.max(1);

    println!();
    println!("governance-sqlite, {PIPELINES} concurrent pipelines, synchronous=FULL, WAL");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| ledger appends/s, SqliteStore (1 event per append) | {s:.0} |");
    println!("| rows/s, raw rusqlite (1,000 rows per transaction) | {r:.0} |");
    println!("| ratio store / raw | {:.2} |", s / r);
    println!(
        "| durable pipelines/s end to end (engine, median of {}) | {e:.0} |",
        engine_rates.len()
    );
    println!("| ledger events per pipeline | {events} |");
    println!("| bytes of SQLite per completed pipeline | {bytes} |");
    for (name, b) in split {
        println!("|   {name} | {b} B/pipeline |");
    }
    println!("(engine rounds: {engine_rates:.0?}; ledger verified intact)");
}
