//! Recorded LLM exchanges (request and response JSON per call) for record/replay.

use chrono::{DateTime, Utc};
use governance_core::{AgentId, Error, PipelineId};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::errors::OpError;

/// One recorded LLM call of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmExchange {
    /// The calling agent.
    pub agent_id: AgentId,
    /// The request as recorded.
    pub request: serde_json::Value,
    /// The response as recorded.
    pub response: serde_json::Value,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// An exchange serialized for the writer.
#[derive(Debug)]
pub(crate) struct ExchangeRow {
    pipeline_id: String,
    agent_id: String,
    recorded_at: i64,
    request: String,
    response: String,
}

impl ExchangeRow {
    /// Serializes one exchange (compact JSON), stamped now.
    pub(crate) fn new(
        pipeline: &PipelineId,
        agent: &AgentId,
        request: &serde_json::Value,
        response: &serde_json::Value,
    ) -> Result<Self, Error> {
        let json = |v: &serde_json::Value| {
            serde_json::to_string(v)
                .map_err(|e| Error::Internal(format!("cannot serialize LLM exchange: {e}")))
        };
        Ok(Self {
            pipeline_id: pipeline.to_string(),
            agent_id: agent.to_string(),
            recorded_at: crate::registry::nanos(Utc::now())?,
            request: json(request)?,
            response: json(response)?,
        })
    }
}

/// Stores one exchange.
pub(crate) fn insert(conn: &Connection, row: &ExchangeRow) -> Result<(), OpError> {
    conn.prepare_cached(
        "INSERT INTO llm_exchanges (pipeline_id, agent_id, recorded_at, request, response) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        row.pipeline_id,
        row.agent_id,
        row.recorded_at,
        row.request,
        row.response
    ])?;
    Ok(())
}

/// The stored exchanges of `pipeline` in recording order: (agent, recorded_at, request, response).
pub(crate) fn list(
    conn: &Connection,
    pipeline: &PipelineId,
) -> rusqlite::Result<Vec<(String, i64, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT agent_id, recorded_at, request, response FROM llm_exchanges \
         WHERE pipeline_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([pipeline.as_str()], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}
