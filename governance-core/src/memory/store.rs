//! [`MemoryStore`]: the in-memory ledger, checkpoint store and pipeline registry (a
//! [`StateStore`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::PipelineId;
use crate::state_machine::PipelineStatus;
use crate::store::{
    Checkpoint, CheckpointStore, LedgerStore, PipelineFilter, PipelineRecord, PipelineRegistry,
    StateStore, StatusChange,
};

/// `list` limit used when the filter says `0`.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// One pipeline's ledger: the event with `seq` n is at index n - 1.
type Ledger = Arc<Mutex<Vec<Event>>>;

/// The latest checkpoint of a pipeline and how many were saved.
#[derive(Debug)]
struct Checkpoints {
    latest: Checkpoint,
    saved: usize,
}

/// An in-memory [`LedgerStore`], [`CheckpointStore`] and [`PipelineRegistry`] in one struct.
///
/// Nothing survives the process: use it for tests and for embedding where durability does not
/// matter ("durable" here means "visible to every later call").
///
/// - **Ledger**: one vector of events per pipeline, each behind its own lock; a batch locks the
///   pipelines it touches in id order, checks every event, then stores all or none.
/// - **Checkpoints**: only the latest checkpoint of each pipeline is kept (the highest `seq`,
///   the last saved on ties); [`count`](CheckpointStore::count) reports how many were saved.
/// - **Registry**: a map of records; [`list`](PipelineRegistry::list) scans and sorts it.
/// - **Commit**: [`commit`](StateStore::commit) holds the pipeline's ledger lock while it
///   checks the events and then stores events, checkpoint and record, so a refused commit
///   changes nothing and readers never see the events without their checkpoint for long.
#[derive(Debug, Default)]
pub struct MemoryStore {
    ledgers: RwLock<HashMap<PipelineId, Ledger>>,
    checkpoints: RwLock<HashMap<PipelineId, Checkpoints>>,
    records: RwLock<HashMap<PipelineId, PipelineRecord>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn ledger(&self, pipeline: &PipelineId) -> Option<Ledger> {
        self.ledgers.read().get(pipeline).cloned()
    }

    fn save_checkpoint(&self, checkpoint: &Checkpoint) {
        let mut all = self.checkpoints.write();
        let id = &checkpoint.record.id;
        match all.get_mut(id) {
            Some(entry) => {
                entry.saved += 1;
                if checkpoint.seq >= entry.latest.seq {
                    entry.latest = checkpoint.clone();
                }
            }
            None => {
                all.insert(
                    id.clone(),
                    Checkpoints {
                        latest: checkpoint.clone(),
                        saved: 1,
                    },
                );
            }
        }
    }

    fn ledger_or_create(&self, pipeline: &PipelineId) -> Ledger {
        if let Some(ledger) = self.ledger(pipeline) {
            return ledger;
        }
        Arc::clone(self.ledgers.write().entry(pipeline.clone()).or_default())
    }
}

