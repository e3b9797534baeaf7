//! [`RedisStore`]: the audit ledger, checkpoints and pipeline registry on Redis, so that
//! several server nodes share them (any node answers for any pipeline; a node that takes a
//! pipeline over continues its ledger).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use governance_core::{
    Checkpoint, CheckpointStore, Error, Event, LedgerStore, PipelineFilter, PipelineId,
    PipelineRecord, PipelineRegistry, PipelineStatus, Result, StateStore, StatusChange,
};
use parking_lot::Mutex;
use serde::Serialize;

mod append;
mod archive_queue;
mod entry;
mod fence;
mod relay;

pub use entry::{LedgerEntry, VerifyOutcome};
pub(crate) use fence::LeaseTable;
pub(crate) use relay::Relayed;

use crate::conn::{Effect, Shared, corrupt};

/// The last `(seq, hash)` of a pipeline's ledger.
type Tail = (i64, [u8; 32]);

/// Most pipelines whose ledger tail is cached; past it the cache starts over.
const MAX_TAILS: usize = 100_000;

/// The [`StateStore`] ([`LedgerStore`], [`CheckpointStore`] and [`PipelineRegistry`]) on Redis /
/// DragonflyDB.
///
/// # Keys (all of one pipeline under its hash tag; see `docs/wire-protocol.md`)
/// - `gov:{P}:ledger` LIST of [`LedgerEntry`] JSON, index `seq - 1`, hash-chained;
/// - `gov:{P}:checkpoint` the latest checkpoint JSON (the one with the highest `seq`; older ones are
///   replaced: the retention rule is "latest only", the ledger holds the history), `gov:{P}:checkpoint_meta` HASH of its `seq` and the `count` taken;
/// - `gov:{P}:record` the registry record JSON;
/// - `gov:pipelines` ZSET of every pipeline id by creation time (ms), and `gov:active` ZSET of
///   the pipelines not yet terminal (what a node scans for pipelines to take over). These two
///   global keys are updated by separate commands after the pipeline's own write, so they may
///   briefly lag it; readers treat them as an index, the record as the truth.
///
/// # Fencing
/// When built by [`RedisBackend::cluster`](crate::RedisBackend::cluster), every write of a
/// pipeline carries the fencing token of this node's lease and the script refuses it with
/// [`Error::Fenced`] when another node has taken the pipeline over since. Events, checkpoint
/// and record of a status change are one script ([`StateStore::commit`]), so they are never
/// half-written: a stale token or a ledger conflict refuses the whole change.
///
/// # Durability
/// As durable as the server's persistence (`appendonly yes` + `appendfsync always` for
/// "acknowledged = on disk"); the example server drains finished pipelines into its SQLite
/// file as the long-term archive.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
    leases: Option<Arc<LeaseTable>>,
    tails: Arc<Mutex<HashMap<PipelineId, Tail>>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.config.redacted_url())
            .field("fenced", &self.leases.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub(crate) fn new(shared: Arc<Shared>, leases: Option<Arc<LeaseTable>>) -> Self {
        Self {
            shared,
            leases,
            tails: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn global(&self, name: &str) -> String {
        format!("{}:{name}", self.shared.config.key_prefix)
    }

    /// The channel on which appended events are published (for other nodes' live feeds).
    pub(crate) fn events_channel(prefix: &str) -> String {
        format!("{prefix}:events")
    }

    fn token(&self, pipeline: &PipelineId) -> Result<String> {
        match &self.leases {
            None => Ok(String::new()),
            Some(t) => t
                .token(pipeline)
                .map(|t| t.to_string())
                .ok_or_else(|| Error::Fenced {
                    pipeline: pipeline.to_string(),
                }),
        }
    }

    /// Keeps the global indexes in step with a record.
    async fn index(&self, record: &PipelineRecord) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let created = record.created_at.timestamp_millis();
        pipe.cmd("ZADD")
            .arg(self.global("pipelines"))
            .arg("NX")
            .arg(created)
            .arg(record.id.as_str())
            .ignore();
        if record.status.is_terminal() {
            if self.leases.is_some() {
                // cluster mode: queue it for archiving before it leaves the active index
                pipe.cmd("ZADD")
                    .arg(self.global("unarchived"))
                    .arg("NX")
                    .arg(chrono::Utc::now().timestamp_millis())
                    .arg(record.id.as_str())
                    .ignore();
            }
            pipe.cmd("ZREM")
                .arg(self.global("active"))
                .arg(record.id.as_str())
                .ignore();
        } else {
            pipe.cmd("ZADD")
                .arg(self.global("active"))
                .arg("NX")
                .arg(created)
                .arg(record.id.as_str())
                .ignore();
        }
        self.shared
            .query::<()>(&pipe, "registry index", Effect::Idempotent)
            .await
    }

    /// Adds `id` to the global sorted set `name` (scored now; kept if present) or removes it.
    async fn index_set(&self, name: &str, id: &PipelineId, add: bool) -> Result<()> {
        let mut cmd = redis::cmd(if add { "ZADD" } else { "ZREM" });
        cmd.arg(self.global(name));
        if add {
            cmd.arg("NX").arg(chrono::Utc::now().timestamp_millis());
        }
        cmd.arg(id.as_str());
        self.shared
            .query::<()>(&cmd, "registry index", Effect::Idempotent)
            .await
    }

    /// Marks a pipeline as one to watch (it may have no record yet).
    pub(crate) async fn mark_active(&self, id: &PipelineId) -> Result<()> {
        self.index_set("active", id, true).await
    }

    /// Removes a pipeline from the set of pipelines to watch.
    pub(crate) async fn mark_inactive(&self, id: &PipelineId) -> Result<()> {
        self.index_set("active", id, false).await
    }

    /// The raw ledger entries of `pipeline` at list indexes `start..=stop` (`-1`: the end).
    async fn ledger_raw(
        &self,
        pipeline: &PipelineId,
        start: i64,
        stop: i64,
    ) -> Result<Vec<String>> {
        self.shared
            .query(
                redis::cmd("LRANGE")
                    .arg(self.shared.keys(pipeline).ledger())
                    .arg(start)
                    .arg(stop),
                "ledger read",
                Effect::Read,
            )
            .await
    }

    /// Every member of the global sorted set `name`, by score (`newest_first`: descending).
    async fn index_members(&self, name: &str, newest_first: bool) -> Result<Vec<String>> {
        self.shared
            .query(
                redis::cmd(if newest_first { "ZREVRANGE" } else { "ZRANGE" })
                    .arg(self.global(name))
                    .arg(0)
                    .arg(-1),
                "registry index",
                Effect::Read,
            )
            .await
    }

    /// Calls `f` with every pipeline record, newest first, reading them in batches, until it
    /// returns `false`.
    async fn scan_records(&self, mut f: impl FnMut(PipelineRecord) -> bool) -> Result<()> {
        let ids = self.index_members("pipelines", true).await?;
        for chunk in ids.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let Ok(pid) = PipelineId::new(id.clone()) else {
                    continue;
                };
                pipe.cmd("GET").arg(self.shared.keys(&pid).record());
            }
            let raw: Vec<Option<String>> = self
                .shared
                .query(&pipe, "registry read", Effect::Read)
                .await?;
            for json in raw.into_iter().flatten() {
                let rec: PipelineRecord =
                    serde_json::from_str(&json).map_err(|e| corrupt("pipeline record", e))?;
                if !f(rec) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Ids of the pipelines that are not terminal (per the index), oldest first.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn active_ids(&self) -> Result<Vec<PipelineId>> {
        let ids = self.index_members("active", false).await?;
        Ok(ids
            .into_iter()
            .filter_map(|i| PipelineId::new(i).ok())
            .collect())
    }

    async fn set_fenced(
        &self,
        pipeline: &PipelineId,
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<()> {
        self.append_one(pipeline, &[], checkpoint, record).await
    }
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("cannot encode: {e}")))
}

fn hex(h: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(h.len() * 2);
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_hash(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return Err(corrupt("ledger hash", s));
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).map_err(|e| corrupt("ledger hash", e))?;
    }
    Ok(out)
}

