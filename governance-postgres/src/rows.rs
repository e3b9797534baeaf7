//! Checkpoint, registry and exchange rows: how each is serialized and written inside a
//! transaction. Timestamps are nanoseconds since the epoch (`bigint`), as in SQLite.
//!
//! Retention: saving the final checkpoint of a pipeline deletes its intermediate checkpoints
//! in the same transaction; the ledger is never compacted.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use governance_core::{Checkpoint, Error, PipelineId, PipelineRecord};
use sha2::{Digest, Sha256};

use crate::errors::OpError;

/// `time` as nanoseconds since the epoch.
pub(crate) fn nanos(time: DateTime<Utc>) -> Result<i64, Error> {
    time.timestamp_nanos_opt()
        .ok_or_else(|| Error::InvalidInput(format!("time {time} is out of range")))
}

fn json<T: serde::Serialize>(v: &T, what: &str) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("cannot serialize {what}: {e}")))
}

fn digest(parts: &[&str]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(u64::try_from(p.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_vec()
}

/// A checkpoint, serialized.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointRow {
    pub(crate) pipeline_id: String,
    seq: i64,
    status: &'static str,
    is_final: bool,
    created_at: i64,
    digest: Vec<u8>,
    body: String,
}

impl CheckpointRow {
    pub(crate) fn new(checkpoint: &Checkpoint) -> Result<Self, Error> {
        let body = json(checkpoint, "a checkpoint")?;
        Ok(Self {
            pipeline_id: checkpoint.record.id.to_string(),
            seq: i64::try_from(checkpoint.seq).map_err(|_| {
                Error::InvalidInput(format!("checkpoint seq {} is too large", checkpoint.seq))
            })?,
            status: checkpoint.record.status.as_str(),
            is_final: checkpoint.is_final,
            created_at: nanos(checkpoint.created_at)?,
            digest: digest(&[&body]),
            body,
        })
    }

    /// Inserts it unless it is identical to the pipeline's latest (a repeated write); a final
    /// checkpoint deletes the pipeline's intermediate ones.
    pub(crate) async fn save(&self, tx: &Transaction<'_>) -> Result<(), OpError> {
        let q = tx
            .prepare_cached(
                "INSERT INTO checkpoints (pipeline_id, seq, status, is_final, created_at, digest, body) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS ( \
                   SELECT 1 FROM (SELECT seq, digest FROM checkpoints WHERE pipeline_id = $1 \
                                  ORDER BY seq DESC, id DESC LIMIT 1) l \
                   WHERE l.seq = $2 AND l.digest = $6)",
            )
            .await?;
        tx.execute(
            &q,
            &[
                &self.pipeline_id,
                &self.seq,
                &self.status,
                &self.is_final,
                &self.created_at,
                &self.digest,
                &self.body,
            ],
        )
        .await?;
        if self.is_final {
            let d = tx
                .prepare_cached("DELETE FROM checkpoints WHERE pipeline_id = $1 AND NOT is_final")
                .await?;
            tx.execute(&d, &[&self.pipeline_id]).await?;
        }
        Ok(())
    }
}

/// A registry record, serialized.
#[derive(Debug, Clone)]
pub(crate) struct RecordRow {
    pub(crate) id: String,
    status: &'static str,
    created_at: i64,
    updated_at: i64,
    record: String,
}

impl RecordRow {
    pub(crate) fn new(record: &PipelineRecord) -> Result<Self, Error> {
        Ok(Self {
            id: record.id.to_string(),
            status: record.status.as_str(),
            created_at: nanos(record.created_at)?,
            updated_at: nanos(record.updated_at)?,
            record: json(record, "a pipeline record")?,
        })
    }

    /// Inserts or replaces the record.
    pub(crate) async fn upsert(&self, tx: &Transaction<'_>) -> Result<(), OpError> {
        let q = tx
            .prepare_cached(
                "INSERT INTO pipelines (id, status, created_at, updated_at, record) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                 status = EXCLUDED.status, created_at = EXCLUDED.created_at, \
                 updated_at = EXCLUDED.updated_at, record = EXCLUDED.record",
            )
            .await?;
        tx.execute(
            &q,
            &[
                &self.id,
                &self.status,
                &self.created_at,
                &self.updated_at,
                &self.record,
            ],
        )
        .await?;
        Ok(())
    }
}

/// A recorded LLM exchange, serialized; keyed by the digest of its contents, so a repeated
/// write stores it once.
#[derive(Debug, Clone)]
pub(crate) struct ExchangeRow {
    pipeline_id: String,
    agent_id: String,
    recorded_at: i64,
    digest: Vec<u8>,
    request: String,
    response: String,
}

impl ExchangeRow {
    pub(crate) fn new(
        pipeline: &PipelineId,
        agent: &str,
        request: &serde_json::Value,
        response: &serde_json::Value,
    ) -> Result<Self, Error> {
        let request = json(request, "an LLM request")?;
        let response = json(response, "an LLM response")?;
        Ok(Self {
            digest: digest(&[agent, &request, &response]),
            pipeline_id: pipeline.to_string(),
            agent_id: agent.to_owned(),
            recorded_at: nanos(Utc::now())?,
            request,
            response,
        })
    }

    pub(crate) async fn insert(&self, tx: &Transaction<'_>) -> Result<(), OpError> {
        let q = tx
            .prepare_cached(
                "INSERT INTO llm_exchanges (pipeline_id, agent_id, recorded_at, digest, request, response) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline_id, digest) DO NOTHING",
            )
            .await?;
        tx.execute(
            &q,
            &[
                &self.pipeline_id,
                &self.agent_id,
                &self.recorded_at,
                &self.digest,
                &self.request,
                &self.response,
            ],
        )
        .await?;
        Ok(())
    }
}
