//! # governance-redis
//!
//! The [`Blackboard`](governance_core::Blackboard) and
//! [`MessageBus`](governance_core::MessageBus) of governance pipelines on Redis or DragonflyDB,
//! so that several processes and machines (and agents written in other languages, see
//! `docs/wire-protocol.md`) share one pipeline.
//!
//! ```no_run
//! # async fn demo() -> governance_core::Result<()> {
//! use governance_redis::{RedisBackend, RedisConfig};
//! let backend = RedisBackend::connect(
//!     RedisConfig::new("redis://127.0.0.1:6379").with_password("from-your-secret-store"),
//! )
//! .await?;
//! let (blackboard, bus) = (backend.blackboard(), backend.bus());
//! # let _ = (blackboard, bus); Ok(()) }
//! ```
//!
//! ## Keys and scripts
//! All keys of a pipeline share one hash tag, `gov:{<pipeline_id>}:…` ([`PipelineKeys`]), so
//! they live in one Redis Cluster slot / Dragonfly shard. Every multi-key update is one Lua
//! script ([`scripts`]) that declares all its keys in `KEYS[]`, run by `EVALSHA` and reloaded
//! automatically on `NOSCRIPT` (e.g. after a server restart). Payloads are JSON with `"v": 1`.
//!
//! ## Connection loss and errors
//! Commands share one multiplexed [`redis::aio::ConnectionManager`] that reconnects by itself;
//! a restarted server needs no restarted process. Errors are
//! [`Error::Backend`](governance_core::Error::Backend) with `backend: "redis"`:
//! - `retryable: true` — the operation was **certainly not applied** (server unreachable,
//!   loading, read-only replica, ...), or it is a read;
//! - `retryable: false` with "outcome unknown" — the connection failed after the command may
//!   have been sent. Blackboard writes other than `add_solution` are idempotent and safe to
//!   repeat (see [`RedisBlackboard`]); `add_solution` and `publish` append, so check first.
//!
//! Nothing is retried silently except an attempt that certainly was not applied (once). The
//! URL's password never appears in `Debug`, errors or logs.

mod backend;
mod blackboard;
mod bus;
mod config;
mod error;
mod keys;
pub mod scripts;
mod subscriber;
mod wire;

pub use backend::RedisBackend;
pub use blackboard::RedisBlackboard;
pub use bus::RedisBus;
pub use config::{RedisConfig, redact_url};
pub use error::BACKEND;
pub use keys::PipelineKeys;
pub use wire::WIRE_VERSION;
