//! The hash-chained audit ledger: how an event becomes a row, how a row's hash is computed,
//! and the append rules of [`governance_core::LedgerStore`].
//!
//! # Entry hash
//! `hash = SHA-256(prev_hash ‖ field(pipeline_id) ‖ seq as u64 big-endian ‖ field(type) ‖
//! field(agent_id or "") ‖ ts as i64 nanoseconds big-endian ‖ field(data))`, where
//! `field(x)` is `x`'s UTF-8 length as u32 big-endian followed by its bytes, `prev_hash` is the
//! previous entry's hash (32 zero bytes for `seq` 1) and `data` is the event's `data` object as
//! stored (compact JSON). Every column of the row is covered, so any edit breaks the chain.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use governance_core::{Error, Event, EventKind, PipelineId};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::writer::OpError;

/// The `prev_hash` of the first entry of a pipeline.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// One ledger row, ready to be hashed and inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerRow {
    pub(crate) pipeline_id: String,
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) agent_id: Option<String>,
    pub(crate) ts: i64,
    pub(crate) data: String,
}

impl LedgerRow {
    /// The row of `event` (its `data` as compact JSON, its time in nanoseconds).
    pub(crate) fn from_event(event: &Event) -> Result<Self, Error> {
        let seq = i64::try_from(event.seq)
            .map_err(|_| Error::InvalidInput(format!("event seq {} is too large", event.seq)))?;
        let ts = event.ts.timestamp_nanos_opt().ok_or_else(|| {
            Error::InvalidInput(format!("event time {} is out of range", event.ts))
        })?;
        let kind = event.kind.type_name();
        let tagged = serde_json::to_string(&event.kind)
            .map_err(|e| Error::Internal(format!("cannot serialize event: {e}")))?;
        // Adjacently tagged: `{"type":"<kind>","data":<data>}`.
        let prefix = format!("{{\"type\":\"{kind}\",\"data\":");
        let data = tagged
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix('}'))
            .ok_or_else(|| Error::Internal(format!("unexpected event JSON shape: {tagged}")))?;
        Ok(Self {
            pipeline_id: event.pipeline_id().to_string(),
            seq,
            kind: kind.to_owned(),
            agent_id: event.kind.agent_id().map(ToString::to_string),
            ts,
            data: data.to_owned(),
        })
    }

    /// The event this row stores.
    pub(crate) fn to_event(&self) -> Result<Event, String> {
        let kind_json = serde_json::to_string(&self.kind).map_err(|e| e.to_string())?;
        let kind: EventKind =
            serde_json::from_str(&format!("{{\"type\":{kind_json},\"data\":{}}}", self.data))
                .map_err(|e| format!("entry {} of {}: {e}", self.seq, self.pipeline_id))?;
        Ok(Event {
            seq: u64::try_from(self.seq).map_err(|e| e.to_string())?,
            ts: DateTime::<Utc>::from_timestamp_nanos(self.ts),
            kind,
        })
    }

    /// The entry hash chained on `prev` (see the module docs).
    pub(crate) fn hash(&self, prev: &[u8]) -> [u8; 32] {
        fn field(h: &mut Sha256, s: &str) {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            h.update(len.to_be_bytes());
            h.update(s.as_bytes());
        }
        let mut h = Sha256::new();
        h.update(prev);
        field(&mut h, &self.pipeline_id);
        h.update(self.seq.to_be_bytes());
        field(&mut h, &self.kind);
        field(&mut h, self.agent_id.as_deref().unwrap_or(""));
        h.update(self.ts.to_be_bytes());
        field(&mut h, &self.data);
        h.finalize().into()
    }
}

/// Appends one caller's batch inside the current savepoint, applying the contract's rules:
/// `seq = last + 1`; an identical existing entry is a no-op; a different one, or a gap, is a
/// conflict (the caller rolls the savepoint back, so nothing of the batch is stored).
pub(crate) fn append(conn: &Connection, rows: &[LedgerRow]) -> Result<(), OpError> {
    let mut tails: HashMap<&str, (i64, Vec<u8>)> = HashMap::new();
    let mut tail_stmt = conn.prepare_cached(
        "SELECT seq, hash FROM ledger WHERE pipeline_id = ?1 ORDER BY seq DESC LIMIT 1",
    )?;
    let mut existing_stmt = conn.prepare_cached(
        "SELECT type, agent_id, ts, data FROM ledger WHERE pipeline_id = ?1 AND seq = ?2",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for row in rows {
        let pid = row.pipeline_id.as_str();
        if !tails.contains_key(pid) {
            let tail = tail_stmt
                .query_row([pid], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
                .unwrap_or((0, GENESIS.to_vec()));
            tails.insert(pid, tail);
        }
        let (last, prev) = tails
            .get_mut(pid)
            .ok_or_else(|| OpError::Rejected(Error::Internal("ledger tail missing".to_owned())))?;
        if row.seq < 1 {
            return Err(conflict(
                pid,
                &format!("seq {} is invalid (seq starts at 1)", row.seq),
            ));
        }
        if row.seq <= *last {
            let stored = existing_stmt
                .query_row(params![pid, row.seq], |r| {
                    Ok(LedgerRow {
                        pipeline_id: row.pipeline_id.clone(),
                        seq: row.seq,
                        kind: r.get(0)?,
                        agent_id: r.get(1)?,
                        ts: r.get(2)?,
                        data: r.get(3)?,
                    })
                })
                .optional()?;
            if stored.as_ref() != Some(row) {
                return Err(conflict(
                    pid,
                    &format!("seq {} is already stored with a different event", row.seq),
                ));
            }
            continue;
        }
        if row.seq != *last + 1 {
            return Err(conflict(
                pid,
                &format!("seq {} would leave a gap after seq {last}", row.seq),
            ));
        }
        let hash = row.hash(prev);
        insert.execute(params![
            pid,
            row.seq,
            row.kind,
            row.agent_id,
            row.ts,
            row.data,
            &prev[..],
            &hash[..]
        ])?;
        *last = row.seq;
        *prev = hash.to_vec();
    }
    Ok(())
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
