//! The pub/sub hub: one dedicated pub/sub connection per backend that fans live messages out
//! to subscribers and resubscribes every channel after a connection loss (redis-rs's plain
//! pub/sub connection does not reconnect by itself).

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use governance_core::{Error, Message, Result};
use redis::Client;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::config::RedisConfig;
use super::error::{BACKEND, sanitize};

/// Turns a published payload into a [`Message`]: the wire format's decoder, handed in by the
/// layer that owns the format, so the connection layer does not depend on it.
pub(crate) type Decode = fn(&str) -> Result<Message>;

/// How often an idle pub/sub connection is checked with `PING`.
const PING_INTERVAL: Duration = Duration::from_secs(5);

enum Command {
    Subscribe {
        channel: String,
        reply: oneshot::Sender<Result<broadcast::Receiver<Message>>>,
    },
    Unsubscribe {
        channel: String,
    },
}

struct Settings {
    client: Client,
    secret: Option<String>,
    url: String,
    connection_timeout: Duration,
    response_timeout: Duration,
    min_delay: Duration,
    max_delay: Duration,
    buffer: usize,
    decode: Decode,
}

/// Handle to the hub task (started on the first subscription).
pub(crate) struct Hub {
    settings: std::sync::Mutex<Option<Settings>>,
    commands: std::sync::Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl Hub {
    pub(crate) fn new(client: Client, config: &RedisConfig, decode: Decode) -> Self {
        let secret = config.password.clone().or_else(|| {
            client
                .get_connection_info()
                .redis_settings()
                .password()
                .map(str::to_owned)
        });
        Self {
            settings: std::sync::Mutex::new(Some(Settings {
                client,
                secret,
                url: config.redacted_url(),
                connection_timeout: config.connection_timeout,
                response_timeout: config.response_timeout,
                min_delay: config.reconnect_min_delay,
                max_delay: config.reconnect_max_delay,
                buffer: config.subscriber_buffer.max(1),
                decode,
            })),
            commands: std::sync::Mutex::new(None),
        }
    }

    fn sender(&self) -> Result<mpsc::UnboundedSender<Command>> {
        let mut commands = self
            .commands
            .lock()
            .map_err(|_| Error::Internal("pub/sub hub lock poisoned".into()))?;
        if let Some(tx) = commands.as_ref() {
            return Ok(tx.clone());
        }
        let settings = self
            .settings
            .lock()
            .map_err(|_| Error::Internal("pub/sub hub lock poisoned".into()))?
            .take()
            .ok_or_else(|| Error::Internal("pub/sub hub stopped".into()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(settings, rx));
        *commands = Some(tx.clone());
        Ok(tx)
    }

    /// Live messages of `channel`, from the moment the server confirmed the subscription.
    pub(crate) async fn subscribe(&self, channel: String) -> Result<BoxStream<'static, Message>> {
        let tx = self.sender()?;
        let (reply, answer) = oneshot::channel();
        tx.send(Command::Subscribe {
            channel: channel.clone(),
            reply,
        })
        .map_err(|_| Error::Internal("pub/sub hub stopped".into()))?;
        let rx = answer
            .await
            .map_err(|_| Error::Internal("pub/sub hub stopped".into()))??;
        let guard = Unsubscribe {
            channel: channel.clone(),
            tx,
        };
        Ok(
            futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
                loop {
                    match rx.recv().await {
                        Ok(m) => return Some((m, (rx, guard))),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                channel = %guard.channel,
                                missed = n,
                                "live subscriber fell behind; fill the gap with read()"
                            );
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .boxed(),
        )
    }
}

/// Drops one subscription when the subscriber's stream is dropped.
struct Unsubscribe {
    channel: String,
    tx: mpsc::UnboundedSender<Command>,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Unsubscribe {
            channel: std::mem::take(&mut self.channel),
        });
    }
}

struct Channel {
    sender: broadcast::Sender<Message>,
    subscribers: usize,
}

fn backend_err(s: &Settings, what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::backend(
        BACKEND,
        format!(
            "pub/sub {what}: {} (not subscribed; safe to retry)",
            sanitize(&e.to_string(), s.secret.as_deref())
        ),
        true,
    )
}

