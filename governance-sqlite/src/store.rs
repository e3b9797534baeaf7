//! [`SqliteStore`]: the ledger, checkpoints, registry and LLM exchanges in one SQLite file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use governance_core::{
    AgentId, Checkpoint, CheckpointStore, Error, Event, LedgerStore, PipelineFilter, PipelineId,
    PipelineRecord, PipelineRegistry, PipelineStatus, Result, StateStore, StatusChange,
};

use crate::checkpoints::{self, CheckpointRow};
use crate::errors::{json_error, sqlite_error};
use crate::exchanges::{self, ExchangeRow, LlmExchange};
use crate::ledger::{self, LedgerRow};
use crate::readers::Readers;
use crate::registry::{self, RecordRow};
use crate::schema::open_writer;
use crate::writer::{WriteOp, Writer};

/// How a [`SqliteStore`] opens its file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long a connection waits for a lock held by another process before failing
    /// (`PRAGMA busy_timeout`). Default 5 s.
    pub busy_timeout: Duration,
    /// Read connections (and reads running at once). Default 4.
    pub read_connections: usize,
    /// Caps the file at about this many bytes (`PRAGMA max_page_count`); writes past it fail
    /// like a full disk. `None` (the default) means no cap.
    pub max_size_bytes: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_size_bytes: None,
        }
    }
}

