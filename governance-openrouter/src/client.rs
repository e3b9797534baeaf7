//! [`OpenRouterClient`]: one chat completion per call over OpenRouter's HTTP API.

use std::time::Instant;

use async_trait::async_trait;
use governance_core::llm::DeltaSink;
use governance_core::{Error, LlmClient, LlmRequest, LlmResponse, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use crate::config::OpenRouterConfig;
use crate::failure;
use crate::wire::{self, ChatRequest, ChatResponse};

/// An [`LlmClient`] for OpenRouter's chat completions (OpenAI-compatible).
///
/// # Contract
/// - **One attempt per call.** Retries (honouring [`Error::retry_after`]), the circuit
///   breaker ([`governance_core::BreakerLlm`]) and error budgets belong to the caller; this
///   client only makes every failure a precise, typed error (see [`crate::failure`] for
///   the table).
/// - Records the usage OpenRouter reports (`usage.prompt_tokens`, `completion_tokens`,
///   `cost` in USD, asked for with `"usage": {"include": true}`), the model that actually
///   answered (the response's `model`, which differs from the request when a fallback
///   answered), the finish reason and the latency.
/// - The key is sent only as `Authorization: Bearer …` (a header marked sensitive) and never
///   appears in `Debug`, errors or logs.
///
/// # Cancel safety
/// Dropping the future abandons the HTTP request; OpenRouter may still bill it.
#[derive(Clone)]
pub struct OpenRouterClient {
    http: reqwest::Client,
    config: OpenRouterConfig,
    endpoint: String,
}

impl std::fmt::Debug for OpenRouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRouterClient")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenRouterClient {
    /// A client with its own connection pool.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid or an attribution header value
    /// is not a valid header; [`Error::Internal`] when the HTTP client cannot be built.
    pub fn new(mut config: OpenRouterConfig) -> Result<Self> {
        config.validate()?;
        let mut headers = HeaderMap::new();
        for (name, var, value) in [
            (
                "http-referer",
                "OPENROUTER_HTTP_REFERER",
                &config.http_referer,
            ),
            ("x-title", "OPENROUTER_APP_TITLE", &config.app_title),
        ] {
            if let Some(v) = value {
                let v = HeaderValue::from_str(v)
                    .map_err(|_| Error::config(var, "is not a valid HTTP header value"))?;
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .default_headers(headers)
            .user_agent(concat!("governance-openrouter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        let endpoint = config.endpoint();
        Ok(Self {
            http,
            config,
            endpoint,
        })
    }

    /// Reads [`OpenRouterConfig::from_env`] and builds a client.
    ///
    /// # Errors
    /// As [`OpenRouterConfig::from_env`] and [`new`](Self::new).
    pub fn from_env() -> Result<Self> {
        Self::new(OpenRouterConfig::from_env()?)
    }

    /// The configuration (the key stays redacted in its `Debug`).
    #[must_use]
    pub fn config(&self) -> &OpenRouterConfig {
        &self.config
    }

    /// The timeouts, named for error messages.
    pub(crate) fn timeouts_text(&self) -> String {
        format!(
            "connect {:?} (OPENROUTER_CONNECT_TIMEOUT), request {:?} (OPENROUTER_REQUEST_TIMEOUT)",
            self.config.connect_timeout, self.config.request_timeout
        )
    }

    /// A POST to the endpoint with the key and the JSON body.
    pub(crate) fn post(&self, request: &LlmRequest, stream: bool) -> reqwest::RequestBuilder {
        let body = ChatRequest::new(
            request,
            &self.config.model,
            &self.config.fallback_models,
            stream,
        );
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.config.api_key.expose_secret()))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        self.http
            .post(&self.endpoint)
            .header(reqwest::header::AUTHORIZATION, auth)
            .json(&body)
    }

    /// Sends a request and reads the whole body within the request timeout.
    async fn send_and_read(
        &self,
        request: &LlmRequest,
    ) -> Result<(reqwest::StatusCode, HeaderMap, Vec<u8>)> {
        let call = async {
            let resp = self.post(request, false).send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        match tokio::time::timeout(self.config.request_timeout, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(failure::from_reqwest(&e, &self.timeouts_text())),
            Err(_) => Err(Error::Timeout(format!(
                "OpenRouter did not answer within {:?} (OPENROUTER_REQUEST_TIMEOUT)",
                self.config.request_timeout
            ))),
        }
    }
}

/// Turns a parsed 2xx body into a response or the error it carries.
pub(crate) fn into_response(
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
    })
}

#[async_trait]
impl LlmClient for OpenRouterClient {
    fn name(&self) -> &str {
        "openrouter"
    }

    fn default_model(&self) -> &str {
        &self.config.model
    }

    #[tracing::instrument(name = "openrouter.complete", skip_all, fields(
        pipeline_id = %request.meta.pipeline_id,
        agent_id = %request.meta.agent_id,
        model = request.model.as_deref().unwrap_or(&self.config.model),
    ))]
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        let model = request.model.as_deref().unwrap_or(&self.config.model);
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

    async fn complete_streaming(
        &self,
        request: &LlmRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<LlmResponse> {
        crate::streaming::complete_streaming(self, request, on_delta).await
    }
}

/// One log line per call: model, tokens, cost and latency, or the error (never the key).
pub(crate) fn log_outcome(result: &Result<LlmResponse>, started: Instant) {
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(r) => tracing::debug!(
            model_used = %r.model,
            prompt_tokens = r.usage.prompt_tokens,
            completion_tokens = r.usage.completion_tokens,
            cost_usd = r.usage.cost_usd,
            latency_ms,
            "openrouter call succeeded"
        ),
        Err(e) => tracing::warn!(
            error.kind = %e.kind(),
            retryable = e.is_retryable(),
            latency_ms,
            error = %e,
            "openrouter call failed"
        ),
    }
}
