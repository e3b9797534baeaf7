//! Checkpoint rows and the retention rule.
//!
//! Retention: saving the final checkpoint of a pipeline deletes that pipeline's intermediate
//! checkpoints in the same transaction, so a finished pipeline keeps exactly its final
//! checkpoint(s). The ledger is never compacted.

use governance_core::{Checkpoint, Error, PipelineId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::errors::OpError;

/// A checkpoint serialized for the writer.
#[derive(Debug)]
pub(crate) struct CheckpointRow {
    pipeline_id: String,
    seq: i64,
    status: &'static str,
    is_final: bool,
    created_at: i64,
    body: String,
}

impl CheckpointRow {
    /// Serializes `checkpoint` (compact JSON).
    pub(crate) fn new(checkpoint: &Checkpoint) -> Result<Self, Error> {
        Ok(Self {
            pipeline_id: checkpoint.record.id.to_string(),
            seq: i64::try_from(checkpoint.seq).map_err(|_| {
                Error::InvalidInput(format!("checkpoint seq {} is too large", checkpoint.seq))
            })?,
            status: checkpoint.record.status.as_str(),
            is_final: checkpoint.is_final,
            created_at: crate::registry::nanos(checkpoint.created_at)?,
            body: serde_json::to_string(checkpoint)
                .map_err(|e| Error::Internal(format!("cannot serialize checkpoint: {e}")))?,
        })
    }
}

/// Inserts the checkpoint; a final one deletes the pipeline's intermediate checkpoints.
pub(crate) fn save(conn: &Connection, row: &CheckpointRow) -> Result<(), OpError> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (pipeline_id, seq, status, is_final, created_at, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        row.pipeline_id,
        row.seq,
        row.status,
        row.is_final,
        row.created_at,
        row.body
    ])?;
    if row.is_final {
        conn.prepare_cached("DELETE FROM checkpoints WHERE pipeline_id = ?1 AND is_final = 0")?
            .execute([&row.pipeline_id])?;
    }
    Ok(())
}

/// The body of the checkpoint with the highest `seq` (the last saved on ties).
pub(crate) fn latest(conn: &Connection, pipeline: &PipelineId) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT body FROM checkpoints WHERE pipeline_id = ?1 ORDER BY seq DESC, id DESC LIMIT 1",
    )?
    .query_row([pipeline.as_str()], |r| r.get(0))
    .optional()
}

/// How many checkpoints `pipeline` has.
pub(crate) fn count(conn: &Connection, pipeline: &PipelineId) -> rusqlite::Result<usize> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM checkpoints WHERE pipeline_id = ?1")?
        .query_row([pipeline.as_str()], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}
