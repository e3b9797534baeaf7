//! Per-pipeline event emission: assigns the gap-free `seq`, appends to the ledger, then fans out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::ids::PipelineId;
use crate::store::LedgerStore;

/// Emits the events of one pipeline. Events are appended to the ledger *before* they are
/// broadcast, in `seq` order, so the live feed never shows an event the ledger does not have.
#[derive(Debug)]
pub struct EventEmitter {
    pipeline: PipelineId,
    next: tokio::sync::Mutex<u64>,
    last: AtomicU64,
    ledger: Arc<dyn LedgerStore>,
    hub: broadcast::Sender<Arc<Event>>,
}

impl EventEmitter {
    /// An emitter continuing after `last_seq`.
    #[must_use]
    pub fn new(
        pipeline: PipelineId,
        last_seq: u64,
        ledger: Arc<dyn LedgerStore>,
        hub: broadcast::Sender<Arc<Event>>,
    ) -> Self {
        Self {
            pipeline,
            next: tokio::sync::Mutex::new(last_seq),
            last: AtomicU64::new(last_seq),
            ledger,
            hub,
        }
    }

    /// The pipeline.
    #[must_use]
    pub fn pipeline(&self) -> &PipelineId {
        &self.pipeline
    }

    /// The last `seq` emitted.
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Appends one event to the ledger and broadcasts it; returns its `seq`.
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
        self.ledger.append(std::slice::from_ref(&event)).await?;
        *next += 1;
        self.last.store(*next, Ordering::Release);
        let seq = event.seq;
        // no receivers is fine: the ledger is the record, the hub is live fan-out
        let _ = self.hub.send(Arc::new(event));
        Ok(seq)
    }
}
