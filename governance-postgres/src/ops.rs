//! One write of the store ([`Job`]) and how it is applied inside a transaction: the
//! pipeline's ledger lock and fencing check first, then its rows. A job refused by the rules
//! (a ledger conflict, a stale fencing token) has written nothing when it returns
//! [`OpError::Rejected`]: the ledger batch is validated in full before its first insert and
//! the fencing check comes before any row.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;
use governance_core::{LedgerRow, Result};

use crate::errors::OpError;
use crate::ledger::{self, Fencing};
use crate::rows::{CheckpointRow, ExchangeRow, RecordRow};

/// What one write stores.
#[derive(Debug)]
pub(crate) enum Op {
    Append(Vec<LedgerRow>),
    Save(CheckpointRow),
    Upsert(RecordRow),
    Commit(Vec<LedgerRow>, CheckpointRow, RecordRow),
    Exchange(ExchangeRow),
}

/// One write with the pipelines it locks and its fencing, and who waits for it.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) pipelines: BTreeSet<String>,
    pub(crate) fencing: Fencing,
    pub(crate) op: Op,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Applies `job` inside `tx`.
pub(crate) async fn apply(tx: &Transaction<'_>, job: &Job) -> Result<(), OpError> {
    if !matches!(job.op, Op::Exchange(_)) {
        ledger::lock_and_fence(tx, &job.pipelines, &job.fencing).await?;
    }
    match &job.op {
        Op::Append(rows) => ledger::append(tx, rows, &job.fencing).await,
        Op::Save(cp) => cp.save(tx).await,
        Op::Upsert(rec) => rec.upsert(tx).await,
        Op::Commit(rows, cp, rec) => {
            ledger::append(tx, rows, &job.fencing).await?;
            cp.save(tx).await?;
            rec.upsert(tx).await
        }
        Op::Exchange(x) => x.insert(tx).await,
    }
}
