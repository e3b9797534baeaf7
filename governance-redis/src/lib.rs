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
//! ## Where the password comes from
//! In this order of precedence: [`RedisConfig::with_password`] (wins), else the URL's userinfo
//! (`redis://:secret@host:6379`, `rediss://user:secret@host`). This crate reads no
//! environment variable or secret store itself (no backend depends on another). The example
//! server (`examples/src/backends.rs`) resolves it with
//! `governance_openrouter::resolve_dragonfly_password(&ChainSecretSource::from_lookup(env)?)`:
//! the environment first (`DRAGONFLY_PASSWORD`, then `REDIS_PASSWORD`), then Vault when
//! `VAULT_ADDR` is set (`secret/data/services/dragonfly`, field `password`); when one is found
//! it calls `RedisConfig::new(REDIS_URL).with_password(..)`, so a secret-store password
//! overrides one in `REDIS_URL`. An embedding service does the same with its own secret source.
//! The password is sent with `AUTH` on every (re)connection; it never appears in `Debug`,
//! errors or logs ([`redact_url`]).
//!
//! ## TLS
//! `rediss://` URLs connect over TLS (rustls with the aws-lc-rs provider; server certificates
//! are verified against the operating system's root store). A plain-text server behind a
//! `rediss://` URL shows up as a (retryable) connect timeout or I/O error whose message asks
//! whether the server listens for TLS.
//!
//! ## Keys and scripts
//! All keys of a pipeline share one hash tag, `gov:{<pipeline_id>}:…` ([`PipelineKeys`]), so
//! they live in one Redis Cluster slot / Dragonfly shard. Every multi-key update is one Lua
//! script ([`scripts`]) that declares all its keys in `KEYS[]`, run by `EVALSHA` and reloaded
//! automatically on `NOSCRIPT` (e.g. after a server restart). Payloads are JSON with `"v": 1`.
//!
//! ## Lossless consumption
//! [`RedisBus::read`](governance_core::MessageBus::read) replays the log from any `seq`; for
//! messages that one of several processes must handle, [`RedisBus::consumer`] joins a
//! Redis Streams consumer group ([`GroupConsumer`]): each message goes to one consumer, stays
//! pending until [acknowledged](GroupConsumer::ack), and a dead consumer's pending messages are
//! taken over with [`GroupConsumer::reclaim`]. Delivery is **at least once**: handlers must be
//! idempotent or dedupe by `seq`.
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
//! Every operation rides out a lost connection (a restarting server) for up to
//! [`RedisConfig::outage_timeout`] before it returns one of these errors: reads and writes
//! that certainly did not run are repeated; when a write's reply was lost (Redis went down
//! after receiving it) the backend learns the outcome itself: idempotent writes are repeated (a repeated `vote` whose first attempt was applied reports
//! that attempt: `recorded: true` and the consensus it decided), and appends (`publish`,
//! `add_solution`) look for their entry among the newest of the log / list and append only
//! when it is not there. Only a server that stays unreachable past that time turns into the
//! non-retryable "outcome unknown" error. The URL's password never appears in `Debug`,
//! errors or logs.

pub mod cluster;
mod conn;
mod coordination;
mod cost;
mod facade;
mod keys;
mod protocol;
pub mod remote;
pub mod scripts;
mod store;
mod wire;
mod worker;

pub use cluster::{Archiver, RedisLeases};
pub use conn::{BACKEND, Persistence, RedisConfig, redact_url};
pub use coordination::{Delivery, GroupConsumer, RedisBlackboard, RedisBus};
pub use cost::RedisCostLedger;
pub use facade::RedisBackend;
pub use keys::PipelineKeys;
pub use remote::{RemoteRole, WorkItem};
pub use store::{LedgerEntry, RedisStore, VerifyOutcome};
pub use wire::WIRE_VERSION;
pub use worker::Worker;
