//! [`GroupConsumer`]: at-least-once delivery of a pipeline's bus log through a Redis Streams
//! consumer group (`XREADGROUP`, `XACK`, `XAUTOCLAIM`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governance_core::validate_id;
use governance_core::{Message, PipelineId, Result};
use redis::FromRedisValue;

use crate::conn::{Effect, Shared, corrupt};
use crate::wire;

/// How often [`GroupConsumer::next`] looks for new entries while it waits (`block`). The wait
/// polls instead of sending `XREADGROUP … BLOCK`, which would stall every other command on the
/// shared multiplexed connection for as long as it blocks.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Entries of a stream reply; the fields are `None` for an entry still pending but already
/// deleted from the stream (trimmed by `stream_maxlen`, or the log was cleared).
type Entries = Vec<(String, Option<Vec<(String, String)>>)>;

/// One message handed to a [`GroupConsumer`]: it stays pending (and may be handed out again,
/// see [`GroupConsumer::reclaim`]) until it is [acknowledged](GroupConsumer::ack).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Delivery {
    /// The stream entry id, `<seq>-0`.
    pub id: String,
    /// The message; `message.seq` identifies it across redeliveries.
    pub message: Message,
}

impl Delivery {
    /// The message's `seq` (the key to dedupe redeliveries by).
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.message.seq
    }
}

/// A member of a consumer group on one pipeline's bus log (`gov:{<pipeline>}:bus:log`),
/// made by [`RedisBus::consumer`](crate::RedisBus::consumer).
///
/// # Delivery guarantee: at least once
/// Every message published to the pipeline after the group was created — and every message
/// already in the log when it was created, since groups start at the beginning (`0`) — is
/// delivered to one consumer of the group. It stays in the group's pending-entries list until
/// that consumer [`ack`](Self::ack)s it. A consumer that dies (or drops its `GroupConsumer`)
/// before acknowledging leaves its entries pending: a new `GroupConsumer` with the **same
/// consumer name** gets them again first from [`next`](Self::next), and any other consumer
/// of the group takes them over with [`reclaim`](Self::reclaim) once they have been idle long
/// enough. A message may therefore be delivered more than once (also when a reply is lost to
/// a connection failure and the command is repeated): **handlers must be idempotent, or
/// dedupe by [`Delivery::seq`]**. Messages are never skipped, except entries the log no
/// longer holds (trimmed by [`RedisConfig::stream_maxlen`](crate::RedisConfig::stream_maxlen)
/// or removed by [`clear`](governance_core::MessageBus::clear)), which are acknowledged
/// and dropped.
///
/// The group lives in Redis: when it disappears (the log was cleared, or the server lost its
/// data) it is created again at `0` on the next call.
pub struct GroupConsumer {
    shared: Arc<Shared>,
    log: String,
    group: String,
    consumer: String,
    /// `Some(id)`: own pending entries after `id` are still to be handed out again.
    pending: Option<String>,
}