fn group(events: &[Event]) -> Vec<(&PipelineId, Vec<&Event>)> {
    let mut out: Vec<(&PipelineId, Vec<&Event>)> = Vec::new();
    for e in events {
        match out.iter_mut().find(|(p, _)| *p == e.pipeline_id()) {
            Some((_, v)) => v.push(e),
            None => out.push((e.pipeline_id(), vec![e])),
        }
    }
    out
}

#[async_trait]
impl LedgerStore for RedisStore {
    async fn append(&self, events: &[Event]) -> Result<()> {
        for (pipeline, evs) in group(events) {
            self.append_one(pipeline, &evs, None, None).await?;
        }
        Ok(())
    }

    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = seq_i64(after);
        let raw = self
            .ledger_raw(pipeline, start, start.saturating_add(limit as i64 - 1))
            .await?;
        raw.iter()
            .map(|j| {
                let e: LedgerEntry =
                    serde_json::from_str(j).map_err(|e| corrupt("ledger entry", e))?;
                e.row(pipeline.as_str())
                    .to_event()
                    .map_err(|e| corrupt("ledger entry", e))
            })
            .collect()
    }

    async fn last_seq(&self, pipeline: &PipelineId) -> Result<u64> {
        let n: u64 = self
            .shared
            .query(
                redis::cmd("LLEN").arg(self.shared.keys(pipeline).ledger()),
                "ledger length",
                Effect::Read,
            )
            .await?;
        Ok(n)
    }

    async fn ping(&self) -> Result<()> {
        self.shared.ping().await
    }
}

