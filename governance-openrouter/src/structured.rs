//! Structured answers: the request asks for the format of [`LlmRequest::response_format`]
//! (for the built-in purposes a strict `json_schema`), and falls back when the model's
//! provider does not support it.
//!
//! **Detection.** OpenRouter (or the provider behind it) refuses an unsupported
//! `response_format` with HTTP 400 or 422 whose error message names it. A failure counts as
//! such a refusal ([`is_format_refusal`]) only when it is a 400/422 **and** its message or code
//! mentions `response_format`, `json_schema`, `json_object`, `json mode`, `structured` or
//! `schema`. Then the same call is sent again, at once, with the next weaker format:
//! `json_schema` → `json_object` → text (no `response_format`; the caller's lenient parsing
//! reads the answer as it always did). A refusal of text, or any other failure, is returned
//! as it is, so a genuine 400 surfaces as [`governance_core::Error::Llm`] like before.
//!
//! **Not a provider failure.** The refused sends happen inside one
//! [`LlmClient::complete`](governance_core::LlmClient::complete) call: the circuit breaker and
//! the retry policy above the client see only that call's outcome.
//!
//! **Memory.** The weaker format that worked is remembered per model
//! ([`crate::format_memo`], process-local), so later calls to that model go straight to it.
//! The answer says which format it was given in when that differs from the one asked for
//! ([`LlmResponse::format_fallback`]); the `llm_call` event records it.

use governance_core::{DeltaSink, Error, LlmRequest, LlmResponse, Result};

use crate::client::OpenRouterClient;

/// Words in a 400/422's message that say the refused parameter is the answer format.
const FORMAT_WORDS: &[&str] = &[
    "response_format",
    "json_schema",
    "json_object",
    "json mode",
    "structured",
    "schema",
];

/// Whether `e` is the provider refusing the answer format (see the module docs).
#[must_use]
pub(crate) fn is_format_refusal(e: &Error) -> bool {
    let Error::Llm(f) = e else {
        return false;
    };
    if !matches!(f.status, Some(400 | 422)) {
        return false;
    }
    let text = format!(
        "{} {}",
        f.message,
        f.provider_code.as_deref().unwrap_or_default()
    )
    .to_ascii_lowercase();
    FORMAT_WORDS.iter().any(|w| text.contains(w))
}

/// One call (plain, or streaming to `sink`), in the asked format or the weaker ones the
/// model's provider takes (see the module docs).
pub(crate) async fn complete(
    client: &OpenRouterClient,
    request: &LlmRequest,
    sink: Option<DeltaSink<'_>>,
) -> Result<LlmResponse> {
    let asked = request.response_format.kind();
    let model = request
        .model
        .as_deref()
        .unwrap_or(&client.config().model)
        .to_owned();
    let mut kind = client.formats().start(&model, asked);
    loop {
        let lowered;
        let attempt = if kind == asked {
            request
        } else {
            lowered = LlmRequest {
                response_format: request.response_format.lowered_to(kind),
                ..request.clone()
            };
            &lowered
        };
        let result = match sink {
            Some(sink) => crate::streaming::complete_streaming(client, attempt, sink).await,
            None => client.complete_once(attempt).await,
        };
        match result {
            Ok(mut response) => {
                if kind != asked {
                    response.format_fallback = Some(kind);
                }
                return Ok(response);
            }
            Err(e) if is_format_refusal(&e) => {
                let Some(weaker) = kind.weaker() else {
                    return Err(e);
                };
                tracing::warn!(
                    model = %model,
                    refused = %kind,
                    retry_with = %weaker,
                    error = %e,
                    "the provider refused the answer format; retrying with a weaker one"
                );
                client.formats().lower(&model, weaker);
                kind = weaker;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use governance_core::{LlmFailure, ResponseFormat};

    use super::*;
    use crate::wire::ResponseFormat as Wire;

    fn llm(status: Option<u16>, message: &str, code: Option<&str>) -> Error {
        Error::Llm(LlmFailure {
            status,
            provider_code: code.map(str::to_owned),
            message: message.to_owned(),
            retryable: false,
            retry_after: None,
        })
    }

    #[test]
    fn only_a_400_or_422_about_the_format_is_a_refusal() {
        for (e, refusal) in [
            (
                llm(
                    Some(400),
                    "bad request: response_format json_schema is not supported",
                    None,
                ),
                true,
            ),
            (
                llm(
                    Some(422),
                    "client error: Structured outputs unavailable for this model",
                    None,
                ),
                true,
            ),
            (
                llm(Some(400), "bad request: JSON mode is not supported", None),
                true,
            ),
            (
                llm(Some(400), "bad request", Some("unsupported_json_schema")),
                true,
            ),
            (
                llm(Some(400), "bad request: context length exceeded", None),
                false,
            ),
            (
                llm(Some(404), "not found: response_format endpoint", None),
                false,
            ),
            (
                llm(Some(500), "server error mentioning schema", None),
                false,
            ),
            (llm(None, "transport: schema", None), false),
            (Error::MalformedOutput("schema".into()), false),
        ] {
            assert_eq!(is_format_refusal(&e), refusal, "{e}");
        }
    }

    #[test]
    fn the_wire_format_carries_the_schema_strictly() {
        let f = ResponseFormat::JsonSchema {
            name: "evaluation".into(),
            schema: std::sync::Arc::new(serde_json::json!({"type": "object"})),
            strict: true,
        };
        assert_eq!(
            serde_json::to_value(Wire::of(&f)).unwrap(),
            serde_json::json!({"type": "json_schema",
                "json_schema": {"name": "evaluation", "strict": true, "schema": {"type": "object"}}})
        );
        assert_eq!(
            serde_json::to_value(Wire::of(&ResponseFormat::JsonObject)).unwrap(),
            serde_json::json!({"type": "json_object"})
        );
        assert!(Wire::of(&ResponseFormat::Text).is_none());
    }
}
