//! Turning SQLite failures into [`governance_core::Error`] values that name the database file,
//! and [`OpError`], how one write of the writer thread fails (a leaf: the per-table write
//! functions and the writer both use it).

use std::path::Path;

use governance_core::{Cause, Error};
use rusqlite::ErrorCode;

/// The `backend` name of every error this crate returns.
pub(crate) const BACKEND: &str = "sqlite";

/// A backend error naming `path` and what was being done.
pub(crate) fn sqlite_error(path: &Path, doing: &str, err: &rusqlite::Error) -> Error {
    let code = err.sqlite_error_code();
    let retryable = matches!(
        code,
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
        )
    );
    let hint = match code {
        Some(ErrorCode::NotADatabase) => " (the file is not a SQLite database, or it is corrupt)",
        Some(ErrorCode::DatabaseCorrupt) => " (the database file is corrupt)",
        Some(ErrorCode::ReadOnly) => " (the database file or its directory is read-only)",
        Some(ErrorCode::CannotOpen) => {
            " (the file cannot be opened or created: check that the directory exists and is writable)"
        }
        Some(ErrorCode::DiskFull) => " (the disk, or the configured size limit, is full)",
        _ => "",
    };
    Error::backend(
        BACKEND,
        format!("{}: {doing}: {err}{hint}", path.display()),
        retryable,
    )
    .with_cause(cause(err))
}

/// `err` as the [`Cause`] of a backend error. A failure of SQLite itself (the usual case: a
/// full disk, a locked or corrupt file) is kept as the `rusqlite::Error` it was, so a caller
/// can `downcast_ref` it and read its code; any other rusqlite error keeps its text.
fn cause(err: &rusqlite::Error) -> Cause {
    match err {
        rusqlite::Error::SqliteFailure(code, message) => {
            Cause::new(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => Cause::new(Text(other.to_string())),
    }
}

/// The text of an error whose value could not be kept.
#[derive(Debug)]
struct Text(String);

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Text {}

/// A backend error naming `path` that did not come from SQLite itself.
pub(crate) fn file_error(path: &Path, message: impl std::fmt::Display, retryable: bool) -> Error {
    Error::backend(BACKEND, format!("{}: {message}", path.display()), retryable)
}

/// The error of a write or read that could not be (de)serialized.
pub(crate) fn json_error(path: &Path, what: &str, err: &serde_json::Error) -> Error {
    Error::Internal(format!(
        "{}: {what} is not valid JSON for this build: {err}",
        path.display()
    ))
}

/// Why one job of the writer failed (the per-table write functions return it).
#[derive(Debug)]
pub(crate) enum OpError {
    /// Refused by the rules (a conflict): this job wrote nothing; the others go on.
    Rejected(Error),
    /// SQLite failed: the whole group is rolled back.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}
