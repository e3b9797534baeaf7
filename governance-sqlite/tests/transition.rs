//! A status change's events, checkpoint and registry row are written all or none.

use governance_core::{
    BlackboardSnapshot, Checkpoint, CheckpointStore, ErrorKind, Event, EventKind, LedgerStore,
    PipelineId, PipelineRecord, PipelineRegistry, PipelineStatus, StateStore, StatusChange,
};
use governance_sqlite::SqliteStore;

fn record(id: &PipelineId) -> PipelineRecord {
    let now = chrono::Utc::now();
    let mut r = PipelineRecord::new(id.clone(), "o", now);
    r.status = PipelineStatus::Running;
    r.history = vec![
        (PipelineStatus::Spawned, now),
        (PipelineStatus::Running, now),
    ];
    r.model = "m".into();
    r.last_seq = 2;
    r
}

fn event(id: &PipelineId, seq: u64) -> Event {
    Event {
        seq,
        ts: chrono::Utc::now(),
        kind: EventKind::StatusChanged {
            pipeline_id: id.clone(),
            status: PipelineStatus::Running,
            previous: None,
            reason: None,
        },
    }
}

#[tokio::test]
async fn state_change_is_stored_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    let id = PipelineId::generate();
    let rec = record(&id);
    let cp = Checkpoint::new(
        rec.clone(),
        BlackboardSnapshot::default(),
        2,
        false,
        chrono::Utc::now(),
    );

    store
        .commit(StatusChange {
            events: &[event(&id, 1), event(&id, 2)],
            checkpoint: &cp,
            record: &rec,
        })
        .await
        .unwrap();
    assert_eq!(store.last_seq(&id).await.unwrap(), 2);
    assert_eq!(store.latest(&id).await.unwrap().unwrap().seq, 2);
    assert_eq!(store.get(&id).await.unwrap().unwrap().last_seq, 2);

    // a gap in the ledger batch: refused, and the checkpoint and record are not written either
    let mut rec2 = rec.clone();
    rec2.last_seq = 9;
    rec2.status = PipelineStatus::Report;
    let mut cp2 = cp.clone();
    cp2.record = rec2.clone();
    cp2.seq = 9;
    let err = store
        .commit(StatusChange {
            events: &[event(&id, 9)],
            checkpoint: &cp2,
            record: &rec2,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(store.latest(&id).await.unwrap().unwrap().seq, 2);
    let got = store.get(&id).await.unwrap().unwrap();
    assert_eq!(got.status, PipelineStatus::Running);
    assert_eq!(got.last_seq, 2);
}
