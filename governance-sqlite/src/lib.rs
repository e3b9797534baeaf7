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
//! ## What is durable when
//! The writer connection runs in WAL mode with `synchronous=FULL`. Every write (ledger append,
//! checkpoint, registry upsert, LLM exchange) returns `Ok` only after the `COMMIT` of the
//! transaction that holds it, and with `synchronous=FULL` that commit fsyncs the WAL: **`Ok`
//! means committed and on disk**; it survives a process crash (`kill -9`) and a power loss on
//! storage that honours fsync. A write that returned an error, or whose future was dropped
//! before it answered, may or may not be stored — never half of it: a ledger batch is all or
//! none. Readers see every acknowledged write. Committed frames are moved from the WAL into
//! the main file by SQLite's automatic checkpoint (every ~1,000 WAL pages, on the writer
//! thread after a commit); a crash during it loses nothing, the WAL is replayed on the next
//! open.
//!
//! ## Writes: one writer, group commit
//! One writer thread owns the only writing connection. It takes whatever is queued (up to
//! 4,096 jobs), runs it in one `BEGIN IMMEDIATE … COMMIT` (one fsync for the group) and then
//! answers each caller. A ledger batch is validated in full (sequence, idempotent retry,
//! conflict) before its first insert, so a rejected batch writes nothing and fails alone; a
//! SQLite failure (disk full, I/O error) rolls the whole group back and fails every caller of
//! the group. The writer caches each pipeline's last `(seq, hash)`, so an append reads nothing;
//! the cache is dropped when `PRAGMA data_version` shows that another connection (another
//! process) committed in between, and after every rollback. Reads use a small pool of read
//! connections on the blocking thread pool and never block the writer.
//!
//! ## File layout (schema version [`SCHEMA_VERSION`], in `PRAGMA user_version`)
//! - `ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash)`, primary key
//!   `(pipeline_id, seq)`, `WITHOUT ROWID`; never updated or deleted (triggers abort both).
//!   `ts` is nanoseconds since the epoch; `data` is the event's `data` object as compact JSON
//!   without its `pipeline_id` member (a column; put back on read; rows written before this
//!   still carry it and read the same).
//! - `checkpoints (id, pipeline_id, seq, status, is_final, created_at, body)`: `body` is the
//!   [`governance_core::Checkpoint`] as compact JSON (record + blackboard).
//! - `pipelines (id, status, created_at, updated_at, record)`: the registry; `record` is the
//!   [`governance_core::PipelineRecord`] as compact JSON; indexed by status and creation time.
//! - `llm_exchanges (id, pipeline_id, agent_id, recorded_at, request, response)`: recorded LLM
//!   calls (record/replay).
//!
//! Older files are migrated on open (each step in its own transaction with the version
//! bump); a file with a newer version is refused with both versions in the message; a SQLite
//! file of another application (tables but no version) is left alone.
//!
//! ## Hash chain
//! Each entry's `hash` is `SHA-256(prev_hash ‖ field(pipeline_id) ‖ seq as u64 BE ‖
//! field(type) ‖ field(agent_id or "") ‖ ts as i64 BE ‖ field(data))` with
//! `field(x) = len(x) as u32 BE ‖ x` and `data` exactly as stored; `prev_hash` is the previous
//! entry's `hash` of the same pipeline, 32 zero bytes for `seq` 1. Every column is covered, so
//! changing, inserting or deleting an entry breaks the chain at that entry; [`verify`] (and
//! `governance ledger verify --db PATH`) walks every chain and names the first broken entry of
//! each. The append-only triggers are checked too (a missing one is a warning).
//!
//! ## Retention
//! Saving the final checkpoint of a pipeline deletes its intermediate checkpoints in the same
//! transaction, so a finished pipeline keeps exactly its final checkpoint (plus its registry
//! row and its full ledger). The ledger is never compacted. An unfinished pipeline keeps every
//! checkpoint (resume uses the latest).
//!
//! ## Errors
//! Every failure is [`governance_core::Error::Backend`] with `backend: "sqlite"` and a message
//! that starts with the file's path; `retryable` is `true` for transient conditions (busy,
//! locked, disk full, I/O) where the write was certainly not applied.

mod checkpoints;
mod errors;
mod exchange_store;
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
