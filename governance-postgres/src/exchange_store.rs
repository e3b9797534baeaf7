//! [`governance_core::ExchangeStore`] on [`PgStore`]: recorded LLM exchanges for record and
//! replay. The row layout is SQLite's: `request` holds the `LlmRequest` JSON, `response` the
//! rest of the exchange as one versioned envelope `{"v": 1, "purpose", "attempt", "response",
//! "model_used", "usage", "latency_ms", "ts"}`.

use async_trait::async_trait;
use governance_core::{Error, ExchangeStore, PipelineId, Result};

use crate::PgStore;
use crate::errors::BACKEND;

/// Version of the `response` envelope.
const ENVELOPE_VERSION: u64 = 1;

fn malformed(pipeline: &PipelineId, why: &str) -> Error {
    Error::backend(
        BACKEND,
        format!("recorded LLM exchange of pipeline {pipeline} cannot be read: {why}"),
        false,
    )
}

#[async_trait]
impl ExchangeStore for PgStore {
    async fn record(&self, exchange: &governance_core::LlmExchange) -> Result<()> {
        let mut envelope = serde_json::to_value(exchange)
            .map_err(|e| Error::Internal(format!("cannot serialize an LLM exchange: {e}")))?;
        let serde_json::Value::Object(map) = &mut envelope else {
            return Err(Error::Internal(
                "an LLM exchange is not a JSON object".into(),
            ));
        };
        let request = map.remove("request").unwrap_or_default();
        map.remove("pipeline_id");
        map.remove("agent_id");
        map.insert("v".into(), ENVELOPE_VERSION.into());
        self.record_exchange(
            &exchange.pipeline_id,
            &exchange.agent_id,
            &request,
            &envelope,
        )
        .await
    }

    async fn exchanges(&self, pipeline: &PipelineId) -> Result<Vec<governance_core::LlmExchange>> {
        let rows = self.exchange_rows(pipeline).await?;
        rows.into_iter()
            .map(|(agent, request, response)| {
                let serde_json::Value::Object(mut map) = response else {
                    return Err(malformed(pipeline, "the response is not a JSON object"));
                };
                match map.remove("v").and_then(|v| v.as_u64()) {
                    Some(ENVELOPE_VERSION) => {}
                    other => {
                        return Err(malformed(
                            pipeline,
                            &format!(
                                "envelope version {other:?}, this build reads {ENVELOPE_VERSION}"
                            ),
                        ));
                    }
                }
                map.insert("pipeline_id".into(), pipeline.as_str().into());
                map.insert("agent_id".into(), agent.into());
                map.insert("request".into(), request);
                serde_json::from_value(serde_json::Value::Object(map))
                    .map_err(|e| malformed(pipeline, &e.to_string()))
            })
            .collect()
    }
}
