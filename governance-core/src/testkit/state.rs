//! The [`StateStore`] conformance suite: a status change is committed all or nothing.

use std::future::Future;
use std::sync::Arc;

use crate::blackboard::BlackboardSnapshot;
use crate::error::Error;
use crate::event::{Event, EventKind};
use crate::ids::PipelineId;
use crate::state_machine::PipelineStatus;
use crate::store::{Checkpoint, PipelineRecord, StateStore, StatusChange};

use super::registry::record;
use super::{fresh, now_ms};

type Store = Arc<dyn StateStore>;

/// One status change's parts, owned.
struct Change {
    events: Vec<Event>,
    checkpoint: Checkpoint,
    record: PipelineRecord,
}

impl Change {
    /// Moves `p` to `status` with events `first..first + 2` (a `status_changed` and a
    /// `checkpoint_created`); `pad` bytes of blackboard data make the checkpoint as big as asked.
    fn new(p: &PipelineId, first: u64, status: PipelineStatus, pad: usize) -> Self {
        let ts = now_ms();
        let events = vec![
            Event {
                seq: first,
                ts,
                kind: EventKind::StatusChanged {
                    pipeline_id: p.clone(),
                    status,
                    previous: None,
                    reason: None,
                },
            },
            Event {
                seq: first + 1,
                ts,
                kind: EventKind::CheckpointCreated {
                    pipeline_id: p.clone(),
                    status,
                    is_final: false,
                },
            },
        ];
        let mut rec = record(p, ts, status);
        rec.last_seq = first + 1;
        let mut blackboard = BlackboardSnapshot::default();
        blackboard
            .partials
            .insert("ALPHA/pad".into(), serde_json::json!("x".repeat(pad)));
        Self {
            events,
            checkpoint: Checkpoint {
                record: rec.clone(),
                blackboard,
                seq: first + 1,
                is_final: false,
                created_at: ts,
            },
            record: rec,
        }
    }

    fn as_change(&self) -> StatusChange<'_> {
        StatusChange {
            events: &self.events,
            checkpoint: &self.checkpoint,
            record: &self.record,
        }
    }
}

/// What a store holds for one pipeline.
#[derive(Debug, PartialEq)]
struct Held {
    events: Vec<Event>,
    checkpoint: Option<Checkpoint>,
    count: usize,
    record: Option<PipelineRecord>,
}

async fn held(s: &Store, p: &PipelineId, check: &str) -> Held {
    let fail = |what: &str, e: Error| -> ! { panic!("[state::{check}] {what} failed: {e}") };
    Held {
        events: s.read(p, 0, 1000).await.unwrap_or_else(|e| fail("read", e)),
        checkpoint: s.latest(p).await.unwrap_or_else(|e| fail("latest", e)),
        count: s.count(p).await.unwrap_or_else(|e| fail("count", e)),
        record: s.get(p).await.unwrap_or_else(|e| fail("get", e)),
    }
}

async fn commit(s: &Store, change: &Change, check: &str) {
    s.commit(change.as_change())
        .await
        .unwrap_or_else(|e| panic!("[state::{check}] commit failed: {e}"));
}

/// Runs every check of the [`StateStore`] contract against `s`; panics naming the failed check.
///
/// Checks: a commit stores its events, checkpoint and record; a commit whose events conflict
/// with the ledger (a gap, or a different event at a taken `seq`) is refused with
/// [`Error::Conflict`] and leaves nothing behind; a commit mixing pipelines is refused and
/// writes neither.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn state_store_suite(s: Arc<dyn StateStore>) {
    commit_stores_everything(&s).await;
    conflicting_commit_leaves_nothing(&s).await;
    mixed_pipelines_are_refused(&s).await;
}

async fn commit_stores_everything(s: &Store) {
    const C: &str = "commit_stores_everything";
    let p = fresh();
    let change = Change::new(&p, 1, PipelineStatus::Running, 16);
    commit(s, &change, C).await;
    let got = held(s, &p, C).await;
    assert_eq!(got.events, change.events, "[state::{C}] events");
    assert_eq!(
        got.checkpoint.as_ref(),
        Some(&change.checkpoint),
        "[state::{C}] checkpoint"
    );
    assert_eq!(got.count, 1, "[state::{C}] checkpoint count");
    assert_eq!(
        got.record.as_ref(),
        Some(&change.record),
        "[state::{C}] record"
    );
}

async fn conflicting_commit_leaves_nothing(s: &Store) {
    const C: &str = "conflicting_commit_leaves_nothing";
    let p = fresh();
    commit(s, &Change::new(&p, 1, PipelineStatus::Running, 16), C).await;
    let before = held(s, &p, C).await;
    // a gap after seq 2, then a different event at seq 2
    for first in [4, 2] {
        let bad = Change::new(&p, first, PipelineStatus::Report, 16);
        let err = s.commit(bad.as_change()).await;
        assert!(
            matches!(err, Err(Error::Conflict(_))),
            "[state::{C}] a commit from seq {first} after seq 2: expected Conflict, got {err:?}"
        );
        assert_eq!(
            held(s, &p, C).await,
            before,
            "[state::{C}] the refused commit from seq {first} changed the store"
        );
    }
}

async fn mixed_pipelines_are_refused(s: &Store) {
    const C: &str = "mixed_pipelines_are_refused";
    let (p, q) = (fresh(), fresh());
    let mut mixed = Change::new(&p, 1, PipelineStatus::Running, 16);
    mixed.events = Change::new(&q, 1, PipelineStatus::Running, 0).events;
    let err = s.commit(mixed.as_change()).await;
    assert!(
        err.is_err(),
        "[state::{C}] events of another pipeline were accepted"
    );
    for id in [&p, &q] {
        let got = held(s, id, C).await;
        assert_eq!(
            got,
            Held {
                events: Vec::new(),
                checkpoint: None,
                count: 0,
                record: None
            },
            "[state::{C}] the refused commit wrote {id}"
        );
    }
}

/// A commit the backend fails leaves nothing behind: commits a first status change of
/// `pipeline`, runs `break_next` (the backend-specific fault: a lost lease, a full disk), then
/// commits a second one whose checkpoint carries `pad_bytes` of blackboard data, expects an
/// error and checks that no event, checkpoint or record change was stored. Returns the error
/// for the caller to check its kind.
///
/// # Panics
/// When the first commit fails, the second succeeds, or the second left anything behind.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn failed_commit_leaves_nothing<F, Fut>(
    s: Arc<dyn StateStore>,
    pipeline: PipelineId,
    pad_bytes: usize,
    break_next: F,
) -> Error
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    const C: &str = "failed_commit_leaves_nothing";
    commit(
        &s,
        &Change::new(&pipeline, 1, PipelineStatus::Running, 16),
        C,
    )
    .await;
    let before = held(&s, &pipeline, C).await;
    break_next().await;
    let bad = Change::new(&pipeline, 3, PipelineStatus::Report, pad_bytes);
    let Err(err) = s.commit(bad.as_change()).await else {
        panic!("[state::{C}] the commit succeeded despite the injected fault");
    };
    assert_eq!(
        held(&s, &pipeline, C).await,
        before,
        "[state::{C}] the failed commit ({err}) changed the store"
    );
    err
}
