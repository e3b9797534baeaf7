//! The single writer thread and its group commit.
//!
//! Every write goes through one channel to one thread that owns the only writing connection.
//! The thread takes whatever is queued (up to [`MAX_BATCH`] jobs), runs all of it in one
//! `BEGIN IMMEDIATE … COMMIT` transaction — a ledger batch is validated in full before its
//! first insert, so one caller's rejected batch (a ledger conflict) writes nothing and fails
//! alone — and answers each caller only after
//! `COMMIT` returned, so `Ok` means durable (`synchronous=FULL`). When SQLite itself fails
//! (disk full, I/O error), the whole transaction is rolled back and every caller of the group
//! gets an error: none of their writes was applied.
//!
//! The thread remembers whether its last transaction failed ([`Writer::failing`]), so a health
//! check can tell a store that cannot write (a full disk) from one that merely answers reads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use governance_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoints::CheckpointRow;
use crate::errors::{BACKEND, OpError, sqlite_error};
use crate::exchanges::ExchangeRow;
use crate::ledger::{LedgerRow, Tails};
use crate::registry::RecordRow;

/// Most jobs committed in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;
/// Jobs that may wait in the queue before callers wait to enqueue (backpressure).
const QUEUE: usize = 8192;

/// One write, prepared (serialized) by the caller before it reaches the writer thread.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Ledger entries of one caller (all or none).
    Append(Vec<LedgerRow>),
    /// A checkpoint (and, when final, the deletion of the pipeline's intermediate ones).
    SaveCheckpoint(CheckpointRow),
    /// A registry record.
    Upsert(RecordRow),
    /// A recorded LLM exchange.
    Exchange(ExchangeRow),
    /// A pipeline state change: its ledger entries, checkpoint and registry row, all or none.
    Transition(Vec<LedgerRow>, CheckpointRow, RecordRow),
    /// A health probe: takes a fresh page and gives it back, so it fails exactly when the file
    /// cannot grow (a full disk, the size cap). Leaves nothing behind.
    Probe,
}

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<()>>,
}

/// The handle callers use to reach the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Why the last transaction failed; `None` once one commits again.
    failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(
        conn: Connection,
        path: Arc<Path>,
    ) -> Result<(Self, std::thread::JoinHandle<()>)> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let failure = Arc::new(Mutex::new(None));
        let health = Health(Arc::clone(&failure));
        let thread = std::thread::Builder::new()
            .name("governance-sqlite-writer".to_owned())
            .spawn(move || run(conn, &path, rx, &health))
            .map_err(|e| {
                Error::backend(
                    BACKEND,
                    format!("cannot start the writer thread: {e}"),
                    true,
                )
            })?;
        Ok((Self { jobs, failure }, thread))
    }

    /// Why the last write transaction failed, while no later one has committed.
    pub(crate) fn failing(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Queues `op` and waits until it is committed (or refused).
    ///
    /// Cancel safety: once queued, the write happens (or not) whether or not the caller waits.
    pub(crate) async fn submit(&self, op: WriteOp) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { op, reply }).await.map_err(|_| {
            Error::backend(
                BACKEND,
                "the writer thread has stopped; nothing was written",
                false,
            )
        })?;
        answer.await.map_err(|_| {
            Error::backend(
                BACKEND,
                "the writer thread stopped before answering; the write may or may not be stored",
                false,
            )
        })?
    }
}

/// The writer thread's side of [`Writer::failing`].
struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    fn set(&self, failure: Option<&Error>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure.map(ToString::to_string);
    }
}

fn run(mut conn: Connection, path: &Path, mut rx: mpsc::Receiver<Job>, health: &Health) {
    let mut batch = Vec::with_capacity(64);
    let mut tails = Tails::default();
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, path, &mut tails, &mut batch, health);
    }
    tracing::debug!(path = %path.display(), "governance-sqlite writer stopped");
}

/// Runs `batch` in one transaction and answers every job. `health` is updated before any job is
/// answered, so a caller that saw its write fail finds the store failing (and one that saw it
/// succeed finds it healthy) when it asks right after.
fn commit_group(
    conn: &mut Connection,
    path: &Path,
    tails: &mut Tails,
    batch: &mut Vec<Job>,
    health: &Health,
) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = sqlite_error(path, "begin a write transaction", &e);
        health.set(Some(&err));
        fail_all(batch, &err);
        return;
    }
    if let Err(e) = tails.sync(conn) {
        return abort(conn, path, tails, batch, &e, health);
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter() {
        // A job refused by the rules (a ledger conflict) wrote nothing: it is validated before
        // its first insert. A SQLite failure aborts the whole group.
        match apply(conn, tails, &job.op) {
            Ok(()) => results.push(Ok(())),
            Err(OpError::Rejected(err)) => results.push(Err(err)),
            Err(OpError::Sqlite(e)) => return abort(conn, path, tails, batch, &e, health),
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            health.set(None);
            for (job, result) in batch.drain(..).zip(results) {
                // The caller may have gone away (cancelled); the write stands either way.
                let _ = job.reply.send(result);
            }
        }
        Err(e) => abort(conn, path, tails, batch, &e, health),
    }
}

fn apply(conn: &Connection, tails: &mut Tails, op: &WriteOp) -> Result<(), OpError> {
    match op {
        WriteOp::Append(rows) => crate::ledger::append(conn, tails, rows),
        WriteOp::SaveCheckpoint(row) => crate::checkpoints::save(conn, row),
        WriteOp::Upsert(row) => crate::registry::upsert(conn, row),
        WriteOp::Exchange(row) => crate::exchanges::insert(conn, row),
        WriteOp::Transition(rows, checkpoint, record) => {
            // the ledger batch is validated before its first insert, so a refused batch leaves
            // nothing behind; the checkpoint and the record are written only after it
            crate::ledger::append(conn, tails, rows)?;
            crate::checkpoints::save(conn, checkpoint)?;
            crate::registry::upsert(conn, record)
        }
        WriteOp::Probe => {
            // a row larger than a page needs a fresh (overflow) page; deleting it in the same
            // transaction returns the page to the free list
            conn.prepare_cached(
                "INSERT INTO llm_exchanges (pipeline_id, agent_id, recorded_at, request, response) \
                 VALUES ('', '', 0, '', zeroblob(8192))",
            )?
            .execute([])?;
            let id = conn.last_insert_rowid();
            conn.prepare_cached("DELETE FROM llm_exchanges WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        }
    }
}

/// Rolls the whole group back, records the failure in `health`, then tells every caller
/// nothing was written.
fn abort(
    conn: &Connection,
    path: &Path,
    tails: &mut Tails,
    batch: &mut Vec<Job>,
    e: &rusqlite::Error,
    health: &Health,
) {
    tails.clear();
    if !conn.is_autocommit()
        && let Err(rollback) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(path = %path.display(), error = %rollback, "rollback failed");
    }
    let err = sqlite_error(path, "write (the group commit was rolled back)", e);
    tracing::warn!(path = %path.display(), error = %err, jobs = batch.len(), "group commit failed");
    health.set(Some(&err));
    fail_all(batch, &err);
}

fn fail_all(batch: &mut Vec<Job>, err: &Error) {
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(err.clone()));
    }
}