#[async_trait]
impl CheckpointStore for RedisStore {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.set_fenced(&checkpoint.record.id, Some(checkpoint), None)
            .await
    }

    async fn latest(&self, pipeline: &PipelineId) -> Result<Option<Checkpoint>> {
        let raw: Option<String> = self
            .shared
            .query(
                redis::cmd("GET").arg(self.shared.keys(pipeline).checkpoint()),
                "checkpoint read",
                Effect::Read,
            )
            .await?;
        raw.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("checkpoint", e)))
            .transpose()
    }

    async fn count(&self, pipeline: &PipelineId) -> Result<usize> {
        let n: Option<usize> = self
            .shared
            .query(
                redis::cmd("HGET")
                    .arg(self.shared.keys(pipeline).checkpoint_meta())
                    .arg("count"),
                "checkpoint count",
                Effect::Read,
            )
            .await?;
        Ok(n.unwrap_or(0))
    }
}

#[async_trait]
impl PipelineRegistry for RedisStore {
    async fn upsert(&self, record: &PipelineRecord) -> Result<()> {
        self.set_fenced(&record.id, None, Some(record)).await
    }

    async fn get(&self, id: &PipelineId) -> Result<Option<PipelineRecord>> {
        let raw: Option<String> = self
            .shared
            .query(
                redis::cmd("GET").arg(self.shared.keys(id).record()),
                "registry read",
                Effect::Read,
            )
            .await?;
        raw.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("pipeline record", e)))
            .transpose()
    }

    async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut out = Vec::new();
        let mut skipped = 0;
        self.scan_records(|rec| {
            if matches(filter, &rec) {
                if skipped < filter.offset {
                    skipped += 1;
                } else {
                    out.push(rec);
                }
            }
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>> {
        // one pass over the records (paging through `list` would re-read them per page)
        let mut counts: HashMap<PipelineStatus, u64> = HashMap::new();
        self.scan_records(|rec| {
            *counts.entry(rec.status).or_default() += 1;
            true
        })
        .await?;
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort_by_key(|(s, _)| s.as_str());
        Ok(v)
    }
}

#[async_trait]
impl StateStore for RedisStore {
    /// One fenced script: the events, the checkpoint and the record, or nothing.
    async fn commit(&self, change: StatusChange<'_>) -> Result<()> {
        change.validate()?;
        let pipeline = change.pipeline();
        let (checkpoint, record) = (Some(change.checkpoint), Some(change.record));
        if change.events.is_empty() {
            return self.set_fenced(pipeline, checkpoint, record).await;
        }
        let events: Vec<&Event> = change.events.iter().collect();
        self.append_one(pipeline, &events, checkpoint, record).await
    }
}

fn matches(filter: &PipelineFilter, rec: &PipelineRecord) -> bool {
    (filter.statuses.is_empty() || filter.statuses.contains(&rec.status))
        && filter.created_after.is_none_or(|t| rec.created_at >= t)
        && filter.created_before.is_none_or(|t| rec.created_at < t)
}
