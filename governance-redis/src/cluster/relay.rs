//! Relaying: every node's appended events reach the other nodes' live feeds over `gov:events`,
//! forwarded commands wake their owner over `gov:commands` (both pub/sub, at most once).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use governance_core::{Event, Governance, PipelineId};
use tokio_util::sync::CancellationToken;

use crate::conn::{Effect, Shared};
use crate::store::{RedisStore, Relayed};

/// The channel on which commands forwarded to a pipeline's owner are announced.
pub(super) fn commands_channel(prefix: &str) -> String {
    format!("{prefix}:commands")
}

/// Subscribes to `gov:events` (reconnecting with backoff) and relays other nodes' events.
pub(super) async fn relay_events(
    shared: Arc<Shared>,
    node: String,
    governance: Governance,
    wake: tokio::sync::mpsc::UnboundedSender<PipelineId>,
    cancel: CancellationToken,
) {
    let events = RedisStore::events_channel(&shared.config.key_prefix);
    let commands = commands_channel(&shared.config.key_prefix);
    let channels = vec![events, commands.clone()];
    on_messages(&shared, &channels, &cancel, |channel, payload| {
        if channel == commands {
            if let Ok(id) = PipelineId::new(&payload) {
                let _ = wake.send(id);
            }
            return;
        }
        match serde_json::from_str::<Relayed>(&payload) {
            Ok(r) if r.node != node => {
                for e in r.events {
                    governance.relay(Arc::new(e));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignoring a malformed relayed event batch"),
        }
    })
    .await;
}

/// Calls `f(channel, payload)` for every message published on `channels` until `cancel`,
/// on a dedicated pub/sub connection that reconnects with backoff. At-most-once: what is
/// published while it reconnects is missed.
pub(crate) async fn on_messages(
    shared: &Shared,
    channels: &[String],
    cancel: &CancellationToken,
    mut f: impl FnMut(&str, String),
) {
    let mut delay = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let mut pubsub = match shared.client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %shared.err(&e, "pub/sub connect", Effect::Read), "retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(3));
                continue;
            }
        };
        if pubsub.subscribe(channels).await.is_err() {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            continue;
        }
        delay = Duration::from_millis(100);
        let mut stream = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                () = cancel.cancelled() => return,
                m = stream.next() => m,
            };
            let Some(msg) = msg else { break };
            if let Ok(payload) = msg.get_payload::<String>() {
                f(msg.get_channel_name(), payload);
            }
        }
        tracing::debug!(?channels, "pub/sub connection lost; reconnecting");
    }
}

/// Events relayed by another node (for tests and embedders that read `gov:events` themselves).
pub fn decode_relayed(payload: &str) -> Option<(String, Vec<Event>)> {
    serde_json::from_str::<Relayed>(payload)
        .ok()
        .map(|r| (r.node, r.events))
}
