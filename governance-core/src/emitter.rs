//! Per-pipeline event emission: assigns the gap-free `seq`, appends to the ledger, then fans out
//! (and logs each status change at `info`, with `pipeline_id`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use crate::durable::{WriteRetry, write};
use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::store::{Checkpoint, LedgerStore, PipelineRecord, StateStore, StatusChange};

/// Emits the events of one pipeline. Events are appended to the ledger *before* they are
/// broadcast, in `seq` order, so the live feed never shows an event the ledger does not have.
#[derive(Debug)]
pub struct EventEmitter {
    next: tokio::sync::Mutex<u64>,
    last: AtomicU64,
    ledger: Arc<dyn LedgerStore>,
    hub: broadcast::Sender<Arc<Event>>,
    /// Set once the pipeline is acknowledged: its writes then wait out storage failures.
    retry: OnceLock<WriteRetry>,
}

impl EventEmitter {
    /// An emitter continuing after `last_seq`.
    #[must_use]
    pub fn new(
        last_seq: u64,
        ledger: Arc<dyn LedgerStore>,
        hub: broadcast::Sender<Arc<Event>>,
    ) -> Self {
        Self {
            next: tokio::sync::Mutex::new(last_seq),
            last: AtomicU64::new(last_seq),
            ledger,
            hub,
            retry: OnceLock::new(),
        }
    }

    /// From now on, writes that fail retryably are retried under `policy` (see
    /// [`crate::durable`]) instead of failing.
    pub(crate) fn retry_writes(&self, policy: WriteRetry) {
        let _ = self.retry.set(policy);
    }

    /// The retry policy of this pipeline's writes, once set.
    pub(crate) fn write_retry(&self) -> Option<&WriteRetry> {
        self.retry.get()
    }

    /// The last `seq` emitted.
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Appends one event to the ledger and broadcasts it; returns its `seq`.
    ///
    /// Once the pipeline's writes are retried (see [`crate::durable`]), a retryable failure is
    /// waited out instead of returned.
    ///
    /// # Errors
    /// The ledger's error; the `seq` is not consumed then (no gap).
    pub async fn emit(&self, kind: EventKind) -> Result<u64> {
        let mut next = self.next.lock().await;
        let event = Event {
            seq: *next + 1,
            ts: chrono::Utc::now(),
            kind,
        };
        let (ledger, one) = (&*self.ledger, std::slice::from_ref(&event));
        write(self.retry.get(), "ledger append", || ledger.append(one)).await?;
        *next += 1;
        self.last.store(*next, Ordering::Release);
        let seq = event.seq;
        log_status(&event);
        // no receivers is fine: the ledger is the record, the hub is live fan-out
        let _ = self.hub.send(Arc::new(event));
        Ok(seq)
    }

    /// Commits `kinds` (in order) together with a checkpoint and the registry record as one
    /// [`StatusChange`] of `store` (atomic: see [`StateStore::commit`]): both are stamped with
    /// the `seq` of the last of these events, so they are consistent with exactly the ledger up
    /// to it. `store` must hold this emitter's ledger.
    ///
    /// # Errors
    /// The store's error; no `seq` is consumed then, and nothing was written.
    pub async fn emit_with_state(
        &self,
        store: &dyn StateStore,
        kinds: Vec<EventKind>,
        checkpoint: &mut Checkpoint,
        record: &mut PipelineRecord,
    ) -> Result<()> {
        let mut next = self.next.lock().await;
        let ts = chrono::Utc::now();
        let events: Vec<Event> = kinds
            .into_iter()
            .zip(*next + 1..)
            .map(|(kind, seq)| Event { seq, ts, kind })
            .collect();
        let last = *next + events.len() as u64;
        record.last_seq = last;
        checkpoint.seq = last;
        checkpoint.record.clone_from(record);
        let change = StatusChange {
            events: &events,
            checkpoint,
            record,
        };
        write(self.retry.get(), "state change", || store.commit(change)).await?;
        *next = last;
        self.last.store(last, Ordering::Release);
        for event in events {
            log_status(&event);
            let _ = self.hub.send(Arc::new(event));
        }
        Ok(())
    }
}

/// One `info` line per recorded status change, with the pipeline's id as a field.
fn log_status(event: &Event) {
    if let EventKind::StatusChanged {
        pipeline_id,
        status,
        previous,
        reason,
    } = &event.kind
    {
        tracing::info!(
            pipeline_id = %pipeline_id,
            status = %status,
            previous = previous.map(tracing::field::display),
            reason = reason.as_deref(),
            seq = event.seq,
            "pipeline status changed"
        );
    }
}
