//! The bottom of the stack: the request goes to the client.

use std::sync::atomic::Ordering;

use super::{LlmCall, STREAM_RECIPIENT};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::llm::{LlmRequest, LlmResponse};

/// Sends `request`: stamps the agent's request counter into it, counts it as sent, and waits
/// for the answer (streamed with `Config::stream_llm`) or the agent's cancellation.
pub(super) async fn send(call: &LlmCall<'_>, mut request: LlmRequest) -> Result<LlmResponse> {
    request.meta.attempt = call.requests.fetch_add(1, Ordering::Relaxed);
    call.sent.fetch_add(1, Ordering::AcqRel);
    let answer = async {
        if call.config.stream_llm {
            complete_streaming(call, &request).await
        } else {
            call.client.complete(&request).await
        }
    };
    tokio::select! {
        r = answer => r,
        () = call.cancel.cancelled() => {
            call.abandoned.store(true, Ordering::Release);
            Err(Error::Cancelled)
        }
    }
}

/// A streaming call: pieces of the answer are published as `agent_message` events to the
/// pseudo-recipient `stream` as they arrive (in chunks of at least 256 bytes, and the rest at
/// the end), so a UI shows the answer while it is being written.
async fn complete_streaming(call: &LlmCall<'_>, request: &LlmRequest) -> Result<LlmResponse> {
    const CHUNK: usize = 256;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let sink = move |delta: &str| {
        let _ = tx.send(delta.to_owned());
    };
    let answer = call.client.complete_streaming(request, &sink);
    tokio::pin!(answer);
    let mut buf = String::new();
    let result = loop {
        tokio::select! {
            r = &mut answer => break r,
            Some(delta) = rx.recv() => {
                buf.push_str(&delta);
                if buf.len() >= CHUNK {
                    emit_stream(call, std::mem::take(&mut buf)).await?;
                }
            }
        }
    };
    while let Ok(delta) = rx.try_recv() {
        buf.push_str(&delta);
    }
    if !buf.is_empty() {
        emit_stream(call, buf).await?;
    }
    result
}

async fn emit_stream(call: &LlmCall<'_>, content: String) -> Result<()> {
    call.state
        .emitter()
        .emit(EventKind::AgentMessage {
            pipeline_id: call.pipeline_id().clone(),
            from: call.agent_id.clone(),
            to: STREAM_RECIPIENT.to_owned(),
            content,
        })
        .await
        .map(|_| ())
}
