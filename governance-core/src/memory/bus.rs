//! [`MemoryBus`]: the in-memory [`MessageBus`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::ids::PipelineId;
use crate::message_bus::{Message, MessageBus};

/// Default capacity of a pipeline's live fan-out channel (messages a subscriber may fall behind
/// before it starts skipping).
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 4;

/// One pipeline's log and, while someone listens, its fan-out channel.
#[derive(Debug, Default)]
struct Log {
    /// Message `seq` is its index + 1.
    messages: Vec<Message>,
    /// Created by the first `subscribe`, dropped by the first `publish` that finds no receiver.
    live: Option<broadcast::Sender<Message>>,
    /// Set when `clear` unlinked this log (writers that raced with it retry on a fresh one).
    dead: bool,
}

type Shard = Arc<Mutex<Log>>;

/// An in-memory [`MessageBus`]: a log per pipeline plus live fan-out.
///
/// # Guarantees
/// - `seq` is assigned under the pipeline's lock, so it is gap-free and the log is in `seq`
///   order; [`read`](MessageBus::read) is lossless.
/// - [`subscribe`](MessageBus::subscribe) is at-most-once: each subscriber has a buffer of
///   `capacity` messages ([`DEFAULT_SUBSCRIBER_CAPACITY`] by default); a subscriber that falls
///   further behind skips the oldest messages (it can fill the gap with `read`). Live messages
///   arrive in `seq` order.
/// - The fan-out channel (and its buffer) is only allocated while a pipeline has subscribers.
/// - [`clear`](MessageBus::clear) deletes the log and ends the pipeline's subscriptions; a
///   cleared pipeline starts again at `seq` 1.
///
/// Pipelines are sharded: the map lock is only held to find a pipeline, never across an
/// `.await`, so concurrent pipelines do not contend.
#[derive(Debug)]
pub struct MemoryBus {
    logs: RwLock<HashMap<PipelineId, Shard>>,
    capacity: usize,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// An empty bus with the default subscriber capacity.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_SUBSCRIBER_CAPACITY)
    }

    /// An empty bus whose subscribers buffer up to `capacity` messages (at least 1).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            logs: RwLock::default(),
            capacity: capacity.max(1),
        }
    }

    /// Number of pipelines with a log or subscribers.
    #[must_use]
    pub fn pipelines(&self) -> usize {
        self.logs.read().len()
    }

    fn existing(&self, pipeline: &PipelineId) -> Option<Shard> {
        self.logs.read().get(pipeline).cloned()
    }

    /// Runs `f` on the pipeline's log, creating the log when needed.
    fn write<T>(&self, pipeline: &PipelineId, f: impl FnOnce(&mut Log) -> T) -> T {
        loop {
            let log = match self.existing(pipeline) {
                Some(log) => log,
                None => Arc::clone(self.logs.write().entry(pipeline.clone()).or_default()),
            };
            let mut guard = log.lock();
            if !guard.dead {
                return f(&mut guard);
            }
        }
    }
}

#[async_trait]
impl MessageBus for MemoryBus {
    async fn publish(&self, pipeline: &PipelineId, mut message: Message) -> Result<u64> {
        Ok(self.write(pipeline, |log| {
            let seq = log.messages.len() as u64 + 1;
            message.seq = seq;
            if let Some(live) = &log.live {
                if live.receiver_count() == 0 {
                    log.live = None;
                } else {
                    // Fails only when every receiver has gone in the meantime: nothing to do.
                    let _ = live.send(message.clone());
                }
            }
            log.messages.push(message);
            seq
        }))
    }

    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Message>> {
        let Some(log) = self.existing(pipeline) else {
            return Ok(Vec::new());
        };
        let guard = log.lock();
        let len = guard.messages.len();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(limit).min(len);
        Ok(guard.messages[start..end].to_vec())
    }

    async fn subscribe(&self, pipeline: &PipelineId) -> Result<BoxStream<'static, Message>> {
        let capacity = self.capacity;
        let receiver = self.write(pipeline, |log| {
            log.live
                .get_or_insert_with(|| broadcast::channel(capacity).0)
                .subscribe()
        });
        let stream = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(message) => return Some((message, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn clear(&self, pipeline: &PipelineId) -> Result<()> {
        let removed = self.logs.write().remove(pipeline);
        if let Some(log) = removed {
            let mut guard = log.lock();
            guard.dead = true;
            guard.messages = Vec::new();
            guard.live = None;
        }
        Ok(())
    }
}
