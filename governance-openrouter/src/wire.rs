//! OpenRouter's chat-completions wire format (the OpenAI shape plus `usage.cost`, `provider`,
//! the `models` fallback list and `error` objects), for requests, answers and stream chunks.

use governance_core::{ChatMessage, FinishReason, LlmRequest, Usage};
use serde::{Deserialize, Serialize};

/// The request body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    /// Primary model then fallbacks; omitted when there are no fallbacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<&'a str>,
    pub messages: &'a [ChatMessage],
    pub max_tokens: u32,
    pub temperature: f32,
    /// `json_object` or `json_schema` ([`ResponseFormat::of`]); omitted for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'a>>,
    /// Asks OpenRouter to return token counts and cost (`usage.cost`).
    pub usage: UsageRequest,
    pub stream: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `{"name", "strict", "schema"}` of a `json_schema` format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat<'a>>,
}

impl<'a> ResponseFormat<'a> {
    /// The wire `response_format` of a format; `None` for text (nothing sent).
    pub(crate) fn of(format: &'a governance_core::ResponseFormat) -> Option<Self> {
        use governance_core::ResponseFormat as F;
        match format {
            F::Text => None,
            F::JsonObject => Some(Self {
                kind: "json_object",
                json_schema: None,
            }),
            F::JsonSchema {
                name,
                schema,
                strict,
            } => Some(Self {
                kind: "json_schema",
                json_schema: Some(JsonSchemaFormat {
                    name,
                    strict: *strict,
                    schema,
                }),
            }),
        }
    }
}

/// The `json_schema` object of a structured-output request.
#[derive(Debug, Serialize)]
pub(crate) struct JsonSchemaFormat<'a> {
    pub name: &'a str,
    pub strict: bool,
    pub schema: &'a serde_json::Value,
}

#[derive(Debug, Serialize)]
pub(crate) struct UsageRequest {
    pub include: bool,
}

impl<'a> ChatRequest<'a> {
    pub(crate) fn new(
        request: &'a LlmRequest,
        default_model: &'a str,
        fallbacks: &'a [String],
        stream: bool,
    ) -> Self {
        let model = request.model.as_deref().unwrap_or(default_model);
        // the request's own fallbacks (a role's) replace the client's
        let fallbacks: &[String] = if request.fallback_models.is_empty() {
            fallbacks
        } else {
            &request.fallback_models
        };
        let models = if fallbacks.is_empty() {
            Vec::new()
        } else {
            std::iter::once(model)
                .chain(fallbacks.iter().map(String::as_str).filter(|m| *m != model))
                .collect()
        };
        Self {
            model,
            models,
            messages: &request.messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            response_format: ResponseFormat::of(&request.response_format),
            usage: UsageRequest { include: true },
            stream,
        }
    }
}

/// An answer, a stream chunk, or an error body (all optional so one type reads all three).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    pub error: Option<WireError>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub message: Option<WireMessage>,
    #[serde(default)]
    pub delta: Option<WireMessage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub error: Option<WireError>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub cost: Option<f64>,
}

/// OpenRouter's `{"error": {"code", "message", "metadata"}}`. `metadata` may echo the prompt
/// (moderation's `flagged_input`, a provider's `raw` body), so only its `reasons` and
/// `provider_name` are ever read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

impl WireError {
    /// `code` as an HTTP status, when it is a number in range.
    pub(crate) fn status(&self) -> Option<u16> {
        match &self.code {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|c| u16::try_from(c).ok()),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|s| (100..600).contains(s))
    }

    /// `code` as text.
    pub(crate) fn code_text(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        }
    }

    /// The message plus the metadata fields known to hold no prompt text.
    pub(crate) fn safe_message(&self) -> String {
        let mut msg = self
            .message
            .clone()
            .unwrap_or_else(|| "no message".to_owned());
        if let Some(meta) = &self.metadata {
            if let Some(p) = meta.get("provider_name").and_then(|v| v.as_str()) {
                msg.push_str(&format!(" (provider {p})"));
            }
            if let Some(reasons) = meta.get("reasons").and_then(|v| v.as_array()) {
                let r: Vec<&str> = reasons.iter().filter_map(|v| v.as_str()).collect();
                if !r.is_empty() {
                    msg.push_str(&format!(" (reasons: {})", r.join(", ")));
                }
            }
        }
        truncate(&msg, 500)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// OpenRouter's normalised finish reason.
pub(crate) fn finish_reason(s: Option<&str>) -> FinishReason {
    match s {
        Some("stop" | "end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("length" | "max_tokens") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other("unknown".to_owned()),
    }
}

/// Usage from the wire; when the provider reported none, an estimate (4 characters a token)
/// so token budgets still settle, with no cost.
pub(crate) fn usage(wire: Option<WireUsage>, request: &LlmRequest, content: &str) -> Usage {
    let sat = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let estimate_completion = || u32::try_from(content.len().div_ceil(4)).unwrap_or(u32::MAX);
    match wire {
        Some(u) => Usage {
            prompt_tokens: u
                .prompt_tokens
                .map_or_else(|| request.estimated_prompt_tokens(), sat),
            completion_tokens: u.completion_tokens.map_or_else(estimate_completion, sat),
            cost_usd: u.cost,
        },
        None => {
            tracing::warn!("OpenRouter reported no usage; recording an estimate");
            Usage {
                prompt_tokens: request.estimated_prompt_tokens(),
                completion_tokens: estimate_completion(),
                cost_usd: None,
            }
        }
    }
}
