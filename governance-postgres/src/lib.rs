//! # governance-postgres
//!
//! The system of record of a governance deployment on PostgreSQL: the hash-chained,
//! append-only audit ledger, checkpoints, the pipeline registry and recorded LLM exchanges
//! ([`PgStore`], a [`governance_core::StateStore`] and [`governance_core::ExchangeStore`]),
//! and pipeline ownership leases whose fencing tokens the database checks inside every
//! write's transaction, for several server nodes ([`PgLeases`], a
//! [`governance_core::Ownership`]; see [`PgStore::cluster`]).
//!
//! ```no_run
//! # async fn demo() -> governance_core::Result<()> {
//! use governance_core::LedgerStore;
//! use governance_postgres::{PgConfig, PgStore};
//! let store = PgStore::connect(PgConfig::new("postgres://gov@127.0.0.1/gov")).await?;
//! let id = governance_core::PipelineId::new("p1")?;
//! assert_eq!(store.last_seq(&id).await?, 0);
//! assert!(store.verify().await?.is_intact());
//! # Ok(()) }
//! ```
//!
//! ## Why tokio-postgres and deadpool-postgres
//! `tokio-postgres` is the asynchronous driver under most of the Rust PostgreSQL ecosystem
//! (`postgres`, `deadpool-postgres`, `bb8-postgres`, `refinery`): pure Rust, no libpq, no
//! compile-time database access (sqlx's checked macros need a live database or an offline
//! cache at build time; its runtime API would work, but brings a larger dependency tree and
//! its own pool). Pipelining, `LISTEN`/`NOTIFY` (for the cluster's wake-ups) and binary
//! arrays (`UNNEST` inserts) come with it. `deadpool-postgres` is the small, well-kept pool
//! built for it: a statement cache per connection, `is_closed` recycling (a connection the
//! server dropped is replaced, so a restarted server needs no restarted process), and
//! timeouts on waiting and connecting. TLS is not built in: connect over a trusted network
//! or a local socket / sidecar (`sslmode=require` fails with a clear error).
//!
//! ## What is durable when
//! Every write is one transaction and returns `Ok` only after its `COMMIT`. With the
//! server's default `synchronous_commit = on` the commit's WAL record is flushed first, so
//! **`Ok` means on disk** (with a synchronous standby, also there). A status change
//! ([`governance_core::StateStore::commit`]: its events, checkpoint and registry record) is
//! one transaction: all or nothing.
//!
//! ## Writes: group commit
//! Writes are queued to a few writer tasks (a quarter of [`PgConfig::pool_size`], by
//! pipeline, so one pipeline's writes stay in order on one writer). A writer takes whatever
//! is queued (up to 256 writes) and runs it in one transaction, one WAL flush for the group:
//! one pipeline's writes in order, different pipelines' writes pipelined on the connection.
//! A write refused by the rules (a ledger conflict, a stale fencing token) has written
//! nothing and fails alone; a database failure rolls the group back and is ridden out (see
//! below) or fails every write of the group.
//!
//! ## Connection loss
//! Each operation rides out a lost connection (a restarting server, a failover) for
//! [`PgConfig::outage_timeout`] (10 s): connection and I/O errors, serialization failures,
//! deadlocks, an administrator's shutdown and a server that is still starting are repeated
//! on a fresh connection with backoff; past the timeout they are returned as *retryable*
//! [`governance_core::Error::Backend`] errors, which the engine's durable-write policy keeps
//! retrying (the pipeline waits and goes on when the database is back). Repeating a write
//! whose `COMMIT` reply was lost is safe: every write here is idempotent (an identical
//! ledger entry is skipped, a checkpoint identical to the latest is not stored twice, a
//! record is replaced, an exchange is keyed by its digest). Unique violations and the
//! ledger's append-only triggers are [`governance_core::Error::Conflict`]; a lost lease is
//! [`governance_core::Error::Fenced`]. No message contains the URL's password
//! ([`redact_url`]).
//!
//! ## Tables (schema version [`SCHEMA_VERSION`], in `governance_migrations`)
//! - `ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash)`, primary key
//!   `(pipeline_id, seq)`; triggers refuse `UPDATE`, `DELETE` and `TRUNCATE`. `ts` is
//!   nanoseconds since the epoch, `data` the event's data as compact JSON without
//!   `pipeline_id` (exactly what is hashed).
//! - `checkpoints (id, pipeline_id, seq, status, is_final, created_at, digest, body)`;
//!   saving a final checkpoint deletes the pipeline's intermediate ones.
//! - `pipelines (id, status, created_at, updated_at, record)`: the registry.
//! - `llm_exchanges (id, pipeline_id, agent_id, recorded_at, digest, request, response)`.
//! - `leases (pipeline_id, owner, token, expires_at)`, the sequence `lease_tokens`, and
//!   `commands (pipeline_id, command, created_at)` (cluster mode, see [`PgLeases`]).
//!
//! Migrations run in [`PgStore::connect`], each in its own transaction under a
//! `pg_advisory_xact_lock`, so nodes starting together do not race; a database with a newer
//! schema is refused. [`PgConfig::schema`] puts every table in one schema (created when
//! missing), so several deployments or test runs share a database.
//!
//! ## Hash chain
//! [`governance_core::LedgerRow::hash`], the same as SQLite's and Redis's:
//! `SHA-256(prev_hash ‖ field(pipeline_id) ‖ seq ‖ field(type) ‖ field(agent_id) ‖ ts ‖
//! field(data))`. [`PgStore::verify`] (`governance ledger verify --database-url URL`) walks
//! every chain and names the first broken entry of each.

mod config;
mod db;
mod errors;
mod exchange_store;
mod fence;
mod group;
mod leases;
mod ledger;
mod listen;
mod ops;
mod registry;
mod rows;
mod schema;
mod store;
mod verify;

pub use config::{PgConfig, check_schema, redact_url};
pub use errors::BACKEND;
pub use leases::PgLeases;
pub use schema::SCHEMA_VERSION;
pub use store::PgStore;
pub use verify::{BrokenEntry, VerifyReport};
