//! How every OpenRouter failure becomes a typed [`governance_core::Error`].
//!
//! | failure | error | retryable |
//! |---|---|---|
//! | 401 (or an error body with code 401) | [`Error::Unauthorized`] | no |
//! | 400 bad request, 402 out of credits, 403 moderation/forbidden, 404 unknown model, other 4xx | [`Error::Llm`] | no |
//! | 408, 409, 425, 429, 5xx | [`Error::Llm`] with `retry_after` from `Retry-After` | yes |
//! | a 200 whose body is `{"error": …}` | as its `code` when numeric; else a provider failure | as the code; yes for a non-numeric code |
//! | connect or read timeout | [`Error::Timeout`] | yes |
//! | connection refused/reset | [`Error::Llm`] without status | yes |
//! | malformed or truncated JSON body, stream cut before its end | [`Error::Llm`] (status 200) | yes: the answer was lost in transit, a new attempt may get it whole |
//! | an answer with empty content or no choices | [`Error::MalformedOutput`] | no: the model answered, and the caller's error budget decides |
//!
//! A 429 without `Retry-After` leaves `retry_after` as `None`: the caller backs off (with
//! jitter) on its own schedule. Messages never contain the API key nor the error `metadata`
//! fields that may hold prompt text.

use std::time::Duration;

use governance_core::{Error, LlmFailure};

use crate::wire::{ChatResponse, WireError, truncate};

/// What a status means, for people.
fn meaning(status: u16) -> &'static str {
    match status {
        400 => {
            "bad request: OpenRouter rejected the request (invalid parameters or context too long)"
        }
        401 => "the API key is invalid, expired or disabled: check OPENROUTER_API_KEY",
        402 => {
            "out of credits: the OpenRouter account or key has insufficient credits for this request (add credits or lower max_tokens)"
        }
        403 => "forbidden: the input was flagged by moderation, or the key may not use this model",
        404 => {
            "not found: unknown model or endpoint (check OPENROUTER_MODEL and OPENROUTER_BASE_URL)"
        }
        408 => "request timeout: OpenRouter timed out waiting for the request",
        429 => "rate limited: too many requests (or the model's provider is rate limited)",
        500 => "OpenRouter internal server error",
        502 => "bad gateway: the model's provider is down or returned an invalid response",
        503 => "service unavailable: no provider for the model is available right now",
        504 => "gateway timeout: the model's provider did not answer in time",
        s if (500..600).contains(&s) => "OpenRouter server error",
        s if (400..500).contains(&s) => "client error: OpenRouter refused the request",
        _ => "unexpected HTTP status",
    }
}

/// Whether an HTTP status is worth another attempt.
#[must_use]
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || (500..600).contains(&status)
}

/// The error for an HTTP status with an optional OpenRouter error object (from the body) and
/// an optional `Retry-After` delay.
pub(crate) fn from_status(
    status: u16,
    body_error: Option<&WireError>,
    retry_after: Option<Duration>,
) -> Error {
    let detail = body_error.map(WireError::safe_message);
    let message = match &detail {
        Some(d) => format!("{}: {d}", meaning(status)),
        None => meaning(status).to_owned(),
    };
    if status == 401 {
        return Error::Unauthorized(format!("OpenRouter (HTTP 401): {message}"));
    }
    Error::Llm(LlmFailure {
        status: Some(status),
        provider_code: body_error.and_then(WireError::code_text),
        message,
        retryable: is_retryable_status(status),
        retry_after,
    })
}

/// The error for an `error` object that came with a 2xx (in the body or mid-stream): its
/// numeric `code` is taken as the status; a non-numeric code (e.g. `server_error`) is a
/// provider failure during generation and retryable.
pub(crate) fn from_error_object(e: &WireError) -> Error {
    match e.status() {
        Some(status) => from_status(status, Some(e), None),
        None => Error::Llm(LlmFailure {
            status: None,
            provider_code: e.code_text(),
            message: format!(
                "the provider failed during generation: {}",
                e.safe_message()
            ),
            retryable: true,
            retry_after: None,
        }),
    }
}

/// The error for a non-2xx response with its (possibly non-JSON) body.
pub(crate) fn from_response_body(status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
    let parsed = serde_json::from_slice::<ChatResponse>(body)
        .ok()
        .and_then(|r| r.error);
    if parsed.is_none() && !body.is_empty() {
        // Not OpenRouter's JSON (a proxy's HTML page, plain text): keep a short snippet.
        let text = String::from_utf8_lossy(body);
        let snippet = truncate(text.trim(), 200);
        let e = WireError {
            message: Some(snippet),
            ..WireError::default()
        };
        return from_status(status, Some(&e), retry_after);
    }
    from_status(status, parsed.as_ref(), retry_after)
}

/// A 2xx body that is not the JSON we expect.
pub(crate) fn bad_body(err: &serde_json::Error) -> Error {
    let what = if err.is_eof() {
        "the response body is truncated (incomplete JSON)"
    } else {
        "the response body is not valid chat-completion JSON"
    };
    Error::Llm(LlmFailure {
        status: Some(200),
        provider_code: None,
        message: format!("{what}: {err}"),
        retryable: true,
        retry_after: None,
    })
}

/// A transport failure (no usable HTTP response).
pub(crate) fn from_reqwest(err: &reqwest::Error, timeouts: &str) -> Error {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if err.is_timeout() {
        return Error::Timeout(format!("OpenRouter call timed out ({timeouts}): {message}"));
    }
    Error::Llm(LlmFailure {
        status: err.status().map(|s| s.as_u16()),
        provider_code: None,
        message: if err.is_connect() {
            format!("cannot connect to OpenRouter: {message}")
        } else {
            format!("OpenRouter transport error: {message}")
        },
        retryable: true,
        retry_after: None,
    })
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (a date in the past means "now").
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// `Retry-After` of a response, when present and readable.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a past date means retry now"
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert!(matches!(
            from_status(401, None, None),
            Error::Unauthorized(_)
        ));
        for s in [400, 402, 403, 404, 422] {
            let e = from_status(s, None, None);
            assert!(!e.is_retryable(), "{s}");
            assert_eq!(e.kind(), governance_core::ErrorKind::Llm);
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(from_status(s, None, None).is_retryable(), "{s}");
        }
    }

    #[test]
    fn metadata_that_may_hold_prompt_text_is_left_out() {
        let e: WireError = serde_json::from_value(serde_json::json!({
            "code": 403,
            "message": "Input was flagged",
            "metadata": {"reasons": ["violence"], "flagged_input": "SECRET PROMPT", "provider_name": "openai"}
        }))
        .unwrap();
        let msg = from_error_object(&e).to_string();
        assert!(msg.contains("violence") && msg.contains("openai"), "{msg}");
        assert!(!msg.contains("SECRET PROMPT"), "{msg}");
    }
}
