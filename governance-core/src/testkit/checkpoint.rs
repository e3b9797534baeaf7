//! The [`CheckpointStore`] conformance suite.

use std::sync::Arc;

use crate::blackboard::{BlackboardSnapshot, Proposal};
use crate::ids::{PipelineId, ProposalId};
use crate::state_machine::PipelineStatus;
use crate::store::{Checkpoint, CheckpointStore};

use super::registry::record;
use super::{agent, fresh, now_ms};

type Store = Arc<dyn CheckpointStore>;

/// Runs every check of the [`CheckpointStore`] contract against `c`; panics naming the failed
/// check.
///
/// Checks: an unknown pipeline has no checkpoint and a count of 0; a checkpoint round-trips
/// intact; `latest` is the one with the highest `seq` whatever the save order, the last saved on
/// ties; `count` counts the saves of a running pipeline; a final checkpoint becomes the latest
/// and at least one checkpoint remains after it (backends may compact); pipelines are isolated.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn checkpoint_suite(c: Arc<dyn CheckpointStore>) {
    unknown_pipeline(&c).await;
    latest_is_highest_seq(&c).await;
}

fn checkpoint(p: &PipelineId, seq: u64, marker: &str) -> Checkpoint {
    let mut rec = record(p, now_ms(), PipelineStatus::Orchestrating);
    rec.last_seq = seq;
    rec.failure = Some(marker.into());
    let mut blackboard = BlackboardSnapshot::default();
    let mut prop = Proposal::new(
        ProposalId::new("p1").expect("testkit: proposal id literal"),
        agent("ALPHA"),
        "title",
        marker,
    );
    prop.created_at = now_ms();
    blackboard.proposals.push(prop);
    blackboard
        .partials
        .insert("ALPHA/notes".into(), serde_json::json!({"marker": marker}));
    Checkpoint {
        record: rec,
        blackboard,
        seq,
        is_final: false,
        created_at: now_ms(),
    }
}

async fn save(c: &Store, cp: &Checkpoint, check: &str) {
    c.save(cp)
        .await
        .unwrap_or_else(|e| panic!("[checkpoint::{check}] save (seq {}) failed: {e}", cp.seq));
}

async fn latest(c: &Store, p: &PipelineId, check: &str) -> Option<Checkpoint> {
    c.latest(p)
        .await
        .unwrap_or_else(|e| panic!("[checkpoint::{check}] latest failed: {e}"))
}

async fn count(c: &Store, p: &PipelineId, check: &str) -> usize {
    c.count(p)
        .await
        .unwrap_or_else(|e| panic!("[checkpoint::{check}] count failed: {e}"))
}

async fn unknown_pipeline(c: &Store) {
    const C: &str = "[checkpoint::unknown_pipeline]";
    let p = fresh();
    assert_eq!(
        latest(c, &p, "unknown_pipeline").await,
        None,
        "{C} latest of an unknown pipeline"
    );
    assert_eq!(
        count(c, &p, "unknown_pipeline").await,
        0,
        "{C} count of an unknown pipeline"
    );
}

async fn latest_is_highest_seq(c: &Store) {
    const C: &str = "[checkpoint::latest_is_highest_seq]";
    let ck = "latest_is_highest_seq";
    let (p, other) = (fresh(), fresh());
    let first = checkpoint(&p, 1, "seq 1");
    save(c, &first, ck).await;
    assert_eq!(
        latest(c, &p, ck).await.as_ref(),
        Some(&first),
        "{C} a checkpoint must round-trip intact"
    );

    let five = checkpoint(&p, 5, "seq 5");
    save(c, &five, ck).await;
    save(c, &checkpoint(&p, 3, "seq 3, saved late"), ck).await;
    assert_eq!(
        latest(c, &p, ck).await.as_ref(),
        Some(&five),
        "{C} latest must be the highest seq, not the last saved"
    );
    assert_eq!(count(c, &p, ck).await, 3, "{C} count after 3 saves");

    let tie = checkpoint(&p, 5, "seq 5 again");
    save(c, &tie, ck).await;
    assert_eq!(
        latest(c, &p, ck).await.as_ref(),
        Some(&tie),
        "{C} on equal seq the last saved wins"
    );
    assert_eq!(count(c, &p, ck).await, 4, "{C} count after 4 saves");

    let only = checkpoint(&other, 2, "other pipeline");
    save(c, &only, ck).await;
    assert_eq!(
        latest(c, &other, ck).await.as_ref(),
        Some(&only),
        "{C} pipelines are isolated"
    );
    assert_eq!(
        count(c, &other, ck).await,
        1,
        "{C} count of another pipeline"
    );
    assert_eq!(
        latest(c, &p, ck).await.as_ref(),
        Some(&tie),
        "{C} another pipeline's save must not change latest"
    );

    let mut fin = checkpoint(&p, 9, "final");
    fin.is_final = true;
    fin.record.status = PipelineStatus::Completed;
    save(c, &fin, ck).await;
    assert_eq!(
        latest(c, &p, ck).await.as_ref(),
        Some(&fin),
        "{C} the final checkpoint must be the latest"
    );
    assert!(
        count(c, &p, ck).await >= 1,
        "{C} the final checkpoint must be kept"
    );
}