/// Checks `events` (all of one pipeline, in batch order) against `stored` and returns the ones
/// to append.
fn new_events<'a>(stored: &[Event], events: impl Iterator<Item = &'a Event>) -> Result<Vec<Event>> {
    let mut fresh: Vec<Event> = Vec::new();
    for event in events {
        let known = (stored.len() + fresh.len()) as u64;
        if event.seq == 0 {
            return Err(Error::InvalidInput(format!(
                "event seq starts at 1 (pipeline {})",
                event.pipeline_id()
            )));
        }
        if event.seq <= known {
            let index = usize::try_from(event.seq - 1).unwrap_or(usize::MAX);
            let existing = stored
                .get(index)
                .or_else(|| fresh.get(index.saturating_sub(stored.len())));
            if existing != Some(event) {
                return Err(Error::Conflict(format!(
                    "ledger of pipeline {} already has a different event with seq {}",
                    event.pipeline_id(),
                    event.seq
                )));
            }
        } else if event.seq == known + 1 {
            fresh.push(event.clone());
        } else {
            return Err(Error::Conflict(format!(
                "ledger of pipeline {} is at seq {known}; seq {} would leave a gap",
                event.pipeline_id(),
                event.seq
            )));
        }
    }
    Ok(fresh)
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn append(&self, events: &[Event]) -> Result<()> {
        let mut pipelines: Vec<&PipelineId> = events.iter().map(Event::pipeline_id).collect();
        pipelines.sort_unstable();
        pipelines.dedup();
        // Locks are taken in pipeline-id order, so concurrent batches cannot deadlock.
        let ledgers: Vec<Ledger> = pipelines.iter().map(|p| self.ledger_or_create(p)).collect();
        let mut guards: Vec<_> = ledgers.iter().map(|l| l.lock()).collect();
        let mut batches = Vec::with_capacity(pipelines.len());
        for (pipeline, guard) in pipelines.iter().zip(&guards) {
            let own = events.iter().filter(|e| e.pipeline_id() == *pipeline);
            batches.push(new_events(guard, own)?);
        }
        for (guard, batch) in guards.iter_mut().zip(batches) {
            guard.extend(batch);
        }
        Ok(())
    }

    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        let Some(ledger) = self.ledger(pipeline) else {
            return Ok(Vec::new());
        };
        let events = ledger.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(events.len());
        let end = start.saturating_add(limit).min(events.len());
        Ok(events[start..end].to_vec())
    }

    async fn last_seq(&self, pipeline: &PipelineId) -> Result<u64> {
        Ok(self.ledger(pipeline).map_or(0, |l| l.lock().len() as u64))
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.save_checkpoint(checkpoint);
        Ok(())
    }

    async fn latest(&self, pipeline: &PipelineId) -> Result<Option<Checkpoint>> {
        Ok(self
            .checkpoints
            .read()
            .get(pipeline)
            .map(|c| c.latest.clone()))
    }

    async fn count(&self, pipeline: &PipelineId) -> Result<usize> {
        Ok(self.checkpoints.read().get(pipeline).map_or(0, |c| c.saved))
    }
}

fn matches(filter: &PipelineFilter, record: &PipelineRecord) -> bool {
    (filter.statuses.is_empty() || filter.statuses.contains(&record.status))
        && filter.created_after.is_none_or(|t| record.created_at >= t)
        && filter.created_before.is_none_or(|t| record.created_at < t)
}

#[async_trait]
impl PipelineRegistry for MemoryStore {
    async fn upsert(&self, record: &PipelineRecord) -> Result<()> {
        self.records
            .write()
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &PipelineId) -> Result<Option<PipelineRecord>> {
        Ok(self.records.read().get(id).cloned())
    }

    async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
        let limit = if filter.limit == 0 {
            DEFAULT_LIST_LIMIT
        } else {
            filter.limit
        };
        // Sort references first and clone only the page.
        let records = self.records.read();
        let mut hits: Vec<&PipelineRecord> =
            records.values().filter(|r| matches(filter, r)).collect();
        hits.sort_unstable_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(hits
            .into_iter()
            .skip(filter.offset)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>> {
        let records = self.records.read();
        let mut counts: Vec<(PipelineStatus, u64)> = Vec::new();
        for status in PipelineStatus::ALL {
            let n = records.values().filter(|r| r.status == status).count() as u64;
            if n > 0 {
                counts.push((status, n));
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn commit(&self, change: StatusChange<'_>) -> Result<()> {
        change.validate()?;
        let ledger = self.ledger_or_create(change.pipeline());
        let mut events = ledger.lock();
        // every check before the first write: a refused commit leaves nothing behind
        let fresh = new_events(&events, change.events.iter())?;
        events.extend(fresh);
        self.save_checkpoint(change.checkpoint);
        self.records
            .write()
            .insert(change.record.id.clone(), change.record.clone());
        Ok(())
    }
}
