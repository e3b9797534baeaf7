//! The hash-chained audit ledger on PostgreSQL: the append rules of
//! [`governance_core::LedgerStore`] inside one transaction, the fencing check, and the
//! notifications other nodes relay (cluster mode).
//!
//! The entry hash is [`governance_core::chain`]'s (the same as SQLite's and Redis's), so
//! `ledger verify` agrees across backends and entries can be copied between them.
//!
//! Concurrency: an append first takes `pg_advisory_xact_lock(LEDGER_LOCK, hashtext(pipeline))`
//! for each pipeline of its batch (in sorted order, so two batches never deadlock), then reads
//! the pipeline's tail; two writers of one pipeline therefore queue, and the second sees the
//! first one's rows (READ COMMITTED takes a new snapshot per statement). A hash collision of
//! two pipeline ids only makes them queue behind each other.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Transaction;
use governance_core::{Error, Event, LEDGER_GENESIS as GENESIS, LedgerRow, PipelineId};
use serde::{Deserialize, Serialize};

use crate::errors::OpError;

/// Advisory lock class of a pipeline's ledger tail.
const LEDGER_LOCK: i32 = 0x676f_7632;

/// Where a fenced write checks its token, and who it is for relayed notifications.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fencing {
    /// `(pipeline, token)` pairs the write must hold.
    pub(crate) tokens: Vec<(String, i64)>,
    /// The channel and node for notifications of appended events (cluster mode).
    pub(crate) notify: Option<(String, String)>,
}

/// What a notification of appended events says (the events themselves are read from the
/// ledger by the node that relays them; a notification's payload is limited to 8000 bytes).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Appended {
    /// The node that appended them.
    pub(crate) node: String,
    /// The pipeline.
    pub(crate) pipeline: String,
    /// The first `seq` appended.
    pub(crate) from: i64,
    /// The last `seq` appended.
    pub(crate) to: i64,
}

/// Locks the pipelines' ledgers and checks the writer's fencing tokens. Call first in every
/// write transaction of a pipeline.
pub(crate) async fn lock_and_fence(
    tx: &Transaction<'_>,
    pipelines: &BTreeSet<String>,
    fencing: &Fencing,
) -> Result<(), OpError> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .await?;
    for p in pipelines {
        tx.execute(&lock, &[&LEDGER_LOCK, p]).await?;
    }
    if fencing.tokens.is_empty() {
        return Ok(());
    }
    // FOR SHARE: a takeover (an UPDATE of the lease row) waits until this write commits,
    // and every write after it sees the new token
    let check = tx
        .prepare_cached("SELECT token FROM leases WHERE pipeline_id = $1 FOR SHARE")
        .await?;
    for (p, token) in &fencing.tokens {
        let held: Option<i64> = tx.query_opt(&check, &[p]).await?.map(|r| r.get(0));
        if held != Some(*token) {
            return Err(OpError::Rejected(Error::Fenced {
                pipeline: p.clone(),
            }));
        }
    }
    Ok(())
}

