//! The LLM client contract: one chat completion with token usage.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{AgentId, PipelineId};
pub use crate::response_format::{ResponseFormat, ResponseFormatKind};

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions.
    System,
    /// Input.
    User,
    /// A model's earlier answer.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }
}

/// What an agent asks the model to do. Not sent to the provider; [`crate::LocalLlm`] uses it
/// to script answers, real clients may use it for attribution or logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Purpose {
    /// RUNNING stage: analyse the objective and write the report (with a complexity score).
    Report,
    /// ALPHA: research the objective and write proposals.
    Propose,
    /// BETA (or a lone agent): evaluate a proposal and vote.
    Evaluate,
    /// BETA: build a solution from the accepted proposal.
    Synthesize,
    /// GAMMA: mediate / arbitrate / decompose.
    Mediate,
    /// Anything else (custom roles).
    Other,
}

/// Request metadata: which pipeline and agent are calling and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Pipeline.
    pub pipeline_id: PipelineId,
    /// Calling agent.
    pub agent_id: AgentId,
    /// Purpose of the call.
    pub purpose: Purpose,
    /// A counter per agent, so deterministic clients vary answers across calls.
    pub attempt: u32,
}

/// A chat-completion request.
///
/// Deserializes requests recorded before [`ResponseFormat`] existed too: their
/// `"json": true` reads as [`ResponseFormat::JsonObject`], `false` as [`ResponseFormat::Text`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredRequest")]
pub struct LlmRequest {
    /// Model; `None` means the client's default.
    pub model: Option<String>,
    /// Models to try in order when `model` fails (OpenRouter's `models` list); empty: the
    /// client's own fallbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_models: Vec<String>,
    /// The conversation.
    /// (Shared: retries and recordings reuse it without copying the prompt.)
    pub messages: std::sync::Arc<[ChatMessage]>,
    /// Upper bound on completion tokens.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// The shape the answer is asked in (`response_format`). A client whose provider refuses
    /// it may fall back to a weaker one and says so in [`LlmResponse::format_fallback`].
    pub response_format: ResponseFormat,
    /// Who is calling and why.
    pub meta: RequestMeta,
}

/// [`LlmRequest`] as stored: today's `response_format` or an old recording's `json`.
#[derive(Deserialize)]
struct StoredRequest {
    model: Option<String>,
    #[serde(default)]
    fallback_models: Vec<String>,
    messages: std::sync::Arc<[ChatMessage]>,
    max_tokens: u32,
    temperature: f32,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    #[serde(default)]
    json: Option<bool>,
    meta: RequestMeta,
}

impl From<StoredRequest> for LlmRequest {
    fn from(s: StoredRequest) -> Self {
        Self {
            model: s.model,
            fallback_models: s.fallback_models,
            messages: s.messages,
            max_tokens: s.max_tokens,
            temperature: s.temperature,
            response_format: crate::response_format::from_stored(s.response_format, s.json),
            meta: s.meta,
        }
    }
}

impl LlmRequest {
    /// A rough estimate of prompt tokens (4 characters a token), used to reserve budget.
    #[must_use]
    pub fn estimated_prompt_tokens(&self) -> u32 {
        let chars: usize = self.messages.iter().map(|m| m.content.len() + 4).sum();
        u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Cost in USD, when the provider reports it.
    pub cost_usd: Option<f64>,
}

impl Usage {
    /// Prompt plus completion tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end.
    Stop,
    /// Hit `max_tokens`: the content may be truncated.
    Length,
    /// Filtered by moderation.
    ContentFilter,
    /// Anything else the provider said.
    Other(String),
}

/// A chat-completion answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    /// The answer text.
    pub content: String,
    /// The model that actually answered (may differ from the request with fallbacks).
    pub model: String,
    /// Token usage.
    pub usage: Usage,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Wall-clock latency of the call.
    #[serde(with = "duration_ms")]
    pub latency: Duration,
    /// The format the answer was actually given in, when the provider refused the one asked
    /// for ([`LlmRequest::response_format`]) and the client fell back to a weaker one; `None`
    /// when the asked format was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_fallback: Option<ResponseFormatKind>,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Receives pieces of an answer as they stream in.
pub type DeltaSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A chat-completion client.
///
/// # Contract
/// - `complete` sends **one** request (no retries: the orchestrator retries retryable failures
///   within `GOVERNANCE_LLM_MAX_ATTEMPTS`, honouring [`crate::Error::retry_after`], and counts
///   every attempt toward the circuit breaker) and returns the answer with its usage, or a typed error:
///   [`crate::Error::Unauthorized`] for refused credentials (never retried),
///   [`crate::Error::Llm`] with status/code/`retry_after` for provider failures,
///   [`crate::Error::MalformedOutput`] for an unparseable or empty answer,
///   [`crate::Error::Timeout`] for a call that took too long.
/// - The one exception to "one request": when the provider refuses the request's
///   [`LlmRequest::response_format`] as unsupported, a client may send the same call again
///   in a weaker format (`json_schema` → `json_object` → text) and says so in
///   [`LlmResponse::format_fallback`]; that is part of the one call, not a retry.
/// - No secret (API key) ever appears in an error, a log line or `Debug` output.
///
/// # Cancel safety
/// Dropping the future abandons the call; the provider may still bill it.
#[async_trait]
pub trait LlmClient: Send + Sync + std::fmt::Debug {
    /// A short name for logs and events (`local`, `openrouter`).
    fn name(&self) -> &str;

    /// The model used when a request has none.
    fn default_model(&self) -> &str;

    /// One chat completion.
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse>;

    /// What `model` costs, when this client knows (OpenRouter: its model list or the config
    /// file's price table; the local LLM: free). The default, `None`, means unknown: with a
    /// money budget set, a call to a model of unknown price is refused (fail closed).
    fn price(&self, model: &str) -> Option<crate::cost::ModelPrice> {
        let _ = model;
        None
    }

    /// One chat completion, streaming pieces of the answer to `on_delta` as they arrive.
    /// The default calls [`complete`](Self::complete) and delivers the whole answer at once.
    async fn complete_streaming(
        &self,
        request: &LlmRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<LlmResponse> {
        let response = self.complete(request).await?;
        on_delta(&response.content);
        Ok(response)
    }
}
