//! [`LlmClient`] for [`OpenRouterClient`]: the plain call and the streaming one
//! ([`crate::streaming`]), both on the client's transport ([`crate::client`]) and both through
//! the answer-format fallback ([`crate::structured`]).

use std::time::Instant;

use async_trait::async_trait;
use governance_core::DeltaSink;
use governance_core::{Error, LlmClient, LlmRequest, LlmResponse, Result};

use crate::client::{OpenRouterClient, log_outcome};
use crate::failure;
use crate::wire::{self, ChatResponse};

/// Turns a parsed 2xx body into a response or the error it carries.
fn into_response(
    parsed: ChatResponse,
    request: &LlmRequest,
    requested_model: &str,
    started: Instant,
) -> Result<LlmResponse> {
    if let Some(e) = &parsed.error {
        return Err(failure::from_error_object(e));
    }
    let Some(choice) = parsed.choices.into_iter().next() else {
        return Err(Error::MalformedOutput(
            "OpenRouter answered with no choices".to_owned(),
        ));
    };
    if choice.finish_reason.as_deref() == Some("error") {
        let e = choice.error.unwrap_or_default();
        return Err(failure::from_error_object(&e));
    }
    let content = choice.message.and_then(|m| m.content).unwrap_or_default();
    let finish_reason = wire::finish_reason(choice.finish_reason.as_deref());
    if content.trim().is_empty() {
        return Err(Error::MalformedOutput(format!(
            "the model returned empty content (finish_reason {finish_reason:?})"
        )));
    }
    let usage = wire::usage(parsed.usage, request, &content);
    Ok(LlmResponse {
        model: parsed.model.unwrap_or_else(|| requested_model.to_owned()),
        usage,
        finish_reason,
        latency: started.elapsed(),
        content,
        format_fallback: None,
    })
}

#[async_trait]
impl LlmClient for OpenRouterClient {
    fn name(&self) -> &str {
        "openrouter"
    }

    fn default_model(&self) -> &str {
        &self.config().model
    }

    fn price(&self, model: &str) -> Option<governance_core::ModelPrice> {
        self.model_price(model)
    }

    #[tracing::instrument(name = "openrouter.complete", skip_all, fields(
        pipeline_id = %request.meta.pipeline_id,
        agent_id = %request.meta.agent_id,
        model = request.model.as_deref().unwrap_or(&self.config().model),
    ))]
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        crate::structured::complete(self, request, None).await
    }

    async fn complete_streaming(
        &self,
        request: &LlmRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<LlmResponse> {
        crate::structured::complete(self, request, Some(on_delta)).await
    }
}

impl OpenRouterClient {
    /// One plain (non-streaming) send in the request's own format.
    pub(crate) async fn complete_once(&self, request: &LlmRequest) -> Result<LlmResponse> {
        let model = request.model.as_deref().unwrap_or(&self.config().model);
        let started = Instant::now();
        let result = async {
            let (status, headers, body) = self.send_and_read(request).await?;
            if !status.is_success() {
                return Err(failure::from_response_body(
                    status.as_u16(),
                    &body,
                    failure::retry_after(&headers),
                ));
            }
            let parsed: ChatResponse =
                serde_json::from_slice(&body).map_err(|e| failure::bad_body(&e))?;
            into_response(parsed, request, model, started)
        }
        .await;
        log_outcome(&result, started);
        result
    }
}
