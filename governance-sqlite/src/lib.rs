//! # governance-sqlite
//!
//! The system of record of a governance deployment on one SQLite file: the hash-chained,
//! append-only audit ledger ([`governance_core::LedgerStore`]), checkpoints
//! ([`governance_core::CheckpointStore`]), the pipeline registry
//! ([`governance_core::PipelineRegistry`]) and recorded LLM exchanges, all served by
//! [`SqliteStore`]; [`verify`] checks every ledger chain of a file.
//!
//! ```no_run
//! # async fn demo() -> governance_core::Result<()> {
//! use governance_core::LedgerStore;
//! let store = governance_sqlite::SqliteStore::open("governance.db").await?;
//! let id = governance_core::PipelineId::new("p1")?;
//! assert_eq!(store.last_seq(&id).await?, 0);
//! let report = governance_sqlite::verify("governance.db")?;
//! assert!(report.is_intact());
//! # Ok(()) }
//! ```
//!
//! ## Storage
//! - WAL journal, `synchronous=FULL`, `busy_timeout`, foreign keys on. A write is acknowledged
//!   only after the `COMMIT` that holds it, so `Ok` means it survives a crash or power loss.
//! - One writer thread batches concurrent writes into one transaction (group commit); each
//!   caller's write runs in its own savepoint, so a rejected ledger batch never fails another
//!   caller's write. Reads use a small pool of read connections on the blocking thread pool.
//! - Schema version in `PRAGMA user_version` ([`SCHEMA_VERSION`]); older files are migrated on
//!   open, newer ones are refused with both versions in the message.
//! - Ledger rows: `(pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash)`, primary key
//!   `(pipeline_id, seq)`, never updated or deleted (triggers abort both). `ts` is stored as
//!   nanoseconds since the epoch, `data` as compact JSON. The entry hash is
//!   `SHA-256(prev_hash ‖ field(pipeline_id) ‖ seq u64 BE ‖ field(type) ‖ field(agent_id or "")
//!   ‖ ts i64 BE ‖ field(data))` with `field(x) = len(x) u32 BE ‖ x` and `prev_hash` = 32 zero
//!   bytes for `seq` 1.
//! - Retention: the final checkpoint of a pipeline replaces its intermediate checkpoints (same
//!   transaction). The ledger is never compacted.
//!
//! ## Errors
//! Every failure is [`governance_core::Error::Backend`] with `backend: "sqlite"` and a message
//! that starts with the file's path; `retryable` is `true` for transient conditions (busy,
//! locked, disk full, I/O) where the write was certainly not applied.

mod checkpoints;
mod errors;
mod exchanges;
mod ledger;
mod readers;
mod registry;
mod schema;
mod store;
mod verify;
mod writer;

pub use exchanges::LlmExchange;
pub use schema::SCHEMA_VERSION;
pub use store::{SqliteOptions, SqliteStore};
pub use verify::{BrokenEntry, VerifyReport, verify};
