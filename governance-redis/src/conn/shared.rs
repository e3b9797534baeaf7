//! [`Shared`]: one shared connection, the scripts and the pub/sub hub of a backend, and the
//! outage/retry helper every operation runs through ([`Shared::execute`], [`Shared::append`]).

use std::sync::Arc;
use std::time::Instant;

use governance_core::{Error, PipelineId, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult};

use super::config::RedisConfig;
use super::error::{
    Effect, certainly_not_applied, map_redis_error, outcome_unknown, sanitize, unknown_outcome,
};
use super::subscriber::{Decode, Hub};
use crate::keys::PipelineKeys;
use crate::scripts::Scripts;

impl Shared {
    /// Parses the URL, connects and loads the scripts; the pub/sub hub decodes live messages
    /// with `decode`.
    ///
    /// # Errors
    /// See [`RedisBackend::connect`](crate::RedisBackend::connect).
    pub(crate) async fn connect(config: RedisConfig, decode: Decode) -> Result<Arc<Self>> {
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
                let op = if config.url.starts_with("rediss://") {
                    "connect (TLS: is the server listening for TLS on this port?)"
                } else {
                    "connect"
                };
                let mapped = map_redis_error(&e, op, Effect::Read, secret.as_deref());
                tracing::warn!(url = %config.redacted_url(), error = %mapped, "redis connect failed");
                mapped
            })?;
        let hub = Hub::new(client.clone(), &config, decode);
        let scripts = Scripts::new();
        let shared = Arc::new(Self {
            client,
            conn,
            secret,
            scripts,
            hub,
            config,
        });
        shared.load_scripts().await?;
        tracing::debug!(url = %shared.config.redacted_url(), "redis backend connected");
        Ok(shared)
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
    pub(crate) client: Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) secret: Option<String>,
    pub(crate) scripts: Scripts,
    pub(crate) hub: Hub,
    pub(crate) config: RedisConfig,
}

impl Shared {
    pub(crate) fn keys(&self, pipeline: &PipelineId) -> PipelineKeys {
        PipelineKeys::new(&self.config.key_prefix, pipeline)
    }

    pub(crate) fn err(&self, e: &redis::RedisError, op: &'static str, effect: Effect) -> Error {
        let mapped = map_redis_error(e, op, effect, self.secret.as_deref());
        tracing::debug!(op, error = %mapped, "redis operation failed");
        mapped
    }

    /// One `PING`, bounded by [`RedisConfig::probe_timeout`]; never rides out an outage.
    pub(crate) async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let bound = self.config.probe_timeout;
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(bound, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.err(&e, "ping", Effect::Read)),
            Err(_) => Err(Error::backend(
                super::error::BACKEND,
                format!(
                    "{}: ping: no reply within {} ms",
                    self.config.redacted_url(),
                    bound.as_millis()
                ),
                true,
            )),
        }
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
            &s.append_state,
            &s.lease_acquire,
            &s.lease_renew,
            &s.lease_release,
            &s.cost_reserve,
            &s.cost_settle,
            &s.cost_seed,
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
        self.run_script_resolving(script, keys, args, op, effect)
            .await
            .map(|(v, _)| v)
    }

    /// Like [`Self::run_script`]; the flag is `true` when the first attempt's outcome was
    /// unknown and the returned reply is the one of a repeat (idempotent scripts only).
    pub(crate) async fn run_script_resolving<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
        op: &'static str,
        effect: Effect,
    ) -> Result<(T, bool)> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let invocation = &invocation;
        self.execute(op, effect, move |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs a command or an atomic pipeline.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        cmd: &(impl QueryAsync + ?Sized),
        op: &'static str,
        effect: Effect,
    ) -> Result<T> {
        self.execute(op, effect, move |mut conn| async move {
            cmd.run(&mut conn).await
        })
        .await
        .map(|(v, _)| v)
    }

    /// Runs `attempt`. When the connection is lost (the command certainly did not run, or its
    /// reply was lost), it is repeated until it gets a reply or
    /// [`RedisConfig::outage_timeout`] has passed; the flag is `true` when the returned
    /// reply is a repeat's. Appends go through [`Self::append`] instead.
    pub(crate) async fn execute<T, F, Fut>(
        &self,
        op: &'static str,
        effect: Effect,
        attempt: F,
    ) -> Result<(T, bool)>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match attempt(self.conn.clone()).await {
            Ok(v) => Ok((v, false)),
            Err(e) if effect == Effect::Append && !certainly_not_applied(&e) => {
                Err(self.err(&e, op, effect))
            }
            Err(e) if certainly_not_applied(&e) || outcome_unknown(&e) => self
                .resolve(op, effect, e, || async {
                    attempt(self.conn.clone()).await.map(Some)
                })
                .await
                .map(|v| (v, true)),
            Err(e) => Err(self.err(&e, op, effect)),
        }
    }

    /// Runs an append (`attempt`). After a lost connection, `check` (a read) tells whether an
    /// earlier attempt was applied (and with what result); it is repeated only when not.
    pub(crate) async fn append<T, F, Fut, C, CFut>(
        &self,
        op: &'static str,
        attempt: F,
        check: C,
    ) -> Result<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
        C: Fn(ConnectionManager) -> CFut,
        CFut: Future<Output = RedisResult<Option<T>>>,
    {
        match attempt(self.conn.clone()).await {
            Ok(v) => Ok(v),
            Err(e) if certainly_not_applied(&e) || outcome_unknown(&e) => {
                self.resolve(op, Effect::Append, e, || async {
                    match check(self.conn.clone()).await? {
                        Some(v) => Ok(Some(v)),
                        None => attempt(self.conn.clone()).await.map(Some),
                    }
                })
                .await
            }
            Err(e) => Err(self.err(&e, op, Effect::Append)),
        }
    }

    /// Rides out a lost connection after the first attempt failed with `first`: calls
    /// `settle` (which repeats a read or an idempotent write, or checks whether an append was
    /// applied and appends only if not) until it answers `Some`, for at most
    /// [`RedisConfig::outage_timeout`]. When that passes, the error is retryable only if no
    /// attempt of a write may have been applied.
    pub(crate) async fn resolve<T, F, Fut>(
        &self,
        op: &'static str,
        effect: Effect,
        first: RedisError,
        settle: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = RedisResult<Option<T>>>,
    {
        let mut unknown = may_have_applied(&first);
        tracing::debug!(op, error = %self.err(&first, op, effect), "connection lost; retrying");
        let deadline = Instant::now() + self.config.outage_timeout;
        let mut delay = self.config.reconnect_min_delay;
        let mut last = first;
        while Instant::now() < deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.config.reconnect_max_delay);
            match settle().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) if certainly_not_applied(&e) || outcome_unknown(&e) => {
                    unknown |= may_have_applied(&e);
                    last = e;
                }
                Err(e) => return Err(self.err(&e, op, effect)),
            }
        }
        if unknown && effect != Effect::Read {
            let e = unknown_outcome(&last, op, effect, self.secret.as_deref());
            tracing::debug!(op, error = %e, "outcome still unknown");
            return Err(e);
        }
        Err(self.err(&last, op, effect))
    }
}

/// Whether a failed attempt may have run on the server (its reply was lost).
fn may_have_applied(e: &RedisError) -> bool {
    !certainly_not_applied(e) && outcome_unknown(e)
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