/// Handles a command; `sink` is `None` while disconnected. Returns `false` when the
/// connection failed.
async fn handle(
    s: &Settings,
    cmd: Command,
    channels: &mut HashMap<String, Channel>,
    sink: Option<&mut redis::aio::PubSubSink>,
) -> bool {
    match cmd {
        Command::Subscribe { channel, reply } => {
            if let Some(entry) = channels.get_mut(&channel) {
                entry.subscribers += 1;
                let _ = reply.send(Ok(entry.sender.subscribe()));
                return true;
            }
            let Some(sink) = sink else {
                let _ = reply.send(Err(backend_err(s, "connection down", &"reconnecting")));
                return true;
            };
            match tokio::time::timeout(s.response_timeout, sink.subscribe(&channel)).await {
                Ok(Ok(())) => {
                    let (sender, rx) = broadcast::channel(s.buffer);
                    channels.insert(
                        channel,
                        Channel {
                            sender,
                            subscribers: 1,
                        },
                    );
                    let _ = reply.send(Ok(rx));
                    true
                }
                Ok(Err(e)) => {
                    let _ = reply.send(Err(backend_err(s, "subscribe failed", &e)));
                    false
                }
                Err(e) => {
                    let _ = reply.send(Err(backend_err(s, "subscribe timed out", &e)));
                    false
                }
            }
        }
        Command::Unsubscribe { channel } => {
            let Some(entry) = channels.get_mut(&channel) else {
                return true;
            };
            entry.subscribers = entry.subscribers.saturating_sub(1);
            if entry.subscribers > 0 {
                return true;
            }
            channels.remove(&channel);
            match sink {
                Some(sink) => sink.unsubscribe(&channel).await.is_ok(),
                None => true,
            }
        }
    }
}

fn dispatch(s: &Settings, channels: &HashMap<String, Channel>, msg: &redis::Msg) {
    let Some(entry) = channels.get(msg.get_channel_name()) else {
        return;
    };
    let payload = String::from_utf8_lossy(msg.get_payload_bytes());
    match (s.decode)(&payload) {
        Ok(m) => {
            let _ = entry.sender.send(m);
        }
        Err(e) => tracing::warn!(url = %s.url, error = %e, "ignoring undecodable bus message"),
    }
}

async fn run(s: Settings, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut channels: HashMap<String, Channel> = HashMap::new();
    let mut delay = s.min_delay;
    let mut connected_before = false;
    loop {
        match tokio::time::timeout(s.connection_timeout, s.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut stream) = pubsub.split();
                let names: Vec<String> = channels.keys().cloned().collect();
                let resubscribed = names.is_empty()
                    || matches!(
                        tokio::time::timeout(s.response_timeout, sink.subscribe(&names)).await,
                        Ok(Ok(()))
                    );
                if resubscribed {
                    if connected_before {
                        tracing::info!(url = %s.url, channels = names.len(), "pub/sub reconnected and resubscribed");
                    }
                    connected_before = true;
                    delay = s.min_delay;
                    let mut ping = tokio::time::interval(PING_INTERVAL);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            cmd = commands.recv() => match cmd {
                                None => return,
                                Some(cmd) => if !handle(&s, cmd, &mut channels, Some(&mut sink)).await { break },
                            },
                            msg = stream.next() => match msg {
                                None => break,
                                Some(msg) => dispatch(&s, &channels, &msg),
                            },
                            _ = ping.tick() => {
                                // in subscribed mode PING answers an array: any reply means alive
                                let alive = tokio::time::timeout(s.response_timeout, sink.ping::<redis::Value>()).await;
                                if !matches!(alive, Ok(Ok(_))) { break }
                            }
                        }
                    }
                }
                tracing::warn!(url = %s.url, "pub/sub connection lost; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(url = %s.url, error = %sanitize(&e.to_string(), s.secret.as_deref()), "pub/sub connect failed");
            }
            Err(_) => tracing::warn!(url = %s.url, "pub/sub connect timed out"),
        }
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(cmd) => { handle(&s, cmd, &mut channels, None).await; }
                },
            }
        }
        delay = (delay * 2).min(s.max_delay);
    }
}
