//! A file made by the first schema version opens, migrates and keeps its data.

mod common;

use governance_core::{CheckpointStore, LedgerStore, PipelineRegistry, PipelineStatus};
use governance_sqlite::{SCHEMA_VERSION, verify};

/// The schema of version 1, exactly as it shipped (kept here so the test does not depend on
/// the crate's own copy).
const V1_DDL: &str = "
CREATE TABLE ledger (
    pipeline_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    type        TEXT    NOT NULL,
    agent_id    TEXT,
    ts          INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL,
    PRIMARY KEY (pipeline_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only: entries are never updated'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only: entries are never deleted'); END;
CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    pipeline_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    is_final    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX checkpoints_by_pipeline ON checkpoints (pipeline_id, seq, id);
CREATE TABLE pipelines (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    record     TEXT    NOT NULL
);
CREATE INDEX pipelines_by_created ON pipelines (created_at DESC, id DESC);
CREATE INDEX pipelines_by_status ON pipelines (status, created_at DESC, id DESC);
PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_file_migrates_and_keeps_its_data() {
    let db = common::temp_db();
    let p = common::pid("old");
    let rec = common::record(&p, PipelineStatus::Completed, 10);
    let cp = common::checkpoint(&p, 3, PipelineStatus::Completed, true);
    {
        let raw = rusqlite::Connection::open(&db.path).expect("raw");
        raw.execute_batch(V1_DDL).expect("v1 schema");
        raw.execute(
            "INSERT INTO pipelines VALUES (?1, 'COMPLETED', ?2, ?2, ?3)",
            rusqlite::params![
                p.as_str(),
                rec.created_at.timestamp_nanos_opt().expect("ns"),
                serde_json::to_string(&rec).expect("json")
            ],
        )
        .expect("v1 pipeline row");
        raw.execute(
            "INSERT INTO checkpoints (pipeline_id, seq, status, is_final, created_at, body) \
             VALUES (?1, 3, 'COMPLETED', 1, 0, ?2)",
            rusqlite::params![p.as_str(), serde_json::to_string(&cp).expect("json")],
        )
        .expect("v1 checkpoint row");
    }

    let store = common::open(&db).await;
    let version: u32 = rusqlite::Connection::open(&db.path)
        .expect("raw")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(store.get(&p).await.expect("get"), Some(rec));
    assert_eq!(store.latest(&p).await.expect("latest"), Some(cp));

    // The version-2 table works, and so does the ledger.
    let agent = governance_core::AgentId::new("ALPHA").expect("agent");
    let req = serde_json::json!({"messages": []});
    store
        .record_exchange(&p, &agent, &req, &serde_json::json!({"ok": true}))
        .await
        .expect("record exchange");
    assert_eq!(store.exchanges(&p).await.expect("exchanges").len(), 1);
    store
        .append(&[common::message(&p, 1, "after migration")])
        .await
        .expect("append");
    assert!(verify(&db.path).expect("verify").is_intact());

    // Opening again is a no-op migration.
    store.close().await.expect("close");
    common::open(&db).await;
}