impl fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("log", &self.log)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Validates the names and creates the group if it is missing.
    pub(crate) async fn new(
        shared: Arc<Shared>,
        pipeline: &PipelineId,
        group: &str,
        consumer: &str,
    ) -> Result<Self> {
        validate_id("consumer group", group)?;
        validate_id("consumer", consumer)?;
        let log = shared.keys(pipeline).bus_log();
        let this = Self {
            shared,
            log,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            pending: Some("0".to_owned()),
        };
        this.shared
            .ensure_group("consumer group create", &this.log, &this.group)
            .await?;
        Ok(this)
    }

    /// The group's name.
    #[must_use]
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This consumer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.consumer
    }

    /// Up to `count` messages for this consumer, oldest first: first the entries still
    /// pending for this consumer name (delivered earlier, not acknowledged — e.g. by a previous
    /// process with the same name), then new entries of the group (`XREADGROUP … >`).
    /// When there are none, waits up to `block` for new ones (`None`: returns at once) and
    /// returns an empty vector if none arrive.
    ///
    /// Every returned entry is pending until [`ack`](Self::ack)ed (at least once: see the
    /// type's docs).
    ///
    /// # Errors
    /// [`Error::Backend`](governance_core::Error::Backend) when the server stays unreachable
    /// (repeating the call is safe: undelivered entries stay pending).
    pub async fn next(&mut self, count: usize, block: Option<Duration>) -> Result<Vec<Delivery>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let deadline = block.map(|d| Instant::now() + d);
        loop {
            if let Some(after) = self.pending.clone() {
                let (entries, _) = self.read_group(&after, count).await?;
                match entries.last() {
                    None => self.pending = None,
                    Some((last, _)) => {
                        self.pending = Some(last.clone());
                        let out = self.deliveries(entries).await?;
                        if !out.is_empty() {
                            return Ok(out);
                        }
                        continue;
                    }
                }
            }
            let (entries, repeated) = self.read_group(">", count).await?;
            if repeated {
                // The reply of an earlier attempt may have been lost: the entries it handed
                // out are pending for this consumer; hand them out again.
                self.pending = Some("0".to_owned());
            }
            let out = self.deliveries(entries).await?;
            if !out.is_empty() {
                return Ok(out);
            }
            match deadline {
                Some(t) if self.pending.is_some() => {
                    if Instant::now() >= t {
                        return Ok(Vec::new());
                    }
                }
                Some(t) => {
                    let now = Instant::now();
                    if now >= t {
                        return Ok(Vec::new());
                    }
                    tokio::time::sleep(POLL_INTERVAL.min(t - now)).await;
                }
                None if self.pending.is_some() => {}
                None => return Ok(Vec::new()),
            }
        }
    }

    /// Acknowledges a delivery (`XACK`): it leaves the group's pending entries and is not
    /// delivered again. Acknowledging twice (or an entry of another consumer of the same
    /// group) is harmless.
    ///
    /// # Errors
    /// [`Error::Backend`](governance_core::Error::Backend) when the server stays unreachable
    /// (repeating the call is safe).
    pub async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.ack_ids(std::slice::from_ref(&delivery.id)).await
    }

    /// Takes over up to `count` entries of the group that have been pending — delivered to any
    /// consumer, this one included, and not acknowledged — for at least `min_idle`
    /// (`XAUTOCLAIM`, Redis ≥ 6.2), and returns them, oldest first. They are then pending for
    /// this consumer. This is how a live consumer finishes the work of a dead one: pick
    /// `min_idle` well above the longest time a live consumer takes to handle and acknowledge a
    /// message, or entries still being handled are handed out twice.
    ///
    /// # Errors
    /// [`Error::Backend`](governance_core::Error::Backend) when the server stays unreachable
    /// (repeating the call is safe: claimed entries stay pending for this consumer and are
    /// handed out again by [`next`](Self::next)).
    pub async fn reclaim(&mut self, min_idle: Duration, count: usize) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        let mut start = "0-0".to_owned();
        let min_idle = min_idle.as_millis().to_string();
        while out.len() < count {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.log)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(&min_idle)
                .arg(&start)
                .arg("COUNT")
                .arg(count - out.len());
            let (reply, repeated): (Vec<redis::Value>, bool) =
                self.run_on_group("reclaim", &cmd).await?;
            if repeated {
                self.pending = Some("0".to_owned());
            }
            let mut parts = reply.into_iter();
            let (Some(next), Some(entries)) = (parts.next(), parts.next()) else {
                return Err(corrupt("XAUTOCLAIM reply", "fewer than two elements"));
            };
            let next =
                String::from_redis_value(next).map_err(|e| corrupt("XAUTOCLAIM reply", e))?;
            let entries =
                Entries::from_redis_value(entries).map_err(|e| corrupt("XAUTOCLAIM reply", e))?;
            out.extend(self.deliveries(entries).await?);
            if next == "0-0" {
                break;
            }
            start = next;
        }
        Ok(out)
    }

    /// `XREADGROUP … STREAMS <log> <id>`: the entries and whether the reply is a repeat's.
    async fn read_group(&self, id: &str, count: usize) -> Result<(Entries, bool)> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.log)
            .arg(id);
        let (reply, repeated): (Option<Vec<(String, Entries)>>, bool) =
            self.run_on_group("next", &cmd).await?;
        let entries = reply
            .into_iter()
            .flatten()
            .find_map(|(key, entries)| (key == self.log).then_some(entries))
            .unwrap_or_default();
        Ok((entries, repeated))
    }

    /// Runs `cmd`; when the group is missing (`NOGROUP`), creates it and runs `cmd` again.
    async fn run_on_group<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<(T, bool)> {
        self.shared
            .query_on_group(op, cmd, &self.log, &self.group)
            .await
    }

    /// Decodes entries; entries no longer in the log are acknowledged and dropped, entries that
    /// do not decode are left pending (for an operator: `XPENDING`) and skipped.
    async fn deliveries(&self, entries: Entries) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(entries.len());
        let mut gone = Vec::new();
        for (id, fields) in entries {
            let Some(fields) = fields else {
                gone.push(id);
                continue;
            };
            let decoded = fields
                .into_iter()
                .find_map(|(f, v)| (f == "m").then_some(v))
                .ok_or_else(|| corrupt("bus entry", format!("{id} has no field m")))
                .and_then(|json| wire::decode_message(&json));
            match decoded {
                Ok(message) => out.push(Delivery { id, message }),
                Err(e) => tracing::warn!(
                    log = %self.log, group = %self.group, %id, error = %e,
                    "skipping an undecodable bus entry; it stays pending"
                ),
            }
        }
        if !gone.is_empty() {
            tracing::warn!(
                log = %self.log, group = %self.group, entries = ?gone,
                "pending entries no longer in the log (trimmed or cleared); acknowledging them"
            );
            self.ack_ids(&gone).await?;
        }
        Ok(out)
    }

    async fn ack_ids(&self, ids: &[String]) -> Result<()> {
        let _: i64 = self
            .shared
            .query(
                &*redis::cmd("XACK").arg(&self.log).arg(&self.group).arg(ids),
                "ack",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }
}
