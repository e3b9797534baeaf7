//! How durable a Redis / DragonflyDB server's data is: its persistence settings
//! ([`Shared::persistence`], so cluster mode can refuse a server that loses everything at a
//! restart) and its data generation ([`Shared::generation`], so the engine notices when the
//! server lost its data: `governance_core::DataGeneration`).
//!
//! Two keys: `gov:generation` holds a random marker written once (`SET NX`), which an empty
//! restart or a flush removes; `gov:generation:counter` is incremented by every call, so a
//! data set restored from an older snapshot answers a counter not above one a caller already
//! saw. The server's `run_id` (`INFO server`), which changes at every restart and failover,
//! is part of the generation's id; a server that refuses `INFO` (some managed services) is
//! judged by the two keys alone.

use std::time::{SystemTime, UNIX_EPOCH};

use governance_core::{DataGeneration, Error, Result};

use super::error::{BACKEND, Effect};
use super::shared::Shared;

impl Shared {
    /// The server's [`DataGeneration`]: one `INFO server` and one pipelined `SET NX` + `GET` +
    /// `INCR`, bounded by [`RedisConfig::probe_timeout`](crate::RedisConfig::probe_timeout);
    /// never rides out an outage.
    ///
    /// # Errors
    /// The server did not answer in time or the connection failed (retryable).
    pub(crate) async fn generation(&self) -> Result<DataGeneration> {
        let bound = self.config.probe_timeout;
        match tokio::time::timeout(bound, self.generation_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(Error::backend(
                BACKEND,
                format!(
                    "{}: generation: no reply within {} ms",
                    self.config.redacted_url(),
                    bound.as_millis()
                ),
                true,
            )),
        }
    }

    async fn generation_unbounded(&self) -> Result<DataGeneration> {
        let mut conn = self.conn.clone();
        let run_id = match redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut conn)
            .await
        {
            Ok(info) => info
                .lines()
                .find_map(|l| l.strip_prefix("run_id:"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                return Err(self.err(&e, "generation", Effect::Read));
            }
            // INFO refused (ACL, managed service): the keys alone tell
            Err(_) => String::new(),
        };
        let prefix = &self.config.key_prefix;
        let marker = format!("{prefix}:generation");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let fresh = format!("{nanos:x}-{:x}", std::process::id());
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&marker)
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&marker)
            .cmd("INCR")
            .arg(format!("{marker}:counter"));
        let (token, counter): (String, u64) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(&e, "generation", Effect::Read))?;
        Ok(DataGeneration {
            id: format!("{run_id}/{token}"),
            counter,
        })
    }
}

/// What a server says about its persistence (`CONFIG GET appendonly`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// `appendonly yes`: every write is in the append-only file (fsync per `appendfsync`).
    AppendOnly,
    /// `appendonly no`: at most periodic snapshots; a restart loses what came after the last.
    NoAppendOnly,
    /// The server did not say (`CONFIG` refused, as on some managed services, or unknown to it,
    /// as on DragonflyDB without `appendonly`): the reason.
    Unknown(String),
}

impl Shared {
    /// The server's persistence (see [`Persistence`]).
    ///
    /// # Errors
    /// The server is unreachable.
    pub(crate) async fn persistence(&self) -> Result<Persistence> {
        let mut conn = self.conn.clone();
        let reply = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async::<Vec<String>>(&mut conn)
            .await;
        Ok(match reply {
            Ok(kv) => match kv.get(1).map(String::as_str) {
                Some("yes") => Persistence::AppendOnly,
                Some("no") => Persistence::NoAppendOnly,
                Some(other) => Persistence::Unknown(format!("appendonly is {other:?}")),
                None => Persistence::Unknown("CONFIG GET appendonly returned nothing".into()),
            },
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                return Err(self.err(&e, "config get appendonly", Effect::Read));
            }
            Err(e) => Persistence::Unknown(format!(
                "CONFIG GET appendonly was refused: {}",
                super::error::sanitize(&e.to_string(), self.secret.as_deref())
            )),
        })
    }
}
