//! Helpers shared by the integration tests: fresh stores in temp dirs and event builders.
#![allow(dead_code)]

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use governance_core::{
    AgentId, BlackboardSnapshot, Checkpoint, Event, EventKind, PipelineId, PipelineRecord,
    PipelineStatus,
};
use governance_sqlite::SqliteStore;

/// A temp dir holding `db.sqlite`.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_db() -> TempDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    TempDb { dir, path }
}

pub async fn open(db: &TempDb) -> SqliteStore {
    SqliteStore::open(&db.path).await.expect("open store")
}

pub fn pid(name: &str) -> PipelineId {
    PipelineId::new(name).expect("pipeline id")
}

/// A fixed time plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 123_456_789)
        .single()
        .expect("time")
}

/// An `agent_message` event.
pub fn message(p: &PipelineId, seq: u64, text: &str) -> Event {
    Event {
        seq,
        ts: at(i64::try_from(seq).expect("seq")),
        kind: EventKind::AgentMessage {
            pipeline_id: p.clone(),
            from: AgentId::new("ALPHA").expect("agent"),
            to: "*".into(),
            content: text.into(),
        },
    }
}

/// A minimal registry record.
pub fn record(p: &PipelineId, status: PipelineStatus, created: i64) -> PipelineRecord {
    let mut r = PipelineRecord::new(p.clone(), "objective", at(created));
    r.status = status;
    r.history = vec![(status, at(created))];
    r.model = "local/scripted".into();
    r
}

pub fn checkpoint(p: &PipelineId, seq: u64, status: PipelineStatus, is_final: bool) -> Checkpoint {
    Checkpoint::new(
        record(p, status, 0),
        BlackboardSnapshot::default(),
        seq,
        is_final,
        at(i64::try_from(seq).expect("seq")),
    )
}
