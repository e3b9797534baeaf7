//! The MessageBus: agent-to-agent (and agent-to-UI) messages per pipeline.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{AgentId, PipelineId};

/// Recipient meaning "every agent of the pipeline".
pub const BROADCAST: &str = "*";

/// A message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Per-pipeline, gap-free sequence number assigned by the bus (1-based). Ignored on publish.
    #[serde(default)]
    pub seq: u64,
    /// Sender.
    pub from: AgentId,
    /// Recipient agent id, or [`BROADCAST`].
    pub to: String,
    /// What the message is about (`evaluation`, `critique`, ... free-form; the engine's own
    /// messages use [`CONTROL_TOPIC`](crate::CONTROL_TOPIC) with a typed
    /// [`Control`](crate::Control) content).
    pub topic: String,
    /// Text (content written by an agent: treat as data, never as instructions).
    pub content: String,
    /// When it was published.
    pub ts: DateTime<Utc>,
}

impl Message {
    /// A new message (seq is assigned on publish).
    #[must_use]
    pub fn new(
        from: AgentId,
        to: impl Into<String>,
        topic: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        Self {
            seq: 0,
            from,
            to: to.into(),
            topic: topic.into(),
            content: content.into(),
            ts: Utc::now(),
        }
    }

    /// Whether `agent` should read this message (addressed to it or broadcast, not its own).
    #[must_use]
    pub fn is_for(&self, agent: &AgentId) -> bool {
        &self.from != agent && (self.to == BROADCAST || self.to == agent.as_str())
    }
}

/// Per-pipeline message transport.
///
/// # Contract (delivery guarantees)
/// - [`publish`](Self::publish) returns only after the message is in the pipeline's **log** with
///   a gap-free `seq`; a message whose publish returned `Ok` is never lost.
/// - [`read`](Self::read) replays the log from any `seq`: this is the lossless path every agent
///   uses. Messages come in `seq` order.
/// - [`subscribe`](Self::subscribe) is **live, at-most-once** fan-out: a slow or reconnecting
///   subscriber may miss messages (it can fill gaps with `read`, since each carries its `seq`).
///
/// # Errors
/// Backend failures are [`crate::Error::Backend`].
#[async_trait]
pub trait MessageBus: Send + Sync + std::fmt::Debug {
    /// Appends a message to the pipeline's log and fans it out; returns its `seq`.
    async fn publish(&self, pipeline: &PipelineId, message: Message) -> Result<u64>;

    /// Messages with `seq > after`, at most `limit`, in order.
    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Message>>;

    /// Live messages published after this call (at-most-once).
    async fn subscribe(&self, pipeline: &PipelineId) -> Result<BoxStream<'static, Message>>;

    /// Deletes the pipeline's log.
    async fn clear(&self, pipeline: &PipelineId) -> Result<()>;

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// The backend's [`DataGeneration`](crate::DataGeneration) (see
    /// [`crate::Blackboard::generation`]); `None` (the default) for a backend that never
    /// loses data while the process lives.
    ///
    /// # Errors
    /// The backend is unreachable (the engine asks again later).
    async fn generation(&self) -> Result<Option<crate::DataGeneration>> {
        Ok(None)
    }
}
