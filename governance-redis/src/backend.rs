//! [`RedisBackend`]: one shared connection, the scripts and the pub/sub hub.

use std::fmt;
use std::sync::Arc;

use governance_core::{Blackboard, Error, MessageBus, PipelineId, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisResult};

use crate::blackboard::RedisBlackboard;
use crate::bus::RedisBus;
use crate::config::RedisConfig;
use crate::error::{Effect, certainly_not_applied, map_redis_error, sanitize};
use crate::keys::PipelineKeys;
use crate::scripts::Scripts;
use crate::subscriber::Hub;

/// A connected Redis / DragonflyDB backend: hands out a [`Blackboard`] and a [`MessageBus`]
/// that share one multiplexed, self-reconnecting connection (plus one dedicated pub/sub
/// connection for live subscriptions, opened on first use).
///
/// # Example
/// ```no_run
/// # async fn demo() -> governance_core::Result<()> {
/// use governance_redis::{RedisBackend, RedisConfig};
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let blackboard = backend.blackboard();
/// let bus = backend.bus();
/// # let _ = (blackboard, bus); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Parses the URL, connects and loads the scripts.
    ///
    /// # Errors
    /// [`Error::Config`] (variable `REDIS_URL`) when the URL does not parse or the key prefix is
    /// invalid; [`Error::Backend`] when the server cannot be reached (retryable) or refuses the
    /// credentials. No error contains the password.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let secret = secret_of(&config);
        if config.key_prefix.is_empty()
            || config
                .key_prefix
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace())
        {
            return Err(Error::config(
                "key_prefix",
                "must be non-empty without '{', '}' or whitespace",
            ));
        }
        let mut info = config.url.as_str().into_connection_info().map_err(|e| {
            Error::config(
                "REDIS_URL",
                format!(
                    "{}: {}",
                    config.redacted_url(),
                    sanitize(&e.to_string(), secret.as_deref())
                ),
            )
        })?;
        if let Some(pw) = &config.password {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info).map_err(|e| {
            Error::config(
                "REDIS_URL",
                format!(
                    "{}: {}",
                    config.redacted_url(),
                    sanitize(&e.to_string(), secret.as_deref())
                ),
            )
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(config.reconnect_attempts)
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(config.reconnect_max_delay);
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| {
                let mapped = map_redis_error(&e, "connect", Effect::Read, secret.as_deref());
                tracing::warn!(url = %config.redacted_url(), error = %mapped, "redis connect failed");
                mapped
            })?;
        let hub = Hub::new(client, &config);
        let scripts = Scripts::new();
        let shared = Arc::new(Shared {
            conn,
            secret,
            scripts,
            hub,
            config,
        });
        shared.load_scripts().await?;
        tracing::debug!(url = %shared.config.redacted_url(), "redis backend connected");
        Ok(Self { shared })
    }

    /// The blackboard on this backend.
    #[must_use]
    pub fn blackboard(&self) -> Arc<dyn Blackboard> {
        Arc::new(self.redis_blackboard())
    }

    /// The message bus on this backend.
    #[must_use]
    pub fn bus(&self) -> Arc<dyn MessageBus> {
        Arc::new(self.redis_bus())
    }

    /// The blackboard as its concrete type.
    #[must_use]
    pub fn redis_blackboard(&self) -> RedisBlackboard {
        RedisBlackboard::new(self.shared.clone())
    }

    /// The message bus as its concrete type.
    #[must_use]
    pub fn redis_bus(&self) -> RedisBus {
        RedisBus::new(self.shared.clone())
    }

    /// The key names of `pipeline` under this backend's prefix.
    #[must_use]
    pub fn keys(&self, pipeline: &PipelineId) -> PipelineKeys {
        self.shared.keys(pipeline)
    }
}

fn secret_of(config: &RedisConfig) -> Option<String> {
    config.password.clone().or_else(|| {
        config
            .url
            .as_str()
            .into_connection_info()
            .ok()
            .and_then(|i| i.redis_settings().password().map(str::to_owned))
    })
}

/// State shared by the blackboard and the bus of one backend.
pub(crate) struct Shared {
    pub(crate) conn: ConnectionManager,
    pub(crate) secret: Option<String>,
    pub(crate) scripts: Scripts,
    pub(crate) hub: Hub,
    pub(crate) config: RedisConfig,
}

/// How often an operation is attempted when it certainly was not applied (the first failure
/// after a server restart is the shared connection noticing it is gone).
const ATTEMPTS: usize = 2;

impl Shared {
    pub(crate) fn keys(&self, pipeline: &PipelineId) -> PipelineKeys {
        PipelineKeys::new(&self.config.key_prefix, pipeline)
    }

    pub(crate) fn err(&self, e: &redis::RedisError, op: &'static str, effect: Effect) -> Error {
        let mapped = map_redis_error(e, op, effect, self.secret.as_deref());
        tracing::debug!(op, error = %mapped, "redis operation failed");
        mapped
    }

    async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let s = &self.scripts;
        for script in [
            &s.create_proposal,
            &s.vote,
            &s.create_handoff,
            &s.claim_handoff,
            &s.restore,
            &s.publish,
        ] {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(|e| self.err(&e, "script load", Effect::Read))?;
        }
        Ok(())
    }

    /// Runs `script` (EVALSHA, reloaded on NOSCRIPT) with `keys` and `args`.
    pub(crate) async fn run_script<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
        op: &'static str,
        effect: Effect,
    ) -> Result<T> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut conn = self.conn.clone();
            let r: RedisResult<T> = invocation.invoke_async(&mut conn).await;
            match r {
                Ok(v) => return Ok(v),
                Err(e) if certainly_not_applied(&e) => last = Some(e),
                Err(e) => return Err(self.err(&e, op, effect)),
            }
        }
        Err(self.err(&last.expect("at least one attempt"), op, effect))
    }

    /// Runs a command or an atomic pipeline.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        cmd: &(impl QueryAsync + ?Sized),
        op: &'static str,
        effect: Effect,
    ) -> Result<T> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut conn = self.conn.clone();
            match cmd.run(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) if certainly_not_applied(&e) => last = Some(e),
                Err(e) => return Err(self.err(&e, op, effect)),
            }
        }
        Err(self.err(&last.expect("at least one attempt"), op, effect))
    }
}

/// A [`redis::Cmd`] or [`redis::Pipeline`].
pub(crate) trait QueryAsync: Sync {
    fn run<'a, T: FromRedisValue + 'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> futures::future::BoxFuture<'a, RedisResult<T>>;
}

impl QueryAsync for redis::Cmd {
    fn run<'a, T: FromRedisValue + 'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> futures::future::BoxFuture<'a, RedisResult<T>> {
        Box::pin(self.query_async(conn))
    }
}

impl QueryAsync for redis::Pipeline {
    fn run<'a, T: FromRedisValue + 'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> futures::future::BoxFuture<'a, RedisResult<T>> {
        Box::pin(self.query_async(conn))
    }
}
