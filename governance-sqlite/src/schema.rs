//! Opening connections (pragmas) and the versioned schema migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`. [`MIGRATIONS`]`[i]` takes a file from
//! version `i` to `i + 1`; each runs in its own transaction together with the version bump, so
//! a crash mid-migration leaves the file at the previous version. Migrations are only ever
//! appended to this list, never edited.

use std::path::Path;
use std::time::Duration;

use governance_core::Result;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::errors::{file_error, sqlite_error};

/// Version 1: the ledger (append-only, enforced by triggers), checkpoints and the registry.
pub(crate) const V1: &str = "
CREATE TABLE ledger (
    pipeline_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    type        TEXT    NOT NULL,
    agent_id    TEXT,
    ts          INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL,
    PRIMARY KEY (pipeline_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only: entries are never updated'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only: entries are never deleted'); END;
CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    pipeline_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    is_final    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX checkpoints_by_pipeline ON checkpoints (pipeline_id, seq, id);
CREATE TABLE pipelines (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    record     TEXT    NOT NULL
);
CREATE INDEX pipelines_by_created ON pipelines (created_at DESC, id DESC);
CREATE INDEX pipelines_by_status ON pipelines (status, created_at DESC, id DESC);
";

/// Version 2: recorded LLM exchanges (record/replay).
pub(crate) const V2: &str = "
CREATE TABLE llm_exchanges (
    id          INTEGER PRIMARY KEY,
    pipeline_id TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    request     TEXT    NOT NULL,
    response    TEXT    NOT NULL
);
CREATE INDEX llm_exchanges_by_pipeline ON llm_exchanges (pipeline_id, id);
";

/// Every migration, in order: entry `i` takes a file from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this build writes (and the newest it can open).
#[allow(clippy::cast_possible_truncation)]
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Opens the writer connection: creates the file, checks it is writable, sets the pragmas
/// (WAL, `synchronous=FULL`, `busy_timeout`, foreign keys) and migrates the schema.
pub(crate) fn open_writer(
    path: &Path,
    busy_timeout: Duration,
    max_page_count: Option<u64>,
) -> Result<Connection> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(file_error(
                path,
                "is a directory, not a database file",
                false,
            ));
        }
        if meta.permissions().readonly() {
            return Err(file_error(
                path,
                "the database file is read-only (no write permission); the ledger needs a writable file",
                false,
            ));
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn =
        Connection::open_with_flags(path, flags).map_err(|e| sqlite_error(path, "open", &e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| sqlite_error(path, "set busy_timeout", &e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| sqlite_error(path, "switch to WAL", &e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(file_error(
            path,
            format!("could not switch the journal to WAL mode (it stays {mode:?})"),
            false,
        ));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(|e| sqlite_error(path, "set pragmas", &e))?;
    if let Some(pages) = max_page_count {
        conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))
            .map_err(|e| sqlite_error(path, "set max_page_count", &e))?;
    }
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| sqlite_error(path, "check writability", &e))?
    {
        return Err(file_error(
            path,
            "the database file or its directory is read-only; the ledger needs a writable file",
            false,
        ));
    }
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens a read-only connection on an existing database (`query_only`).
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| sqlite_error(path, "open", &e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| sqlite_error(path, "set busy_timeout", &e))?;
    conn.execute_batch("PRAGMA query_only=ON;")
        .map_err(|e| sqlite_error(path, "set pragmas", &e))?;
    Ok(conn)
}

/// The schema version stored in the file.
pub(crate) fn stored_version(conn: &Connection, path: &Path) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sqlite_error(path, "read the schema version", &e))
}

/// Refuses a file whose schema is newer than this build.
pub(crate) fn check_not_newer(path: &Path, found: u32) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(file_error(
            path,
            format!(
                "the database has schema version {found}, newer than this build of \
                 governance-sqlite supports (version {SCHEMA_VERSION}); open it with a newer build"
            ),
            false,
        ));
    }
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`].
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found = stored_version(conn, path)?;
    check_not_newer(path, found)?;
    if found == 0 {
        let objects: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite_error(path, "read the schema", &e))?;
        if objects > 0 {
            return Err(file_error(
                path,
                "the file is a SQLite database of another application (it has tables but no \
                 governance schema version); refusing to change it",
                false,
            ));
        }
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = index + 1;
        let doing = format!("migrate the schema to version {to}");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error(path, &doing, &e))?;
        tx.execute_batch(sql)
            .and_then(|()| {
                tx.pragma_update(None, "user_version", i64::try_from(to).unwrap_or(i64::MAX))
            })
            .and_then(|()| tx.commit())
            .map_err(|e| sqlite_error(path, &doing, &e))?;
        tracing::info!(path = %path.display(), version = to, "migrated governance-sqlite schema");
    }
    Ok(())
}
