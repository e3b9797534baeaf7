//! A small pool of read connections used from `spawn_blocking`.
//!
//! In WAL mode readers never block the writer nor each other; each read sees the last
//! committed state. At most `max` reads run at once (a semaphore), so at most `max`
//! connections are ever open; they are opened on first use and kept.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governance_core::{Error, Result};
use rusqlite::Connection;

use crate::schema::open_reader;

/// The read side of a store.
#[derive(Debug)]
pub(crate) struct Readers {
    path: Arc<Path>,
    busy_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    /// A pool for `path` running at most `max` reads (and connections) at once.
    pub(crate) fn new(path: Arc<Path>, busy_timeout: Duration, max: usize) -> Self {
        let max = max.max(1);
        Self {
            path,
            busy_timeout,
            max_idle: max,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(max),
        }
    }

    /// Runs `f` on a read connection on the blocking thread pool.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Path) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Internal(format!("sqlite read pool closed: {e}")))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = match pool.take() {
                Some(conn) => conn,
                None => open_reader(&pool.path, pool.busy_timeout)?,
            };
            let out = f(&conn, &pool.path);
            pool.give_back(conn);
            out
        })
        .await
        .map_err(|e| Error::Internal(format!("sqlite read task failed: {e}")))?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}
