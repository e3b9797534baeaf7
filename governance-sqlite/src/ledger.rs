//! The hash-chained audit ledger: how an event becomes a row, how a row's hash is computed,
//! and the append rules of [`governance_core::LedgerStore`].
//!
//! # Entry hash
//! `hash = SHA-256(prev_hash ‖ field(pipeline_id) ‖ seq as u64 big-endian ‖ field(type) ‖
//! field(agent_id or "") ‖ ts as i64 nanoseconds big-endian ‖ field(data))`, where
//! `field(x)` is `x`'s UTF-8 length as u32 big-endian followed by its bytes, `prev_hash` is the
//! previous entry's hash (32 zero bytes for `seq` 1) and `data` is the event's `data` object as
//! stored: compact JSON without its `pipeline_id` member (that is a column; it is put back on
//! read). Every column of the row is covered, so any edit breaks the chain.

use std::collections::HashMap;

use governance_core::{Error, Event, PipelineId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::errors::OpError;

pub(crate) use governance_core::{LEDGER_GENESIS as GENESIS, LedgerRow};

/// Most pipelines whose tail [`Tails`] keeps; past it the cache starts over.
const MAX_TAILS: usize = 100_000;

/// The last `(seq, hash)` of recently appended pipelines, kept by the writer so an append
/// needs no read of the ledger. Valid only while no other connection writes: [`Tails::sync`]
/// compares `PRAGMA data_version` at the start of every write transaction and drops the cache
/// when another process committed in between; the writer also drops it when a group commit
/// is rolled back.
#[derive(Debug, Default)]
pub(crate) struct Tails {
    map: HashMap<String, (i64, [u8; 32])>,
    data_version: Option<i64>,
}

impl Tails {
    /// Call inside the write transaction, before the first append of the group.
    pub(crate) fn sync(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.data_version != Some(version) || self.map.len() > MAX_TAILS {
            self.map.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// Forgets everything (after a rollback).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.data_version = None;
    }

    fn get(&self, conn: &Connection, pipeline: &str) -> rusqlite::Result<(i64, [u8; 32])> {
        if let Some(tail) = self.map.get(pipeline) {
            return Ok(*tail);
        }
        let stored = conn
            .prepare_cached(
                "SELECT seq, hash FROM ledger WHERE pipeline_id = ?1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([pipeline], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        Ok(stored.map_or((0, GENESIS), |(seq, hash)| {
            let mut h = [0; 32];
            if hash.len() == 32 {
                h.copy_from_slice(&hash);
            }
            (seq, h)
        }))
    }
}

/// Appends one caller's batch, applying the contract's rules: `seq = last + 1`; an identical
/// existing entry is a no-op; a different one, or a gap, is a conflict. The whole batch is
/// validated before the first insert, so a rejected batch writes nothing (no savepoint needed);
/// an insert can then only fail in SQLite, which rolls the whole group back.
pub(crate) fn append(
    conn: &Connection,
    tails: &mut Tails,
    rows: &[LedgerRow],
) -> Result<(), OpError> {
    let mut pending: HashMap<&str, (i64, [u8; 32])> = HashMap::new();
    let mut inserts: Vec<(&LedgerRow, [u8; 32], [u8; 32])> = Vec::with_capacity(rows.len());
    for row in rows {
        let pid = row.pipeline_id.as_str();
        let (last, prev) = match pending.get(pid) {
            Some(tail) => *tail,
            None => tails.get(conn, pid)?,
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
                None => stored(conn, row)?.as_ref() == Some(row),
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
        pending.insert(pid, (row.seq, hash));
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (row, prev, hash) in &inserts {
        insert.execute(params![
            row.pipeline_id,
            row.seq,
            row.kind,
            row.agent_id,
            row.ts,
            row.data,
            &prev[..],
            &hash[..]
        ])?;
    }
    for (pid, tail) in pending {
        tails.map.insert(pid.to_owned(), tail);
    }
    Ok(())
}

/// The stored entry with `row`'s pipeline and seq.
fn stored(conn: &Connection, row: &LedgerRow) -> rusqlite::Result<Option<LedgerRow>> {
    conn.prepare_cached(
        "SELECT type, agent_id, ts, data FROM ledger WHERE pipeline_id = ?1 AND seq = ?2",
    )?
    .query_row(params![row.pipeline_id, row.seq], |r| {
        Ok(LedgerRow {
            pipeline_id: row.pipeline_id.clone(),
            seq: row.seq,
            kind: r.get(0)?,
            agent_id: r.get(1)?,
            ts: r.get(2)?,
            data: r.get(3)?,
        })
    })
    .optional()
}

fn conflict(pipeline: &str, what: &str) -> OpError {
    OpError::Rejected(Error::Conflict(format!(
        "ledger of pipeline {pipeline}: {what}; nothing of the batch was stored"
    )))
}

/// Events of `pipeline` with `seq > after`, at most `limit`, in `seq` order.
pub(crate) fn read(
    conn: &Connection,
    pipeline: &PipelineId,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<Result<Event, String>>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, type, agent_id, ts, data FROM ledger \
         WHERE pipeline_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![pipeline.as_str(), after, limit], |r| {
        Ok(LedgerRow {
            pipeline_id: pipeline.to_string(),
            seq: r.get(0)?,
            kind: r.get(1)?,
            agent_id: r.get(2)?,
            ts: r.get(3)?,
            data: r.get(4)?,
        })
    })?;
    rows.map(|row| row.map(|row| row.to_event())).collect()
}

/// The highest `seq` stored for `pipeline` (0 when none).
pub(crate) fn last_seq(conn: &Connection, pipeline: &PipelineId) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT max(seq) FROM ledger WHERE pipeline_id = ?1")?
        .query_row([pipeline.as_str()], |r| r.get(0))?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}
