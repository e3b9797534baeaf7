//! The pipeline registry: one row per pipeline, indexed by status and creation time.

use chrono::{DateTime, Utc};
use governance_core::{Error, PipelineFilter, PipelineId, PipelineStatus};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::errors::OpError;

/// Page size of [`PipelineFilter::limit`] `0`.
const DEFAULT_LIMIT: usize = 100;

/// `time` as nanoseconds since the epoch (the stored form of every timestamp column).
pub(crate) fn nanos(time: DateTime<Utc>) -> Result<i64, Error> {
    time.timestamp_nanos_opt()
        .ok_or_else(|| Error::InvalidInput(format!("time {time} is out of range")))
}

/// A registry record serialized for the writer.
#[derive(Debug)]
pub(crate) struct RecordRow {
    id: String,
    status: &'static str,
    created_at: i64,
    updated_at: i64,
    record: String,
}

impl RecordRow {
    /// Serializes `record` (compact JSON).
    pub(crate) fn new(record: &governance_core::PipelineRecord) -> Result<Self, Error> {
        Ok(Self {
            id: record.id.to_string(),
            status: record.status.as_str(),
            created_at: nanos(record.created_at)?,
            updated_at: nanos(record.updated_at)?,
            record: serde_json::to_string(record)
                .map_err(|e| Error::Internal(format!("cannot serialize pipeline record: {e}")))?,
        })
    }
}

/// Inserts or replaces the record.
pub(crate) fn upsert(conn: &Connection, row: &RecordRow) -> Result<(), OpError> {
    conn.prepare_cached(
        "INSERT INTO pipelines (id, status, created_at, updated_at, record) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
         created_at = excluded.created_at, updated_at = excluded.updated_at, \
         record = excluded.record",
    )?
    .execute(params![
        row.id,
        row.status,
        row.created_at,
        row.updated_at,
        row.record
    ])?;
    Ok(())
}

/// The stored record JSON of `id`.
pub(crate) fn get(conn: &Connection, id: &PipelineId) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT record FROM pipelines WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
}

/// Record JSONs matching `filter`, newest first (by `created_at`, then id).
pub(crate) fn list(conn: &Connection, filter: &PipelineFilter) -> Result<Vec<String>, OpError> {
    let mut sql = String::from("SELECT record FROM pipelines WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if !filter.statuses.is_empty() {
        sql.push_str(" AND status IN (");
        for (i, status) in filter.statuses.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(Value::Text(status.as_str().to_owned()));
        }
        sql.push(')');
    }
    if let Some(after) = filter.created_after {
        sql.push_str(" AND created_at >= ?");
        args.push(Value::Integer(nanos(after).map_err(OpError::Rejected)?));
    }
    if let Some(before) = filter.created_before {
        sql.push_str(" AND created_at < ?");
        args.push(Value::Integer(nanos(before).map_err(OpError::Rejected)?));
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?");
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    args.push(Value::Integer(
        i64::try_from(filter.offset).unwrap_or(i64::MAX),
    ));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Pipelines per status (statuses with none are left out), in declaration order.
pub(crate) fn count_by_status(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT status, count(*) FROM pipelines GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (status, n) = row?;
        out.push((status, u64::try_from(n).unwrap_or(0)));
    }
    out.sort_by_key(|(s, _)| {
        s.parse::<PipelineStatus>()
            .ok()
            .and_then(|st| PipelineStatus::ALL.iter().position(|s| *s == st))
            .unwrap_or(usize::MAX)
    });
    Ok(out)
}
