//! The archiver of cluster mode: copies every pipeline this node finishes from the shared
//! [`RedisStore`] into a long-term archive (any store with the core ledger, checkpoint and
//! registry traits; the example server uses its SQLite file) and, after a while, the finished
//! pipelines of nodes that died before they archived them (`gov:unarchived`).

use std::sync::Arc;
use std::time::Duration;

use governance_core::{
    CheckpointStore, Event, PipelineId, PipelineRegistry, Result, StateStore, StatusChange,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::conn::corrupt;
use crate::store::RedisStore;

/// Ledger entries copied per transaction of the archive.
const CHUNK: usize = 500;

/// Copies finished pipelines from the shared [`RedisStore`] into this node's archive `A`.
///
/// Run it with the ids of the pipelines this node finishes
/// ([`RedisLeases::on_finished`](crate::RedisLeases::on_finished)). A pipeline is archived by
/// one node at a time (a claim of `4 × lease` on `gov:{P}:archiving`), marked archived
/// (`gov:{P}:archived`) and taken off the queue. Every `lease` it also sweeps the queue for
/// pipelines finished more than `2 × lease` ago that no node archived. Failures are logged and
/// the pipeline stays queued for a later sweep.
#[derive(Debug)]
pub struct Archiver<A> {
    store: RedisStore,
    archive: Option<Arc<A>>,
    node: String,
    lease: Duration,
}

impl<A> Archiver<A>
where
    A: StateStore + 'static,
{
    /// An archiver for the node `node` with lease `lease` ([`RedisLeases::lease`](crate::RedisLeases::lease)).
    /// With no archive (`None`) it only drains the finished ids: nodes with one archive them.
    #[must_use]
    pub fn new(store: RedisStore, archive: Option<Arc<A>>, node: &str, lease: Duration) -> Self {
        Self {
            store,
            archive,
            node: node.to_owned(),
            lease,
        }
    }

    /// Archives the pipelines of `finished` as they come, sweeps the queue every `lease`,
    /// and returns when `finished` closes or `cancel` fires (after archiving what is still
    /// in `finished`).
    pub async fn run(self, mut finished: UnboundedReceiver<PipelineId>, cancel: CancellationToken) {
        let Some(archive) = self.archive.clone() else {
            // no archive on this node (GOVERNANCE_DB=memory): nodes with one pick these up
            while finished.recv().await.is_some() {}
            return;
        };
        let mut sweep = tokio::time::interval(self.lease);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                id = finished.recv() => match id {
                    Some(id) => self.one(&archive, id).await,
                    None => break,
                },
                _ = sweep.tick() => {
                    // finished by a node that died before archiving them
                    match self.store.unarchived(self.lease * 2).await {
                        Ok(ids) => for id in ids { self.one(&archive, id).await },
                        Err(e) => tracing::warn!(error = %e, "reading the archive queue failed"),
                    }
                }
                () = cancel.cancelled() => break,
            }
        }
        // archive what finished during shutdown
        while let Ok(id) = finished.try_recv() {
            self.one(&archive, id).await;
        }
    }

    /// Claims, copies and dequeues one finished pipeline (unless another node has it).
    async fn one(&self, archive: &A, id: PipelineId) {
        let (store, node) = (&self.store, self.node.as_str());
        match store.claim_archive(&id, node, self.lease * 4).await {
            Ok(true) => {}
            Ok(false) => return, // another node is archiving it now
            Err(e) => {
                tracing::warn!(pipeline_id = %id, error = %e, "archive claim failed");
                return;
            }
        }
        match store.archived_by(&id).await {
            Ok(Some(by)) => {
                // archived already (by a node that died before dequeueing it)
                let _ = store.archived(&id, &by).await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pipeline_id = %id, error = %e, "archive check failed");
                return;
            }
        }
        match archive_pipeline(store, archive, &id).await {
            Ok(()) => {
                if let Err(e) = store.archived(&id, node).await {
                    tracing::warn!(pipeline_id = %id, error = %e, "could not dequeue an archived pipeline");
                }
            }
            Err(e) => {
                tracing::warn!(pipeline_id = %id, error = %e, "could not archive a finished pipeline");
            }
        }
    }
}

/// Copies a finished pipeline from the shared Redis store into `archive`: its ledger entries
/// (a ledger with the same hash chain, such as SQLite's, recomputes the same hashes), its
/// final checkpoint and its record. Idempotent: entries already archived are skipped.
///
/// # Errors
/// Either store fails, or a stored ledger entry is corrupt.
pub async fn archive_pipeline<A>(store: &RedisStore, archive: &A, id: &PipelineId) -> Result<()>
where
    A: StateStore + ?Sized,
{
    let have = archive.last_seq(id).await?;
    let events: Vec<Event> = store
        .entries(id)
        .await?
        .into_iter()
        .filter(|e| u64::try_from(e.seq).unwrap_or(0) > have)
        .map(|e| {
            e.row(id.as_str())
                .to_event()
                .map_err(|m| corrupt("ledger entry", m))
        })
        .collect::<Result<_>>()?;
    let checkpoint = store.latest(id).await?;
    let record = store.get(id).await?;
    // the last chunk goes in one transaction with the final checkpoint and the record, so an
    // archive never shows a finished pipeline's full ledger without its record
    let last = events.len().saturating_sub(CHUNK);
    for chunk in events[..last].chunks(CHUNK) {
        archive.append(chunk).await?;
    }
    let tail = &events[last..];
    match (&checkpoint, &record) {
        (Some(checkpoint), Some(record)) => {
            archive
                .commit(StatusChange {
                    events: tail,
                    checkpoint,
                    record,
                })
                .await
        }
        // not a whole state (never for a finished pipeline): copy what there is
        (checkpoint, record) => {
            archive.append(tail).await?;
            if let Some(cp) = checkpoint {
                archive.save(cp).await?;
            }
            if let Some(rec) = record {
                archive.upsert(rec).await?;
            }
            Ok(())
        }
    }
}
