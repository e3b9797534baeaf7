//! SQLite store throughput.
//!
//! - `sqlite_ledger/store`: ledger appends per second through `SqliteStore` with 1,000
//!   pipelines appending concurrently (one event per `append`, awaited, as the orchestrator
//!   does), versus `sqlite_ledger/raw`: raw rusqlite inserts of the same rows (same table, same
//!   pragmas: WAL, `synchronous=FULL`) batched 1,000 rows per transaction, in the same run.
//!   The raw side computes no hash (its hash columns hold constant bytes): it is the limit.
//! - `sqlite_pipeline/store`: store-level pipelines per second with 1,000 in flight — each
//!   pipeline writes what a run writes (5 status changes with registry upserts and checkpoints,
//!   the last one final, ~28 ledger events) — plus, printed once, the bytes of SQLite per
//!   completed pipeline.
//!
//! `cargo bench -p governance-benches --bench sqlite`

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, Throughput};
use governance_core::{
    AgentId, AgentRecord, AgentState, BlackboardSnapshot, Checkpoint, CheckpointStore, Consensus,
    Event, EventKind, LedgerStore, PipelineId, PipelineRecord, PipelineRegistry, PipelineStatus,
    Proposal, ProposalId, Report, Solution, UsageTotals, Vote,
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

fn pid(round: u64, i: usize) -> PipelineId {
    PipelineId::new(format!("r{round}-p{i:04}")).expect("id")
}

fn agent(name: &str) -> AgentId {
    AgentId::new(name).expect("agent")
}

fn message(p: &PipelineId, seq: u64) -> Event {
    Event {
        seq,
        ts: Utc::now(),
        kind: EventKind::AgentMessage {
            pipeline_id: p.clone(),
            from: agent("ALPHA"),
            to: "*".into(),
            content: CONTENT.into(),
        },
    }
}

async fn store_round(store: &Arc<SqliteStore>, round: u64) {
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

/// The rows of one round, in the order the raw side inserts them (seq-major, like the groups).
fn raw_rows(round: u64) -> Vec<(String, i64, String, i64)> {
    let mut rows = Vec::with_capacity(PIPELINES * EVENTS as usize);
    for seq in 1..=EVENTS {
        for i in 0..PIPELINES {
            let p = pid(round, i);
            let data = serde_json::json!({"pipeline_id": p.as_str(), "from": "ALPHA", "to": "*",
                "content": CONTENT})
            .to_string();
            let ts = Utc::now().timestamp_nanos_opt().expect("ts");
            rows.push((p.to_string(), i64::try_from(seq).expect("seq"), data, ts));
        }
    }
    rows
}

fn raw_round(conn: &mut rusqlite::Connection, rows: &[(String, i64, String, i64)]) {
    let hash = [7_u8; 32];
    for chunk in rows.chunks(PIPELINES) {
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash) \
                     VALUES (?1, ?2, 'agent_message', 'ALPHA', ?3, ?4, ?5, ?6)",
                )
                .expect("prepare");
            for (p, seq, data, ts) in chunk {
                insert
                    .execute(rusqlite::params![p, seq, ts, data, &hash[..], &hash[..]])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
}

fn ledger(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let store = Arc::new(
        rt.block_on(SqliteStore::open(dir.path().join("store.db")))
            .expect("open"),
    );
    let mut raw = raw_open(&dir.path().join("raw.db"));
    let round = AtomicU64::new(0);
    let mut group = c.benchmark_group("sqlite_ledger");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(PIPELINES as u64 * EVENTS));
    group.bench_function("store", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let r = round.fetch_add(1, Ordering::Relaxed);
                let start = Instant::now();
                rt.block_on(store_round(&store, r));
                total += start.elapsed();
            }
            total
        });
    });
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rows = raw_rows(round.fetch_add(1, Ordering::Relaxed));
                let start = Instant::now();
                raw_round(&mut raw, &rows);
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn record(p: &PipelineId, status: PipelineStatus, final_: bool) -> PipelineRecord {
    let now = Utc::now();
    PipelineRecord {
        id: p.clone(),
        objective: "Design a rate limiter for a multi-tenant API".into(),
        status,
        history: vec![(PipelineStatus::Spawned, now), (status, now)],
        auto_continue: true,
        mode: "local".into(),
        model: "local/scripted".into(),
        timeout_secs: 120,
        created_at: now,
        updated_at: now,
        orchestration_started_at: Some(now),
        report: Some(Report {
            summary: CONTENT.into(),
            findings: vec![CONTENT.into(), "tenants differ by 100x in traffic".into()],
            complexity: 0.6,
            partial: false,
        }),
        agents: ["ALPHA", "BETA"]
            .into_iter()
            .map(|a| AgentRecord {
                agent_id: a.into(),
                role: a.to_lowercase(),
                state: AgentState::Done,
                tokens_used: 2400,
                errors: 0,
                reason: None,
            })
            .collect(),
        gamma: None,
        usage: UsageTotals {
            calls: 6,
            prompt_tokens: 3000,
            completion_tokens: 1800,
            cost_usd: 0.0,
        },
        results: final_.then(|| serde_json::json!({"solution": CONTENT, "proposal": "p1"})),
        failure: None,
        last_seq: 0,
    }
}

