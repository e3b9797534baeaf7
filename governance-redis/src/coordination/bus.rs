//! [`RedisBus`]: the [`MessageBus`] on a Redis Stream per pipeline plus pub/sub fan-out.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use governance_core::{Message, MessageBus, PipelineId, Result};

use super::groups::GroupConsumer;
use crate::conn::{Effect, Shared, corrupt};
use crate::wire;

/// The [`MessageBus`] on Redis / DragonflyDB.
///
/// # Delivery guarantees
/// - **Log (lossless)**: [`publish`](MessageBus::publish) runs one Lua script that takes the
///   next `seq` of the pipeline (a counter, gap-free) and appends the message to the
///   pipeline's stream `gov:{<pipeline>}:bus:log` with entry id `<seq>-0`. It returns only
///   after the script ran, so a message whose publish returned `Ok` is in the log (as durable
///   as the server's persistence settings make it). [`read`](MessageBus::read) replays the log
///   from any `seq` (`XRANGE`), in order. With
///   [`RedisConfig::stream_maxlen`](crate::RedisConfig::stream_maxlen) set, old entries are
///   trimmed and can no longer be replayed.
/// - **Live (at-most-once)**: the same script `PUBLISH`es the message on
///   `gov:{<pipeline>}:bus:live`. [`subscribe`](MessageBus::subscribe) listens on one
///   dedicated pub/sub connection per backend that reconnects and resubscribes by itself after
///   a connection loss; messages published while it is down, or while a subscriber's queue is
///   full, are missed. Every message carries its `seq`, so a subscriber that sees a gap fills
///   it with `read(last_seen, …)`.
/// - **Consumer groups (at-least-once)**: [`consumer`](Self::consumer) reads the same log
///   through a Redis Streams consumer group: each message goes to one consumer of the group
///   and stays pending until acknowledged; a dead consumer's pending entries are taken over
///   with [`GroupConsumer::reclaim`]. Messages may be delivered more than once, so handlers
///   must be idempotent or dedupe by `seq`.
///
/// # Retries
/// A retryable error means the message certainly was not appended. When the connection fails
/// after the script may have been sent, `publish` looks for the message among the newest 1000
/// log entries and publishes again only when it is not there (for up to
/// [`RedisConfig::outage_timeout`](crate::RedisConfig::outage_timeout));
/// so it returns the message's one `seq` or, when the server stays unreachable, a
/// non-retryable "outcome unknown" error (check with `read` before publishing again).
#[derive(Clone)]
pub struct RedisBus {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("url", &self.shared.config.redacted_url())
            .field("key_prefix", &self.shared.config.key_prefix)
            .finish()
    }
}

impl RedisBus {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Joins consumer group `group` of `pipeline`'s message log as `consumer`, creating the
    /// group (`XGROUP CREATE <log> <group> 0 MKSTREAM`, so it starts with the oldest message
    /// still in the log) if it does not exist yet.
    ///
    /// Each message is delivered to **one** consumer of a group, **at least once**: it stays
    /// pending until acknowledged, and pending entries of a consumer that died are taken over
    /// with [`GroupConsumer::reclaim`]. Handlers must be idempotent or dedupe by `seq`. See
    /// [`GroupConsumer`]. Different groups each get every message.
    ///
    /// # Errors
    /// [`Error::InvalidId`](governance_core::Error::InvalidId) when `group` or `consumer` is
    /// not `[A-Za-z0-9_-]{1,64}`; [`Error::Backend`](governance_core::Error::Backend) when
    /// the server stays unreachable.
    pub async fn consumer(
        &self,
        pipeline: &PipelineId,
        group: &str,
        consumer: &str,
    ) -> Result<GroupConsumer> {
        GroupConsumer::new(self.shared.clone(), pipeline, group, consumer).await
    }
}

#[async_trait]
impl MessageBus for RedisBus {
    async fn publish(&self, pipeline: &PipelineId, message: Message) -> Result<u64> {
        let k = self.shared.keys(pipeline);
        let json = wire::message(&message)?;
        let args = [
            json.clone(),
            self.shared
                .config
                .stream_maxlen
                .map(|n| n.to_string())
                .unwrap_or_default(),
            k.bus_channel(),
        ];
        let keys = [k.bus_seq(), k.bus_log()];
        let script = &self.shared.scripts.publish;
        let (keys, args, json, log) = (&keys, &args, &json, &k.bus_log());
        self.shared
            .append(
                "publish",
                |mut conn| async move {
                    let mut invocation = script.prepare_invoke();
                    invocation.key(&keys[..]).arg(&args[..]);
                    invocation.invoke_async(&mut conn).await
                },
                |mut conn| async move { find_published(&mut conn, log, json).await },
            )
            .await
    }

    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Message>> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = self.shared.keys(pipeline);
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .shared
            .query(
                &*redis::cmd("XRANGE")
                    .arg(k.bus_log())
                    .arg(format!("{start}-0"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit),
                "read",
                Effect::Read,
            )
            .await?;
        entries
            .into_iter()
            .map(|(id, fields)| {
                let json = fields
                    .into_iter()
                    .find_map(|(f, v)| (f == "m").then_some(v))
                    .ok_or_else(|| corrupt("bus entry", format!("{id} has no field m")))?;
                wire::decode_message(&json)
            })
            .collect()
    }

    async fn subscribe(&self, pipeline: &PipelineId) -> Result<BoxStream<'static, Message>> {
        let k = self.shared.keys(pipeline);
        self.shared.hub.subscribe(k.bus_channel()).await
    }

    async fn clear(&self, pipeline: &PipelineId) -> Result<()> {
        let k = self.shared.keys(pipeline);
        let _: i64 = self
            .shared
            .query(
                &*redis::cmd("DEL").arg(k.bus_seq()).arg(k.bus_log()),
                "clear",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.shared.ping().await
    }

    async fn generation(&self) -> Result<Option<governance_core::DataGeneration>> {
        self.shared.generation().await.map(Some)
    }
}

/// How many of the newest log entries are searched for a message whose publish had an unknown
/// outcome (other agents of the pipeline may have published after it).
const CHECK_DEPTH: usize = 1000;

/// The `seq` of the message `json` (as sent to the publish script, without `seq`) when it is
/// among the newest [`CHECK_DEPTH`] entries of `log`.
async fn find_published(
    conn: &mut redis::aio::ConnectionManager,
    log: &str,
    json: &str,
) -> redis::RedisResult<Option<u64>> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(CHECK_DEPTH)
        .query_async(conn)
        .await?;
    let rest = json.get(1..).unwrap_or_default();
    Ok(entries.into_iter().find_map(|(id, fields)| {
        let seq: u64 = id.split('-').next()?.parse().ok()?;
        let stored = fields
            .into_iter()
            .find_map(|(f, v)| (f == "m").then_some(v))?;
        (stored == format!("{{\"seq\":{seq},{rest}")).then_some(seq)
    }))
}
