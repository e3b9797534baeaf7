//! A ledger write whose reply is lost (applied, then reported as an "outcome unknown" backend
//! error) or whose repeat is refused as a conflict at its own seq does not end the pipeline:
//! the engine reads the ledger back, finds the identical event and goes on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use common::*;
use governance_core::{
    Error, Event, EventKind, Governance, LedgerStore, LocalLlm, LocalLlmConfig, MemoryStore,
    PipelineId, PipelineStatus, Result, SpawnRequest, SplitStore,
};

/// How an applied append is reported.
#[derive(Debug, Clone, Copy)]
enum Report {
    /// The reply was lost: a non-retryable backend error.
    Unknown,
    /// The seq is "already taken" (by this very write).
    Conflict,
}

/// A ledger that applies every third plain append (not a status change) and then reports it
/// as failed.
#[derive(Debug)]
struct LosesReplies {
    inner: Arc<MemoryStore>,
    report: Report,
    appends: AtomicU32,
    lost: AtomicU32,
}

#[async_trait]
impl LedgerStore for LosesReplies {
    async fn append(&self, events: &[Event]) -> Result<()> {
        self.inner.append(events).await?;
        let status_change = events
            .iter()
            .any(|e| matches!(e.kind, EventKind::CheckpointCreated { .. }));
        if status_change || self.appends.fetch_add(1, Ordering::SeqCst) % 3 != 2 {
            return Ok(());
        }
        self.lost.fetch_add(1, Ordering::SeqCst);
        Err(match self.report {
            Report::Unknown => Error::backend(
                "flaky",
                "ledger append: connection reset (outcome unknown: an earlier attempt may have been applied)",
                false,
            ),
            Report::Conflict => Error::Conflict(format!(
                "seq {} is already taken by a different entry, or leaves a gap",
                events[0].seq
            )),
        })
    }
    async fn read(&self, p: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.inner.read(p, after, limit).await
    }
    async fn last_seq(&self, p: &PipelineId) -> Result<u64> {
        self.inner.last_seq(p).await
    }
}

async fn completes_despite(report: Report) {
    let memory = Arc::new(MemoryStore::default());
    let ledger = Arc::new(LosesReplies {
        inner: memory.clone(),
        report,
        appends: AtomicU32::new(0),
        lost: AtomicU32::new(0),
    });
    let store = SplitStore::new(ledger.clone(), memory.clone(), memory.clone());
    let gov = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(LocalLlm::new(LocalLlmConfig::default())))
        .store(Arc::new(store))
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(
        rec.status,
        PipelineStatus::Completed,
        "{report:?}: {:?}",
        rec.failure
    );
    assert!(
        ledger.lost.load(Ordering::SeqCst) >= 3,
        "{report:?}: replies were lost"
    );
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    assert_gap_free(&events);
    assert_eq!(count(&events, "consensus_reached"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_of_an_applied_append_is_resolved_by_reading_the_ledger_back() {
    completes_despite(Report::Unknown).await;
}

#[tokio::test(start_paused = true)]
async fn a_conflict_at_a_seq_holding_the_identical_event_counts_as_written() {
    completes_despite(Report::Conflict).await;
}
