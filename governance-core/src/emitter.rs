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
        self.resolving(one, "ledger append", || ledger.append(one))
            .await?;
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
        self.resolving(&events, "state change", || store.commit(change))
            .await?;
        *next = last;
        self.last.store(last, Ordering::Release);
        for event in events {
            log_status(&event);
            let _ = self.hub.send(Arc::new(event));
        }
        Ok(())
    }
}

/// How many times a write whose outcome was unknown, and which the ledger shows was not
/// applied, is tried again before its error is returned.
const UNKNOWN_OUTCOME_REPEATS: u32 = 3;

/// What the ledger holds at the seqs of events whose write had an unknown outcome.
enum Stored {
    /// Exactly these events: the write was applied (its reply was lost).
    Same,
    /// Nothing at the first seq: the write was not applied.
    Absent,
    /// Something else: another writer took the seq.
    Different,
}

/// An error after which the write may nevertheless have been applied: the reply was lost
/// (a non-retryable backend error, e.g. "outcome unknown") or the ledger refused a seq that a
/// first, applied attempt may have taken (a conflict).
fn maybe_applied(e: &crate::error::Error) -> bool {
    use crate::error::ErrorKind;
    match e.kind() {
        ErrorKind::Backend => !e.is_retryable(),
        ErrorKind::Conflict => true,
        _ => false,
    }
}

impl EventEmitter {
    /// Runs a write of `events` (under the retry policy, if any); when it fails in a way that
    /// leaves its outcome unknown, reads the ledger back: the identical events there mean the
    /// write was applied (a lost reply, a repeat refused as a conflict) and count as written;
    /// nothing there means it was not, and it is tried again. Only a seq taken by another
    /// entry returns the error.
    async fn resolving<F, Fut>(&self, events: &[Event], what: &str, mut attempt: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut repeats = 0;
        loop {
            let err = match write(self.retry.get(), what, &mut attempt).await {
                Ok(()) => return Ok(()),
                Err(e) if maybe_applied(&e) && !events.is_empty() => e,
                Err(e) => return Err(e),
            };
            match self.stored(events).await {
                Ok(Stored::Same) => {
                    tracing::warn!(what, error = %err, "the write was applied (its reply was lost); going on");
                    return Ok(());
                }
                Ok(Stored::Absent) if repeats < UNKNOWN_OUTCOME_REPEATS => {
                    repeats += 1;
                    tracing::warn!(what, error = %err, "the write was not applied; writing it again");
                }
                Ok(_) => return Err(err),
                Err(e) => {
                    tracing::warn!(what, error = %e, "cannot read the ledger back after an unknown outcome");
                    return Err(err);
                }
            }
        }
    }

    /// What the ledger holds where `events` go (read under the retry policy, if any).
    async fn stored(&self, events: &[Event]) -> Result<Stored> {
        let Some(first) = events.first() else {
            return Ok(Stored::Same);
        };
        let (ledger, id) = (&*self.ledger, first.pipeline_id());
        let after = first.seq.saturating_sub(1);
        let found = write(self.retry.get(), "ledger read-back", || {
            ledger.read(id, after, events.len())
        })
        .await?;
        if found.first().is_none_or(|e| e.seq != first.seq) {
            return Ok(Stored::Absent);
        }
        let same = found.len() == events.len() && found.iter().zip(events).all(|(a, b)| {
            matches!(
                (crate::chain::LedgerRow::from_event(a), crate::chain::LedgerRow::from_event(b)),
                (Ok(x), Ok(y)) if x == y
            )
        });
        Ok(if same {
            Stored::Same
        } else {
            Stored::Different
        })
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
