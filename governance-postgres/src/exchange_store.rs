//! [`governance_core::ExchangeStore`] on [`PgStore`]: recorded LLM exchanges for record and
//! replay. The row layout is SQLite's: `request` holds the `LlmRequest` JSON, `response` the
//! rest of the exchange as one versioned envelope `{"v": 1, "purpose", "attempt", "response",
//! "model_used", "usage", "latency_ms", "ts"}`.

use async_trait::async_trait;
use governance_core::{ExchangeStore, LlmExchange, PipelineId, Result};

use crate::PgStore;
use crate::errors::BACKEND;

#[async_trait]
impl ExchangeStore for PgStore {
    async fn record(&self, exchange: &LlmExchange) -> Result<()> {
        let (request, envelope) = exchange.to_stored()?;
        self.record_exchange(
            &exchange.pipeline_id,
            &exchange.agent_id,
            &request,
            &envelope,
        )
        .await
    }

    async fn exchanges(&self, pipeline: &PipelineId) -> Result<Vec<LlmExchange>> {
        let rows = self.exchange_rows(pipeline).await?;
        rows.into_iter()
            .map(|(agent, request, response)| {
                LlmExchange::from_stored(pipeline, &agent, request, response, BACKEND)
            })
            .collect()
    }
}
