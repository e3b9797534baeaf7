//! Streaming chat completions: Server-Sent Events (`stream: true`).
//!
//! OpenRouter sends `data: {chunk}` events, `: OPENROUTER PROCESSING` comment lines while it
//! waits for the provider (ignored, but they count as activity for the idle timeout), a last
//! chunk with `usage`, then `data: [DONE]`. An error after the stream started arrives as a chunk
//! with an `error` object and `finish_reason: "error"`; it becomes a typed error like a failed
//! HTTP status would.

use std::time::{Duration, Instant};

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use governance_core::DeltaSink;
use governance_core::{Error, LlmFailure, LlmRequest, LlmResponse, Result};

use crate::client::{OpenRouterClient, log_outcome};
use crate::failure;
use crate::wire::{self, ChatResponse, WireUsage};

/// Why the byte stream under the SSE parser ended badly.
#[derive(Debug)]
enum Transport {
    Http(reqwest::Error),
    Idle(Duration),
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => write!(f, "{e}"),
            Self::Idle(d) => write!(f, "no data for {d:?}"),
        }
    }
}

/// The response body as a stream that fails with [`Transport::Idle`] after `idle` of silence.
fn with_idle_timeout<B>(
    body: impl Stream<Item = reqwest::Result<B>> + Send + 'static,
    idle: Duration,
) -> impl Stream<Item = std::result::Result<B, Transport>> {
    futures::stream::unfold(Some(Box::pin(body)), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(body))),
            Ok(Some(Err(e))) => Some((Err(Transport::Http(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(Transport::Idle(idle)), None)),
        }
    })
}

fn transport_error(e: Transport, client: &OpenRouterClient) -> Error {
    match e {
        Transport::Idle(d) => Error::Timeout(format!(
            "the OpenRouter stream was idle for {d:?} (OPENROUTER_STREAM_IDLE_TIMEOUT)"
        )),
        Transport::Http(e) if e.is_timeout() => failure::from_reqwest(&e, &client.timeouts_text()),
        Transport::Http(e) => Error::Llm(LlmFailure {
            status: None,
            provider_code: None,
            message: format!("the OpenRouter stream broke off: {e}"),
            retryable: true,
            retry_after: None,
        }),
    }
}

fn cut_short(what: &str) -> Error {
    Error::Llm(LlmFailure {
        status: Some(200),
        provider_code: None,
        message: format!("the OpenRouter stream {what}"),
        retryable: true,
        retry_after: None,
    })
}

/// The streaming call behind [`OpenRouterClient`]'s `complete_streaming`.
#[tracing::instrument(name = "openrouter.stream", skip_all, fields(
    pipeline_id = %request.meta.pipeline_id,
    agent_id = %request.meta.agent_id,
    model = request.model.as_deref().unwrap_or(&client.config().model),
))]
pub(crate) async fn complete_streaming(
    client: &OpenRouterClient,
    request: &LlmRequest,
    on_delta: DeltaSink<'_>,
) -> Result<LlmResponse> {
    let started = Instant::now();
    let result = run(client, request, on_delta, started).await;
    log_outcome(&result, started);
    result
}

async fn run(
    client: &OpenRouterClient,
    request: &LlmRequest,
    on_delta: DeltaSink<'_>,
    started: Instant,
) -> Result<LlmResponse> {
    let config = client.config();
    let send = client
        .post(request, true)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send();
    let resp = match tokio::time::timeout(config.request_timeout, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(failure::from_reqwest(&e, &client.timeouts_text())),
        Err(_) => {
            return Err(Error::Timeout(format!(
                "OpenRouter did not start answering within {:?} (OPENROUTER_REQUEST_TIMEOUT)",
                config.request_timeout
            )));
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let retry_after = failure::retry_after(resp.headers());
        let body = tokio::time::timeout(config.stream_idle_timeout, resp.bytes())
            .await
            .ok()
            .and_then(std::result::Result::ok)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        return Err(failure::from_response_body(
            status.as_u16(),
            &body,
            retry_after,
        ));
    }

    let mut events =
        Box::pin(with_idle_timeout(resp.bytes_stream(), config.stream_idle_timeout).eventsource());
    let requested_model = request.model.as_deref().unwrap_or(&config.model);
    let mut content = String::new();
    let mut model: Option<String> = None;
    let mut usage: Option<WireUsage> = None;
    let mut finish: Option<String> = None;
    let mut done = false;

    while let Some(event) = events.next().await {
        let event = match event {
            Ok(ev) => ev,
            Err(EventStreamError::Transport(t)) => return Err(transport_error(t, client)),
            Err(e) => return Err(cut_short(&format!("is not valid SSE: {e}"))),
        };
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: ChatResponse = serde_json::from_str(data)
            .map_err(|e| cut_short(&format!("sent a chunk that is not valid JSON: {e}")))?;
        if let Some(e) = &chunk.error {
            return Err(failure::from_error_object(e));
        }
        if chunk.model.is_some() {
            model = chunk.model;
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
        for choice in chunk.choices {
            if choice.finish_reason.as_deref() == Some("error") {
                return Err(failure::from_error_object(
                    &choice.error.unwrap_or_default(),
                ));
            }
            if let Some(piece) = choice.delta.and_then(|d| d.content)
                && !piece.is_empty()
            {
                on_delta(&piece);
                content.push_str(&piece);
            }
            if choice.finish_reason.is_some() {
                finish = choice.finish_reason;
            }
        }
    }
    if !done && finish.is_none() {
        return Err(cut_short("ended before its last chunk ([DONE] missing)"));
    }
    let finish_reason = wire::finish_reason(finish.as_deref());
    if content.trim().is_empty() {
        return Err(Error::MalformedOutput(format!(
            "the model streamed empty content (finish_reason {finish_reason:?})"
        )));
    }
    Ok(LlmResponse {
        usage: wire::usage(usage, request, &content),
        model: model.unwrap_or_else(|| requested_model.to_owned()),
        finish_reason,
        latency: started.elapsed(),
        content,
        format_fallback: None,
    })
}
