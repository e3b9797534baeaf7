//! [`OpenRouterClient`]: one chat completion per call over OpenRouter's HTTP API.

use std::sync::Arc;
use std::time::Instant;

use governance_core::{Error, LlmRequest, LlmResponse, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use crate::config::OpenRouterConfig;
use crate::failure;
use crate::format_memo::FormatMemo;
use crate::wire::ChatRequest;

/// An [`LlmClient`](governance_core::LlmClient) for OpenRouter's chat completions (OpenAI-compatible).
///
/// # Contract
/// - **One attempt per call.** Retries (honouring [`Error::retry_after`]), the circuit
///   breaker ([`governance_core::BreakerLlm`]) and error budgets belong to the caller; this
///   client only makes every failure a precise, typed error (see [`crate::failure`] for
///   the table). The exception: a provider's refusal of the answer format is handled inside
///   the call by re-sending it in a weaker format (see `structured.rs`; remembered per model
///   for the life of the client).
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
    /// Formats each model refused (shared by clones; process-local).
    formats: Arc<FormatMemo>,
    /// Model prices for money budgets (`crate::prices`), shared by clones.
    prices: std::sync::Arc<crate::prices::PriceBook>,
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
            formats: Arc::default(),
            prices: std::sync::Arc::default(),
        })
    }

    /// The prices this client knows (see `crate::prices`).
    pub(crate) fn prices(&self) -> &std::sync::Arc<crate::prices::PriceBook> {
        &self.prices
    }

    /// The HTTP client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// What `model` costs — its override (the config file's price table), else OpenRouter's
    /// model list — and, when the client has fallback models, the dearest of it and them
    /// (any of them may answer). `None` when any of them has no known price.
    #[must_use]
    pub fn model_price(&self, model: &str) -> Option<governance_core::ModelPrice> {
        let mut price = self.prices.get(model)?;
        for m in &self.config.fallback_models {
            price = price.max(self.prices.get(m)?);
        }
        Some(price)
    }

    /// The configuration (the key stays redacted in its `Debug`).
    #[must_use]
    pub fn config(&self) -> &OpenRouterConfig {
        &self.config
    }

    /// The answer formats models refused ([`crate::structured`]).
    pub(crate) fn formats(&self) -> &FormatMemo {
        &self.formats
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
    pub(crate) async fn send_and_read(
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