/// The audit ledger, checkpoints, pipeline registry and recorded LLM exchanges on one SQLite
/// file in WAL mode.
///
/// Cheap to clone (clones share the writer thread and the read pool). Implements
/// [`LedgerStore`], [`CheckpointStore`] and [`PipelineRegistry`].
///
/// # Durability
/// Every write returns `Ok` only after the `COMMIT` of the transaction that holds it, with
/// `synchronous=FULL`: the WAL is fsynced at every commit, so an acknowledged write survives a
/// process crash and a power loss (on storage that honours fsync). Writes of concurrent callers
/// are grouped into one transaction (group commit), one fsync for the group.
///
/// # Cancel safety
/// Dropping a write future after it was queued leaves the write applied or not, never
/// half-applied.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: Arc<Path>,
    writer: Writer,
    readers: Arc<Readers>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default [`SqliteOptions`].
    ///
    /// # Errors
    /// [`Error::Backend`] naming the file when it cannot be created or opened, is read-only,
    /// is not a SQLite database (or is corrupt), belongs to another application, or has a
    /// schema newer than this build.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating if needed) the database at `path` with `options`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        let opening = Arc::clone(&path);
        let busy = options.busy_timeout;
        let cap = options.max_size_bytes;
        let conn = tokio::task::spawn_blocking(move || {
            let pages = cap.map(|bytes| bytes.div_ceil(4096).max(1));
            open_writer(&opening, busy, pages)
        })
        .await
        .map_err(|e| Error::Internal(format!("sqlite open task failed: {e}")))??;
        let (writer, thread) = Writer::spawn(conn, Arc::clone(&path))?;
        let readers = Arc::new(Readers::new(
            Arc::clone(&path),
            busy,
            options.read_connections,
        ));
        tracing::debug!(path = %path.display(), "opened governance-sqlite store");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                readers,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes this handle. When it is the last clone, waits until every queued write is
    /// committed and the writer thread has stopped.
    ///
    /// # Errors
    /// [`Error::Internal`] if the writer thread panicked.
    pub async fn close(self) -> Result<()> {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            return Ok(());
        };
        let thread = inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(inner.writer);
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| Error::Internal(format!("sqlite close task failed: {e}")))?
                .map_err(|_| Error::Internal("the sqlite writer thread panicked".to_owned()))?;
        }
        Ok(())
    }

    /// Records one LLM exchange (request and response JSON) of `pipeline` by `agent`,
    /// durably (as every write).
    ///
    /// # Errors
    /// [`Error::Backend`] when the write fails.
    pub async fn record_exchange(
        &self,
        pipeline: &PipelineId,
        agent: &AgentId,
        request: &serde_json::Value,
        response: &serde_json::Value,
    ) -> Result<()> {
        let row = ExchangeRow::new(pipeline, agent, request, response)?;
        self.inner.writer.submit(WriteOp::Exchange(row)).await
    }

    /// The recorded exchanges of `pipeline`, in recording order.
    ///
    /// # Errors
    /// [`Error::Backend`] when the read fails.
    pub async fn exchanges(&self, pipeline: &PipelineId) -> Result<Vec<LlmExchange>> {
        let pipeline = pipeline.clone();
        self.inner
            .readers
            .run(move |conn, path| {
                let rows = exchanges::list(conn, &pipeline)
                    .map_err(|e| sqlite_error(path, "read LLM exchanges", &e))?;
                rows.into_iter()
                    .map(|(agent, at, request, response)| {
                        Ok(LlmExchange {
                            agent_id: AgentId::new(agent)?,
                            request: serde_json::from_str(&request)
                                .map_err(|e| json_error(path, "an LLM request", &e))?,
                            response: serde_json::from_str(&response)
                                .map_err(|e| json_error(path, "an LLM response", &e))?,
                            recorded_at: DateTime::from_timestamp_nanos(at),
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &Path) -> Result<T> + Send + 'static,
    {
        self.inner.readers.run(f).await
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn append(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events
            .iter()
            .map(LedgerRow::from_event)
            .collect::<Result<Vec<_>>>()?;
        self.inner.writer.submit(WriteOp::Append(rows)).await
    }

    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        let pipeline = pipeline.clone();
        self.read(move |conn, path| {
            ledger::read(conn, &pipeline, after, limit)
                .map_err(|e| sqlite_error(path, "read the ledger", &e))?
                .into_iter()
                .map(|ev| {
                    ev.map_err(|why| {
                        Error::Internal(format!("{}: unreadable ledger {why}", path.display()))
                    })
                })
                .collect()
        })
        .await
    }

    async fn last_seq(&self, pipeline: &PipelineId) -> Result<u64> {
        let pipeline = pipeline.clone();
        self.read(move |conn, path| {
            ledger::last_seq(conn, &pipeline).map_err(|e| sqlite_error(path, "read the ledger", &e))
        })
        .await
    }

    /// Reads answer, and writes do: after a write transaction failed (a full disk, the size
    /// cap, an I/O error), a probe write that needs a fresh page must go through before the
    /// store counts as healthy again.
    async fn ping(&self) -> Result<()> {
        if self.inner.writer.failing().is_some() {
            self.inner.writer.submit(WriteOp::Probe).await?;
        }
        self.read(|conn, path| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| sqlite_error(path, "ping", &e))
        })
        .await
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        let row = CheckpointRow::new(checkpoint)?;
        self.inner.writer.submit(WriteOp::SaveCheckpoint(row)).await
    }

    async fn latest(&self, pipeline: &PipelineId) -> Result<Option<Checkpoint>> {
        let pipeline = pipeline.clone();
        self.read(move |conn, path| {
            checkpoints::latest(conn, &pipeline)
                .map_err(|e| sqlite_error(path, "read checkpoints", &e))?
                .map(|body| {
                    serde_json::from_str(&body).map_err(|e| json_error(path, "a checkpoint", &e))
                })
                .transpose()
        })
        .await
    }

    async fn count(&self, pipeline: &PipelineId) -> Result<usize> {
        let pipeline = pipeline.clone();
        self.read(move |conn, path| {
            checkpoints::count(conn, &pipeline)
                .map_err(|e| sqlite_error(path, "count checkpoints", &e))
        })
        .await
    }
}

#[async_trait]
impl PipelineRegistry for SqliteStore {
    async fn upsert(&self, record: &PipelineRecord) -> Result<()> {
        let row = RecordRow::new(record)?;
        self.inner.writer.submit(WriteOp::Upsert(row)).await
    }

    async fn get(&self, id: &PipelineId) -> Result<Option<PipelineRecord>> {
        let id = id.clone();
        self.read(move |conn, path| {
            registry::get(conn, &id)
                .map_err(|e| sqlite_error(path, "read the registry", &e))?
                .map(|json| {
                    serde_json::from_str(&json)
                        .map_err(|e| json_error(path, "a pipeline record", &e))
                })
                .transpose()
        })
        .await
    }

    async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
        let filter = filter.clone();
        self.read(move |conn, path| {
            let rows = registry::list(conn, &filter).map_err(|e| match e {
                crate::errors::OpError::Rejected(err) => err,
                crate::errors::OpError::Sqlite(e) => sqlite_error(path, "list pipelines", &e),
            })?;
            rows.iter()
                .map(|json| {
                    serde_json::from_str(json)
                        .map_err(|e| json_error(path, "a pipeline record", &e))
                })
                .collect()
        })
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>> {
        self.read(|conn, path| {
            registry::count_by_status(conn)
                .map_err(|e| sqlite_error(path, "count pipelines", &e))?
                .into_iter()
                .map(|(status, n)| Ok((status.parse::<PipelineStatus>()?, n)))
                .collect()
        })
        .await
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    /// One write transaction: the events, the checkpoint and the record, or nothing.
    async fn commit(&self, change: StatusChange<'_>) -> Result<()> {
        change.validate()?;
        let rows = change
            .events
            .iter()
            .map(LedgerRow::from_event)
            .collect::<Result<Vec<_>>>()?;
        let checkpoint = CheckpointRow::new(change.checkpoint)?;
        let record = RecordRow::new(change.record)?;
        self.inner
            .writer
            .submit(WriteOp::Transition(rows, checkpoint, record))
            .await
    }
}
