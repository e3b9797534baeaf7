//! Turning PostgreSQL and pool failures into [`governance_core::Error`] values: connection
//! and I/O failures, serialization failures, deadlocks, an administrator's shutdown and a
//! server that is starting are **retryable** `Backend` errors (every write of this crate is
//! idempotent, so repeating one whose reply was lost is safe too); unique violations are
//! [`Error::Conflict`]; anything else is a non-retryable `Backend` error. Messages name the
//! redacted target, never the password.

use governance_core::Error;
use tokio_postgres::error::SqlState;

/// The `backend` name of every error this crate returns.
pub const BACKEND: &str = "postgres";

/// Why one operation failed, before it is turned into an [`Error`].
#[derive(Debug)]
pub(crate) enum OpError {
    /// Refused by the rules (a ledger conflict, a lost lease): the transaction is rolled back
    /// and the error returned as it is.
    Rejected(Error),
    /// The driver failed.
    Pg(tokio_postgres::Error),
    /// The pool could not hand out a connection.
    Pool(deadpool_postgres::PoolError),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

impl From<deadpool_postgres::PoolError> for OpError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Pool(e)
    }
}

impl From<Error> for OpError {
    fn from(e: Error) -> Self {
        Self::Rejected(e)
    }
}

impl OpError {
    /// Whether repeating the operation on a fresh connection may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Rejected(_) => false,
            Self::Pg(e) => transient(e),
            Self::Pool(p) => match p {
                deadpool_postgres::PoolError::Backend(e) => transient(e),
                deadpool_postgres::PoolError::Timeout(_) => true,
                _ => false,
            },
        }
    }

    /// The error to return, naming `target` and what was being done.
    pub(crate) fn into_error(self, target: &str, doing: &str) -> Error {
        let retryable = self.is_transient();
        match self {
            Self::Rejected(e) => e,
            Self::Pg(e) | Self::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                pg_error(target, doing, &e)
            }
            Self::Pool(deadpool_postgres::PoolError::Timeout(t)) => Error::backend(
                BACKEND,
                format!(
                    "{target}: {doing}: no database connection within the pool's time limit ({t:?})"
                ),
                retryable,
            ),
            Self::Pool(other) => Error::backend(
                BACKEND,
                format!("{target}: {doing}: connection pool: {other}"),
                retryable,
            ),
        }
    }
}

/// Whether `e` is a failure that a later attempt may not hit.
pub(crate) fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => transient_code(code),
        // no SQLSTATE: the connection broke, the server closed it, or it could not be opened
        None => e.is_closed() || std::error::Error::source(e).is_some(),
    }
}

fn transient_code(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08") // connection exception
        || c.starts_with("53") // insufficient resources (disk full, too many connections)
        || c.starts_with("58") // system error (I/O)
        || matches!(
            c,
            "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, in recovery)
                | "55P03" // lock_not_available
                | "25006" // read_only_sql_transaction (a standby after a failover)
                | "57014" // query_canceled (statement timeout)
        )
}

/// The driver's message (with the server's detail when it gave one).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// An [`Error`] for a driver failure.
pub(crate) fn pg_error(target: &str, doing: &str, e: &tokio_postgres::Error) -> Error {
    if let Some(code) = e.code() {
        if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::EXCLUSION_VIOLATION {
            return Error::Conflict(format!("{target}: {doing}: {}", describe(e)));
        }
        if *code == SqlState::RAISE_EXCEPTION {
            // the append-only triggers of the ledger
            return Error::Conflict(format!("{target}: {doing}: {}", describe(e)));
        }
    }
    let hint = match e.code().map(SqlState::code) {
        Some("28P01" | "28000") => " (check the user and password of DATABASE_URL)",
        Some("3D000") => " (the database does not exist: create it first)",
        Some("42501") => " (the user lacks a privilege: it needs CREATE on the schema)",
        _ if e.code().is_none() && !e.is_closed() => " (is PostgreSQL running and reachable?)",
        _ => "",
    };
    Error::backend(
        BACKEND,
        format!("{target}: {doing}: {}{hint}", describe(e)),
        transient(e),
    )
}

/// The error of a value that could not be (de)serialized.
pub(crate) fn json_error(target: &str, what: &str, err: &serde_json::Error) -> Error {
    Error::Internal(format!(
        "{target}: {what} is not valid JSON for this build: {err}"
    ))
}
