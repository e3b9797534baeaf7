//! The LLM client contract: one chat completion with token usage.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{AgentId, PipelineId};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Ask for a JSON object answer (`response_format`), when the provider supports it.
    pub json: bool,
    /// Who is calling and why.
    pub meta: RequestMeta,
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