fn blackboard() -> BlackboardSnapshot {
    let mut bb = BlackboardSnapshot::default();
    for id in ["p1", "p2"] {
        let mut prop = Proposal::new(
            ProposalId::new(id).expect("id"),
            agent("ALPHA"),
            id,
            CONTENT,
        );
        prop.votes.push(Vote {
            voter: agent("BETA"),
            approve: id == "p1",
            score: 0.8,
            rationale: "fits the constraints".into(),
        });
        bb.proposals.push(prop);
    }
    bb.consensus = Some(Consensus {
        proposal_id: ProposalId::new("p1").expect("id"),
        votes: 2,
        voters: vec![agent("ALPHA"), agent("BETA")],
        decided_at: Utc::now(),
    });
    bb.solutions.push(Solution {
        agent: agent("BETA"),
        proposal_id: Some(ProposalId::new("p1").expect("id")),
        content: CONTENT.repeat(3),
        created_at: Utc::now(),
    });
    bb
}

/// Writes one pipeline as a run does; returns the events written.
async fn one_pipeline(store: &SqliteStore, p: &PipelineId) -> u64 {
    use PipelineStatus as S;
    let mut seq = 0_u64;
    let mut next = |kind: EventKind| {
        seq += 1;
        Event {
            seq,
            ts: Utc::now(),
            kind,
        }
    };
    let statuses = [
        S::Spawned,
        S::Running,
        S::Report,
        S::Orchestrating,
        S::Completed,
    ];
    for (i, status) in statuses.into_iter().enumerate() {
        let final_ = status == S::Completed;
        let mut batch = vec![next(EventKind::StatusChanged {
            pipeline_id: p.clone(),
            status,
            previous: i.checked_sub(1).map(|j| statuses[j]),
            reason: None,
        })];
        if status == S::Orchestrating {
            for _ in 0..18 {
                batch.push(next(EventKind::LlmCall {
                    pipeline_id: p.clone(),
                    agent_id: agent("ALPHA"),
                    model: "local/scripted".into(),
                    prompt_tokens: 500,
                    completion_tokens: 300,
                    cost_usd: None,
                    latency_ms: 40,
                    error: None,
                }));
                store.append(&batch).await.expect("append");
                batch.clear();
            }
        }
        batch.push(next(EventKind::CheckpointCreated {
            pipeline_id: p.clone(),
            status,
            is_final: final_,
        }));
        store.append(&batch).await.expect("append");
        let mut rec = record(p, status, final_);
        rec.last_seq = batch.last().map_or(0, |e| e.seq);
        store
            .save(&Checkpoint {
                record: rec.clone(),
                blackboard: if i >= 3 {
                    blackboard()
                } else {
                    BlackboardSnapshot::default()
                },
                seq: rec.last_seq,
                is_final: final_,
                created_at: Utc::now(),
            })
            .await
            .expect("checkpoint");
        store.upsert(&rec).await.expect("upsert");
    }
    seq
}

async fn pipelines_round(store: &Arc<SqliteStore>, round: u64) {
    let tasks: Vec<_> = (0..PIPELINES)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move { one_pipeline(&store, &pid(round, i)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

fn pipelines(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let path = dir.path().join("pipelines.db");
    let store = Arc::new(rt.block_on(SqliteStore::open(&path)).expect("open"));

    // Bytes per completed pipeline, on a fresh file.
    rt.block_on(pipelines_round(&store, u64::MAX));
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    let pages = |pragma: &str| -> u64 {
        raw.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .expect("pragma")
    };
    let used = (pages("page_count") - pages("freelist_count")) * pages("page_size");
    let file = std::fs::metadata(&path).expect("size").len();
    println!(
        "sqlite bytes per completed pipeline: {} (file {} B / {PIPELINES}), {} in used pages",
        file / PIPELINES as u64,
        file,
        used / PIPELINES as u64
    );
    if let Ok(mut stmt) =
        raw.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
    {
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("dbstat");
        for row in rows {
            let (name, bytes) = row.expect("dbstat row");
            println!("  {name}: {} B per pipeline", bytes / PIPELINES as i64);
        }
    }
    drop(raw);

    let round = AtomicU64::new(0);
    let mut group = c.benchmark_group("sqlite_pipeline");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(PIPELINES as u64));
    group.bench_function("store", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let r = round.fetch_add(1, Ordering::Relaxed);
                let start = Instant::now();
                rt.block_on(pipelines_round(&store, r));
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    ledger(&mut c);
    pipelines(&mut c);
    c.final_summary();
}
