//! Group commit: the store's writes are queued to a few writer tasks (by pipeline, so one
//! pipeline's writes stay in order on one writer and two writers never wait for each other's
//! ledger locks); each writer takes whatever is queued (up to [`MAX_GROUP`] jobs) and runs it
//! in one transaction, one WAL flush for the whole group, then answers every caller after
//! `COMMIT`. A job refused by the rules fails alone (it wrote nothing, see [`crate::ops`]);
//! a database failure rolls the whole group back: a transient one (a lost connection) is
//! ridden out by repeating the group on a fresh connection (every write is idempotent), any
//! other fails every job of the group.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::future::join_all;

use governance_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use deadpool_postgres::Transaction;

use crate::db::{Db, Retry};
use crate::errors::{BACKEND, OpError};
use crate::ops::{Job, apply};

/// Most jobs committed in one transaction.
const MAX_GROUP: usize = 256;
/// Jobs one writer may have queued before callers wait to enqueue (backpressure).
const QUEUE: usize = 4096;

/// The writers' queues.
#[derive(Debug)]
pub(crate) struct Groups {
    shards: Vec<mpsc::Sender<Job>>,
}

impl Groups {
    /// Starts `writers` writer tasks on `db`'s pool (they end when the last handle goes).
    pub(crate) fn start(db: &Db, writers: usize) -> Self {
        let shards = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(db.clone(), rx));
                tx
            })
            .collect();
        Self { shards }
    }

    /// Queues `job` on its pipeline's writer and waits until it is committed (or refused).
    pub(crate) async fn submit(
        &self,
        job_of: impl FnOnce(oneshot::Sender<Result<()>>) -> Job,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let job = job_of(reply);
        let mut h = DefaultHasher::new();
        job.pipelines.first().hash(&mut h);
        let shard = usize::try_from(h.finish() % self.shards.len() as u64).unwrap_or(0);
        self.shards[shard].send(job).await.map_err(|_| {
            Error::backend(
                BACKEND,
                "the writer has stopped; nothing was written",
                false,
            )
        })?;
        answer.await.map_err(|_| {
            Error::backend(
                BACKEND,
                "the writer stopped before answering; the write may or may not be stored",
                false,
            )
        })?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(64);
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_group(&db, &mut batch).await;
    }
}

/// Runs `batch` in one transaction (repeated on transient failures) and answers every job.
async fn commit_group(db: &Db, batch: &mut Vec<Job>) {
    let doing = "write (group commit)";
    let mut retry = Retry::new(db.outage);
    loop {
        let attempt = async {
            let mut client = db.pool.get().await?;
            let tx = client.transaction().await?;
            let results = run_jobs(&tx, batch).await?;
            tx.commit().await?;
            Ok::<_, OpError>(results)
        };
        match attempt.await {
            Ok(results) => {
                retry.done((), &db.target, doing);
                for (job, result) in batch.drain(..).zip(results) {
                    // the caller may have gone away (cancelled); the write stands either way
                    let _ = job.reply.send(result);
                }
                return;
            }
            Err(e) => {
                if let Err(err) = retry.again(e, &db.target, doing).await {
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(err.clone()));
                    }
                    return;
                }
            }
        }
    }
}

/// Applies every job of the group: one pipeline's jobs in order, different pipelines' jobs
/// pipelined on the connection (tokio-postgres sends the statements of concurrent futures
/// without waiting for each answer). Each job's own refusal is its result; a database
/// failure is the group's.
async fn run_jobs(tx: &Transaction<'_>, batch: &[Job]) -> Result<Vec<Result<()>>, OpError> {
    let mut chains: BTreeMap<Option<&String>, Vec<usize>> = BTreeMap::new();
    for (i, job) in batch.iter().enumerate() {
        chains.entry(job.pipelines.first()).or_default().push(i);
    }
    let done = join_all(chains.into_values().map(|chain| async move {
        let mut out = Vec::with_capacity(chain.len());
        for i in chain {
            match apply(tx, &batch[i]).await {
                Ok(()) => out.push((i, Ok(()))),
                Err(OpError::Rejected(e)) => out.push((i, Err(e))),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }))
    .await;
    // when a statement failed, the other chains' statements answer "current transaction is
    // aborted" (25P02): report the failure itself
    let mut failed: Option<OpError> = None;
    let mut results: Vec<Result<()>> = (0..batch.len()).map(|_| Ok(())).collect();
    for chain in done {
        match chain {
            Ok(out) => {
                for (i, r) in out {
                    results[i] = r;
                }
            }
            Err(e) => {
                if failed.is_none() || (!is_aborted(&e) && failed.as_ref().is_some_and(is_aborted))
                {
                    failed = Some(e);
                }
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

fn is_aborted(e: &OpError) -> bool {
    matches!(e, OpError::Pg(pg) if pg.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION))
}
