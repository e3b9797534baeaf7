//! [`RedisBackend`]: the public face of the crate; it connects and hands out the blackboard,
//! the bus, the durable store and the cluster leases, all on one [`Shared`] connection.

use std::fmt;
use std::sync::Arc;

use governance_core::{Blackboard, MessageBus, PipelineId, Result};

use crate::cluster::RedisLeases;
use crate::conn::{RedisConfig, Shared};
use crate::coordination::{RedisBlackboard, RedisBus};
use crate::keys::PipelineKeys;
use crate::store::RedisStore;
use crate::wire;

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
    /// [`Error::Config`](governance_core::Error::Config) (variable `REDIS_URL`) when the URL does
    /// not parse or the key prefix is invalid; [`Error::Backend`](governance_core::Error::Backend)
    /// when the server cannot be reached (retryable) or refuses the credentials. No error
    /// contains the password.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        Ok(Self {
            shared: Shared::connect(config, wire::decode_message).await?,
        })
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

    /// The money-budget ledger on this backend, shared by every process on this Redis
    /// (give it to [`GovernanceBuilder::cost_ledger`](governance_core::GovernanceBuilder::cost_ledger)).
    #[must_use]
    pub fn cost_ledger(&self) -> Arc<dyn governance_core::CostLedger> {
        Arc::new(crate::cost::RedisCostLedger::new(self.shared.clone()))
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

    /// The audit ledger, checkpoints and pipeline registry on this backend (for several server
    /// nodes sharing one Redis; see [`RedisStore`]).
    #[must_use]
    pub fn store(&self) -> RedisStore {
        RedisStore::new(self.shared.clone(), None)
    }

    /// Pipeline ownership leases for the node `node_id` (see [`RedisLeases`]),
    /// and a [`RedisStore`] whose writes are fenced by them.
    ///
    /// # Errors
    /// [`Error::Config`](governance_core::Error::Config) for an invalid node id or a lease shorter than 300 ms.
    pub fn cluster(
        &self,
        node_id: &str,
        lease: std::time::Duration,
    ) -> Result<(RedisLeases, RedisStore)> {
        RedisLeases::new(self.shared.clone(), node_id, lease)
    }

    /// What the server says about its persistence (`CONFIG GET appendonly`); cluster mode
    /// without another system of record needs [`Persistence::AppendOnly`](crate::Persistence).
    ///
    /// # Errors
    /// The server is unreachable.
    pub async fn persistence(&self) -> Result<crate::Persistence> {
        self.shared.persistence().await
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The key names of `pipeline` under this backend's prefix.
    #[must_use]
    pub fn keys(&self, pipeline: &PipelineId) -> PipelineKeys {
        self.shared.keys(pipeline)
    }
}