/// Appends one batch with the contract's rules: `seq = last + 1`; an identical existing
/// entry is a no-op; a different one, or a gap, is a conflict and nothing of the batch is
/// stored. The caller holds the pipelines' locks ([`lock_and_fence`]).
pub(crate) async fn append(
    tx: &Transaction<'_>,
    rows: &[LedgerRow],
    fencing: &Fencing,
) -> Result<(), OpError> {
    let tail_q = tx
        .prepare_cached(
            "SELECT seq, hash FROM ledger WHERE pipeline_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .await?;
    let mut tails: HashMap<&str, (i64, [u8; 32])> = HashMap::new();
    let mut inserts: Vec<(&LedgerRow, [u8; 32], [u8; 32])> = Vec::with_capacity(rows.len());
    for row in rows {
        let pid = row.pipeline_id.as_str();
        let (last, prev) = match tails.get(pid) {
            Some(t) => *t,
            None => {
                let stored = tx.query_opt(&tail_q, &[&pid]).await?;
                let t = stored.map_or((0, GENESIS), |r| {
                    (r.get::<_, i64>(0), to32(r.get::<_, &[u8]>(1)))
                });
                tails.insert(pid, t);
                t
            }
        };
        if row.seq < 1 {
            return Err(conflict(
                pid,
                &format!("seq {} is invalid (seq starts at 1)", row.seq),
            ));
        }
        if row.seq <= last {
            let same = match inserts
                .iter()
                .find(|(r, ..)| r.pipeline_id == pid && r.seq == row.seq)
            {
                Some((r, ..)) => *r == row,
                None => stored(tx, row).await?.as_ref() == Some(row),
            };
            if !same {
                return Err(conflict(
                    pid,
                    &format!("seq {} is already stored with a different event", row.seq),
                ));
            }
            continue;
        }
        if row.seq != last + 1 {
            return Err(conflict(
                pid,
                &format!("seq {} would leave a gap after seq {last}", row.seq),
            ));
        }
        let hash = row.hash(&prev);
        inserts.push((row, prev, hash));
        tails.insert(pid, (row.seq, hash));
    }
    if inserts.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], \
             $6::text[], $7::bytea[], $8::bytea[])",
        )
        .await?;
    let pids: Vec<&str> = inserts
        .iter()
        .map(|(r, ..)| r.pipeline_id.as_str())
        .collect();
    let kinds: Vec<&str> = inserts.iter().map(|(r, ..)| r.kind.as_str()).collect();
    let datas: Vec<&str> = inserts.iter().map(|(r, ..)| r.data.as_str()).collect();
    let seqs: Vec<i64> = inserts.iter().map(|(r, ..)| r.seq).collect();
    let agents: Vec<Option<&str>> = inserts
        .iter()
        .map(|(r, ..)| r.agent_id.as_deref())
        .collect();
    let tss: Vec<i64> = inserts.iter().map(|(r, ..)| r.ts).collect();
    let prevs: Vec<Vec<u8>> = inserts.iter().map(|(_, p, _)| p.to_vec()).collect();
    let hashes: Vec<Vec<u8>> = inserts.iter().map(|(_, _, h)| h.to_vec()).collect();
    tx.execute(
        &insert,
        &[&pids, &seqs, &kinds, &agents, &tss, &datas, &prevs, &hashes],
    )
    .await?;
    if let Some((channel, node)) = &fencing.notify {
        notify(tx, channel, node, &inserts).await?;
    }
    Ok(())
}

/// One notification per pipeline of the new entries (delivered at `COMMIT`, never for a
/// rolled-back write).
async fn notify(
    tx: &Transaction<'_>,
    channel: &str,
    node: &str,
    inserts: &[(&LedgerRow, [u8; 32], [u8; 32])],
) -> Result<(), OpError> {
    let mut spans: Vec<Appended> = Vec::new();
    for (row, ..) in inserts {
        match spans.iter_mut().find(|a| a.pipeline == row.pipeline_id) {
            Some(a) => a.to = a.to.max(row.seq),
            None => spans.push(Appended {
                node: node.to_owned(),
                pipeline: row.pipeline_id.clone(),
                from: row.seq,
                to: row.seq,
            }),
        }
    }
    let q = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    for a in spans {
        let payload = serde_json::to_string(&a)
            .map_err(|e| Error::Internal(format!("cannot encode a notification: {e}")))?;
        tx.execute(&q, &[&channel, &payload]).await?;
    }
    Ok(())
}

fn to32(v: &[u8]) -> [u8; 32] {
    let mut h = [0; 32];
    if v.len() == 32 {
        h.copy_from_slice(v);
    }
    h
}

/// The stored entry with `row`'s pipeline and seq.
async fn stored(tx: &Transaction<'_>, row: &LedgerRow) -> Result<Option<LedgerRow>, OpError> {
    let q = tx
        .prepare_cached(
            "SELECT type, agent_id, ts, data FROM ledger WHERE pipeline_id = $1 AND seq = $2",
        )
        .await?;
    Ok(tx
        .query_opt(&q, &[&row.pipeline_id, &row.seq])
        .await?
        .map(|r| LedgerRow {
            pipeline_id: row.pipeline_id.clone(),
            seq: row.seq,
            kind: r.get(0),
            agent_id: r.get(1),
            ts: r.get(2),
            data: r.get(3),
        }))
}

fn conflict(pipeline: &str, what: &str) -> OpError {
    OpError::Rejected(Error::Conflict(format!(
        "ledger of pipeline {pipeline}: {what}; nothing of the batch was stored"
    )))
}

/// Events of `pipeline` with `seq > after`, at most `limit`, in `seq` order.
pub(crate) async fn read(
    client: &tokio_postgres::Client,
    pipeline: &PipelineId,
    after: u64,
    limit: usize,
) -> Result<Vec<Result<Event, String>>, OpError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT seq, type, agent_id, ts, data FROM ledger \
             WHERE pipeline_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&pipeline.as_str(), &after, &limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            LedgerRow {
                pipeline_id: pipeline.to_string(),
                seq: r.get(0),
                kind: r.get(1),
                agent_id: r.get(2),
                ts: r.get(3),
                data: r.get(4),
            }
            .to_event()
        })
        .collect())
}
