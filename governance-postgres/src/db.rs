//! [`Db`]: the connection pool and the one place that rides out a lost connection. Every
//! operation runs through [`Db::read`] or [`Db::write`]; a transient failure (see
//! [`crate::errors`]) is repeated on a fresh connection with backoff until it succeeds or
//! [`PgConfig::outage_timeout`](crate::PgConfig::outage_timeout) has passed, then returned as
//! a retryable error. Repeating a write is safe because every write of this crate is
//! idempotent (an identical ledger entry is skipped, a checkpoint identical to the latest is
//! not stored twice, a record is replaced, an exchange is keyed by its digest).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use futures::future::BoxFuture;
use governance_core::{Error, Result};
use tokio_postgres::NoTls;

use crate::config::PgConfig;
use crate::errors::{BACKEND, OpError};

/// First delay between two attempts of an operation hit by a lost connection.
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The pool and what errors name.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: Pool,
    pub(crate) target: String,
    pub(crate) outage: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A read: runs on a pooled client; captured values are cloned into the future.
pub(crate) type ReadFn<'f, T> = dyn for<'c> Fn(&'c deadpool_postgres::Client) -> BoxFuture<'c, Result<T, OpError>>
    + Send
    + Sync
    + 'f;

/// A write: runs inside one transaction.
pub(crate) type WriteFn<'f, T> =
    dyn for<'c, 't> Fn(&'c Transaction<'t>) -> BoxFuture<'c, Result<T, OpError>> + Send + Sync + 'f;

impl Db {
    /// Builds the pool (connects lazily).
    pub(crate) fn new(config: &PgConfig) -> Result<Self> {
        let pg = config.driver_config()?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.outage_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| {
                Error::backend(
                    BACKEND,
                    format!("{}: cannot build the connection pool: {e}", config.target()),
                    false,
                )
            })?;
        Ok(Self {
            pool,
            target: config.target(),
            outage: config.outage_timeout,
        })
    }

    /// Runs `f` on a pooled connection, riding out a lost connection.
    pub(crate) async fn read<T>(&self, doing: &str, f: &ReadFn<'_, T>) -> Result<T> {
        let mut retry = Retry::new(self.outage);
        loop {
            let attempt = async {
                let client = self.pool.get().await?;
                f(&client).await
            };
            match attempt.await {
                Ok(v) => return Ok(retry.done(v, &self.target, doing)),
                Err(e) => retry.again(e, &self.target, doing).await?,
            }
        }
    }

    /// Runs `f` in one transaction (committed when it returns `Ok`, rolled back otherwise),
    /// riding out a lost connection.
    pub(crate) async fn write<T>(&self, doing: &str, f: &WriteFn<'_, T>) -> Result<T> {
        let mut retry = Retry::new(self.outage);
        loop {
            let attempt = async {
                let mut client = self.pool.get().await?;
                let tx = client.transaction().await?;
                match f(&tx).await {
                    Ok(v) => {
                        tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => {
                        // a failed statement already aborted it; dropping it rolls back too
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            };
            match attempt.await {
                Ok(v) => return Ok(retry.done(v, &self.target, doing)),
                Err(e) => retry.again(e, &self.target, doing).await?,
            }
        }
    }

    /// A pooled connection, riding out a server that does not answer yet.
    pub(crate) async fn get_client(&self, doing: &str) -> Result<deadpool_postgres::Client> {
        let mut retry = Retry::new(self.outage);
        loop {
            match self.pool.get().await {
                Ok(c) => return Ok(retry.done(c, &self.target, doing)),
                Err(e) => retry.again(OpError::Pool(e), &self.target, doing).await?,
            }
        }
    }

    /// One statement on a pooled connection, once (for health checks): no ride-out.
    pub(crate) async fn ping(&self) -> Result<()> {
        let run = async {
            let client = self.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok::<(), OpError>(())
        };
        run.await.map_err(|e| e.into_error(&self.target, "ping"))
    }
}

/// The backoff of one operation hit by transient failures.
pub(crate) struct Retry {
    deadline: tokio::time::Instant,
    delay: Duration,
    failures: u32,
}

impl Retry {
    pub(crate) fn new(outage: Duration) -> Self {
        Self {
            deadline: tokio::time::Instant::now() + outage,
            delay: FIRST_DELAY,
            failures: 0,
        }
    }

    /// Passes `v` through, logging that the database answers again after failures.
    pub(crate) fn done<T>(&self, v: T, target: &str, doing: &str) -> T {
        if self.failures > 0 {
            tracing::info!(target_db = %target, doing, failures = self.failures, "PostgreSQL answers again");
        }
        v
    }

    /// Sleeps before the next attempt when `e` is transient and time is left; otherwise
    /// returns `e` as the operation's error.
    pub(crate) async fn again(&mut self, e: OpError, target: &str, doing: &str) -> Result<()> {
        if !e.is_transient() || tokio::time::Instant::now() + self.delay >= self.deadline {
            return Err(e.into_error(target, doing));
        }
        self.failures += 1;
        if self.failures == 1 {
            let err = e.into_error(target, doing);
            tracing::warn!(error = %err, "PostgreSQL operation failed; retrying on a fresh connection");
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Ok(())
    }
}
