//! [`governance_core::ExchangeStore`] on [`SqliteStore`]: recorded LLM exchanges for record and
//! replay, on top of [`SqliteStore::record_exchange`] / [`SqliteStore::exchanges`].
//!
//! ## Mapping
//! A row's `pipeline_id` and `agent_id` columns hold the exchange's ids, `request` holds the
//! exchange's `request` (the `LlmRequest` JSON) and `response` holds everything else of a
//! [`governance_core::LlmExchange`] as one JSON object with a version field:
//! `{"v": 1, "purpose", "attempt", "response": {"ok": …} | {"err": …} | "abandoned",
//! "model_used", "usage", "latency_ms", "ts"}`.
//!
//! `SqliteStore` has inherent methods named like the trait's (`exchanges`), which return the
//! raw rows; call the trait's through `ExchangeStore::exchanges(&store, &id)` or an
//! `Arc<dyn ExchangeStore>`.

use async_trait::async_trait;
use governance_core::{ExchangeStore, LlmExchange, PipelineId, Result};

use crate::SqliteStore;

#[async_trait]
impl ExchangeStore for SqliteStore {
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
        let rows = SqliteStore::exchanges(self, pipeline).await?;
        rows.into_iter()
            .map(|row| {
                LlmExchange::from_stored(
                    pipeline,
                    row.agent_id.as_str(),
                    row.request,
                    row.response,
                    "sqlite",
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use governance_core::{
        ChatMessage, Error, ExchangeOutcome, ExchangeStore, FinishReason, LlmExchange, LlmFailure,
        LlmRequest, LlmResponse, PipelineId, Purpose, RequestMeta, Usage,
    };

    use crate::SqliteStore;

    fn request(attempt: u32) -> LlmRequest {
        LlmRequest {
            model: Some("anthropic/claude-sonnet-4".into()),
            fallback_models: Vec::new(),
            messages: vec![ChatMessage::system("rules"), ChatMessage::user("objective")].into(),
            max_tokens: 256,
            temperature: 0.2,
            response_format: governance_core::ResponseFormat::JsonObject,
            meta: RequestMeta {
                pipeline_id: PipelineId::new("p-1").unwrap(),
                agent_id: governance_core::AgentId::new("BETA").unwrap(),
                purpose: Purpose::Evaluate,
                attempt,
            },
        }
    }

    #[tokio::test]
    async fn exchanges_round_trip_through_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let ok = LlmExchange::new(
            &request(0),
            ExchangeOutcome::Ok(LlmResponse {
                content: "{\"approve\": true}".into(),
                model: "anthropic/claude-sonnet-4-20250514".into(),
                usage: Usage {
                    prompt_tokens: 120,
                    completion_tokens: 30,
                    cost_usd: Some(0.0021),
                },
                finish_reason: FinishReason::Stop,
                latency: Duration::from_millis(812),
                format_fallback: None,
            }),
            "default",
            Duration::from_millis(815),
        );
        let failed = LlmExchange::new(
            &request(1),
            ExchangeOutcome::Err(
                (&Error::Llm(LlmFailure {
                    status: Some(429),
                    provider_code: None,
                    message: "rate limited".into(),
                    retryable: true,
                    retry_after: Some(Duration::from_secs(1)),
                }))
                    .into(),
            ),
            "default",
            Duration::from_millis(40),
        );
        let abandoned = LlmExchange::new(
            &request(2),
            ExchangeOutcome::Abandoned,
            "default",
            Duration::ZERO,
        );
        let dyn_store: Arc<dyn ExchangeStore> = store.clone();
        for x in [&ok, &failed, &abandoned] {
            dyn_store.record(x).await.unwrap();
        }
        drop((store, dyn_store));

        let reopened = SqliteStore::open(&path).await.unwrap();
        let id = PipelineId::new("p-1").unwrap();
        let back = ExchangeStore::exchanges(&reopened, &id).await.unwrap();
        assert_eq!(back.len(), 3);
        // timestamps keep their precision through JSON; compare everything
        assert_eq!(back, vec![ok, failed, abandoned]);
        let e = back[1].result().unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        let none = ExchangeStore::exchanges(&reopened, &PipelineId::new("p-2").unwrap())
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}
