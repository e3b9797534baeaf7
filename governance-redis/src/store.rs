//! [`RedisStore`]: the audit ledger, checkpoints and pipeline registry on Redis, so that
//! several server nodes share them (any node answers for any pipeline; a node that takes a
//! pipeline over continues its ledger).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use governance_core::chain::{GENESIS, LedgerRow};
use governance_core::{
    Checkpoint, CheckpointStore, Error, Event, LedgerStore, PipelineFilter, PipelineId,
    PipelineRecord, PipelineRegistry, PipelineStatus, Result,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::backend::Shared;
use crate::cluster::LeaseTable;
use crate::error::{Effect, corrupt};

/// The last `(seq, hash)` of a pipeline's ledger.
type Tail = (i64, [u8; 32]);

/// Most pipelines whose ledger tail is cached; past it the cache starts over.
const MAX_TAILS: usize = 100_000;

/// One ledger entry as stored in `gov:{P}:ledger` (wire protocol, `v: 1`). The hash covers
/// the same fields, in the same way, as the SQLite ledger's (`governance_core::chain`), so an
/// entry copied from one to the other keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Payload version (1).
    pub v: u32,
    /// The event's `seq`.
    pub seq: i64,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent the event is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Event time, nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The event's `data` object as compact JSON (without `pipeline_id`), as a string.
    pub data: String,
    /// Hex SHA-256 of the previous entry (64 zeros for seq 1).
    pub prev: String,
    /// Hex SHA-256 of this entry chained on `prev`.
    pub hash: String,
}

impl LedgerEntry {
    /// The ledger row of this entry in `pipeline`.
    #[must_use]
    pub fn row(&self, pipeline: &str) -> LedgerRow {
        LedgerRow {
            pipeline_id: pipeline.to_owned(),
            seq: self.seq,
            kind: self.kind.clone(),
            agent_id: self.agent_id.clone(),
            ts: self.ts,
            data: self.data.clone(),
        }
    }
}

/// The [`LedgerStore`], [`CheckpointStore`] and [`PipelineRegistry`] on Redis / DragonflyDB.
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
/// and record of a status change are one script ([`LedgerStore::append_with_state`]), so they
/// are never half-written.
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

    async fn tail(&self, pipeline: &PipelineId) -> Result<(i64, [u8; 32])> {
        if let Some(t) = self.tails.lock().get(pipeline) {
            return Ok(*t);
        }
        let k = self.shared.keys(pipeline);
        let last: Option<String> = self
            .shared
            .query(
                redis::cmd("LINDEX").arg(k.ledger()).arg(-1),
                "ledger tail",
                Effect::Read,
            )
            .await?;
        let tail = match last {
            None => (0, GENESIS),
            Some(json) => {
                let e: LedgerEntry =
                    serde_json::from_str(&json).map_err(|e| corrupt("ledger entry", e))?;
                (e.seq, decode_hash(&e.hash)?)
            }
        };
        Ok(tail)
    }

    fn remember(&self, pipeline: &PipelineId, tail: (i64, [u8; 32])) {
        let mut t = self.tails.lock();
        if t.len() > MAX_TAILS {
            t.clear();
        }
        t.insert(pipeline.clone(), tail);
    }

    /// Appends one pipeline's events (with optional state) in one fenced script call. Events
    /// already stored identically are skipped (an idempotent repeat); the rest must follow the
    /// stored tail without a gap.
    async fn append_one(
        &self,
        pipeline: &PipelineId,
        events: &[&Event],
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<()> {
        let token = self.token(pipeline)?;
        for attempt in 0..2 {
            let mut tail = self.tail(pipeline).await?;
            if attempt == 0 && events.first().is_some_and(|e| seq_i64(e.seq) > tail.0 + 1) {
                // the cached tail may be stale (another node wrote since): read it again
                self.tails.lock().remove(pipeline);
                tail = self.tail(pipeline).await?;
            }
            let split = events
                .iter()
                .position(|e| seq_i64(e.seq) > tail.0)
                .unwrap_or(events.len());
            let (old, new) = events.split_at(split);
            if !old.is_empty() {
                self.check_existing(pipeline, old).await?;
            }
            if new.is_empty() && (!old.is_empty() || (checkpoint.is_none() && record.is_none())) {
                return Ok(());
            }
            match self
                .try_append(pipeline, &token, tail, new, checkpoint, record)
                .await?
            {
                Appended::Done => return Ok(()),
                Appended::Moved => {}
            }
        }
        Err(Error::Conflict(format!(
            "ledger of {pipeline}: another writer keeps appending; refused"
        )))
    }

    async fn try_append(
        &self,
        pipeline: &PipelineId,
        token: &str,
        (mut last, mut prev): (i64, [u8; 32]),
        events: &[&Event],
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<Appended> {
        let first = last + 1;
        let mut entries = Vec::with_capacity(events.len());
        for e in events {
            let row = LedgerRow::from_event(e)?;
            if row.seq != last + 1 {
                return Err(Error::Conflict(format!(
                    "ledger of {pipeline}: seq {} would leave a gap after {last}",
                    row.seq
                )));
            }
            let hash = row.hash(&prev);
            entries.push(
                serde_json::to_string(&LedgerEntry {
                    v: 1,
                    seq: row.seq,
                    kind: row.kind,
                    agent_id: row.agent_id,
                    ts: row.ts,
                    data: row.data,
                    prev: hex(&prev),
                    hash: hex(&hash),
                })
                .map_err(|e| Error::Internal(format!("cannot encode a ledger entry: {e}")))?,
            );
            last += 1;
            prev = hash;
        }
        let k = self.shared.keys(pipeline);
        let mut args = vec![
            token.to_owned(),
            first.to_string(),
            entries.len().to_string(),
        ];
        args.extend(entries);
        match checkpoint {
            Some(cp) => {
                args.push(to_json(cp)?);
                args.push(cp.seq.to_string());
            }
            None => args.extend([String::new(), String::new()]),
        }
        args.push(match record {
            Some(r) => to_json(r)?,
            None => String::new(),
        });
        args.push(Self::events_channel(&self.shared.config.key_prefix));
        args.push(match &self.leases {
            Some(l) if !events.is_empty() => relay_payload(l.node(), events)?,
            _ => String::new(),
        });
        let keys = [
            k.fence(),
            k.ledger(),
            k.checkpoint(),
            k.checkpoint_meta(),
            k.record(),
        ];
        let reply: Vec<String> = match self
            .shared
            .run_script(
                &self.shared.scripts.append_state,
                &keys,
                &args,
                "ledger append",
                Effect::Idempotent,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.tails.lock().remove(pipeline);
                return Err(e);
            }
        };
        match reply.first().map(String::as_str) {
            Some("OK") => {
                self.remember(pipeline, (last, prev));
                if let Some(r) = record {
                    self.index(r).await?;
                }
                Ok(Appended::Done)
            }
            Some("FENCED") => {
                self.tails.lock().remove(pipeline);
                if let Some(l) = &self.leases {
                    l.forget(pipeline);
                }
                Err(Error::Fenced {
                    pipeline: pipeline.to_string(),
                })
            }
            Some("SEQ") => {
                // a repeat whose first attempt was applied, or another writer: look again
                self.tails.lock().remove(pipeline);
                Ok(Appended::Moved)
            }
            _ => Err(corrupt("append_state reply", format!("{reply:?}"))),
        }
    }

    /// `Ok` when every event is already stored identically (an idempotent repeat), else a
    /// conflict.
    async fn check_existing(&self, pipeline: &PipelineId, events: &[&Event]) -> Result<()> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let start = seq_i64(first.seq) - 1;
        let stored = self
            .ledger_raw(pipeline, start, start + events.len() as i64 - 1)
            .await?;
        if stored.len() == events.len() {
            let same = stored.iter().zip(events).all(|(json, e)| {
                let Ok(entry) = serde_json::from_str::<LedgerEntry>(json) else {
                    return false;
                };
                LedgerRow::from_event(e).is_ok_and(|row| row == entry.row(pipeline.as_str()))
            });
            if same {
                return Ok(());
            }
        }
        Err(Error::Conflict(format!(
            "ledger of {pipeline}: seq {} is already taken by a different entry, or leaves a gap",
            first.seq
        )))
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

    /// Queues a finished pipeline for archiving (`gov:unarchived`, scored by time).
    pub(crate) async fn mark_unarchived(&self, id: &PipelineId) -> Result<()> {
        self.index_set("unarchived", id, true).await
    }

    /// Finished pipelines not yet archived by any node, queued longer ago than `age`
    /// (the node that finished one archives it at once; these are the ones it did not get to,
    /// e.g. because it died).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn unarchived(&self, age: std::time::Duration) -> Result<Vec<PipelineId>> {
        let before = chrono::Utc::now().timestamp_millis()
            - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let ids: Vec<String> = self
            .shared
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.global("unarchived"))
                    .arg("-inf")
                    .arg(before)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(500),
                "archive queue",
                Effect::Read,
            )
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|i| PipelineId::new(i).ok())
            .collect())
    }

    /// Claims the archiving of `id` for `node` for `ttl` (`gov:{P}:archiving`, SET NX): `true`
    /// when this node may archive it now.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn claim_archive(
        &self,
        id: &PipelineId,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let set: Option<String> = self
            .shared
            .query(
                redis::cmd("SET")
                    .arg(self.shared.keys(id).archiving())
                    .arg(node)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)),
                "archive claim",
                Effect::Read,
            )
            .await?;
        Ok(set.is_some())
    }

    /// Marks `id` archived by `node` (`gov:{P}:archived`) and takes it off the archive queue.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn archived(&self, id: &PipelineId, node: &str) -> Result<()> {
        self.shared
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.shared.keys(id).archived())
                    .arg(node),
                "archive mark",
                Effect::Idempotent,
            )
            .await?;
        self.index_set("unarchived", id, false).await
    }

    /// The node that archived `id`, if one did.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn archived_by(&self, id: &PipelineId) -> Result<Option<String>> {
        self.shared
            .query(
                redis::cmd("GET").arg(self.shared.keys(id).archived()),
                "archive mark",
                Effect::Read,
            )
            .await
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

    /// Every ledger entry of `pipeline` as stored (for verification and archiving).
    ///
    /// # Errors
    /// Backend errors; a corrupt entry.
    pub async fn entries(&self, pipeline: &PipelineId) -> Result<Vec<LedgerEntry>> {
        let raw = self.ledger_raw(pipeline, 0, -1).await?;
        raw.iter()
            .map(|j| serde_json::from_str(j).map_err(|e| corrupt("ledger entry", e)))
            .collect()
    }

    /// Walks the hash chain of every pipeline in the registry: the first broken entry of each
    /// broken chain.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn verify(&self) -> Result<VerifyOutcome> {
        let ids = self.index_members("pipelines", false).await?;
        let mut out = VerifyOutcome::default();
        for id in ids {
            let Ok(pid) = PipelineId::new(id.clone()) else {
                out.broken
                    .push((id, 0, "invalid pipeline id in the index".into()));
                continue;
            };
            out.pipelines += 1;
            let raw = self.ledger_raw(&pid, 0, -1).await?;
            let mut prev = GENESIS;
            for (i, json) in raw.iter().enumerate() {
                out.entries += 1;
                let seq = i as i64 + 1;
                let problem = match serde_json::from_str::<LedgerEntry>(json) {
                    Err(e) => Some(format!("not a ledger entry: {e}")),
                    Ok(e) if e.seq != seq => Some(format!("holds seq {} at position {seq}", e.seq)),
                    Ok(e) if e.prev != hex(&prev) => Some("prev hash does not match".into()),
                    Ok(e) => {
                        let h = e.row(&id).hash(&prev);
                        if e.hash == hex(&h) {
                            prev = h;
                            None
                        } else {
                            Some("hash does not match its content".into())
                        }
                    }
                };
                if let Some(p) = problem {
                    out.broken.push((id.clone(), seq, p));
                    break;
                }
            }
        }
        Ok(out)
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

enum Appended {
    Done,
    Moved,
}

/// What [`RedisStore::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// Pipelines checked.
    pub pipelines: u64,
    /// Entries checked.
    pub entries: u64,
    /// `(pipeline, seq, problem)` of the first broken entry of each broken chain.
    pub broken: Vec<(String, i64, String)>,
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

/// The payload published on `gov:events` for other nodes: `{"node": .., "events": [..]}`.
fn relay_payload(node: &str, events: &[&Event]) -> Result<String> {
    #[derive(Serialize)]
    struct Relay<'a> {
        v: u32,
        node: &'a str,
        events: &'a [&'a Event],
    }
    to_json(&Relay { v: 1, node, events })
}

/// A relayed batch of events from another node.
#[derive(Debug, Deserialize)]
pub(crate) struct Relayed {
    pub node: String,
    pub events: Vec<Event>,
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

    async fn append_with_state(
        &self,
        events: &[Event],
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<bool> {
        let groups = group(events);
        let target = record
            .map(|r| &r.id)
            .or_else(|| checkpoint.map(|c| &c.record.id));
        match (groups.as_slice(), target) {
            ([(p, evs)], Some(t)) if *p == t => {
                self.append_one(p, evs, checkpoint, record).await?;
                Ok(true)
            }
            ([], Some(t)) => {
                let t = t.clone();
                self.set_fenced(&t, checkpoint, record).await?;
                Ok(true)
            }
            _ => {
                self.append(events).await?;
                Ok(false)
            }
        }
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

fn matches(filter: &PipelineFilter, rec: &PipelineRecord) -> bool {
    (filter.statuses.is_empty() || filter.statuses.contains(&rec.status))
        && filter.created_after.is_none_or(|t| rec.created_at >= t)
        && filter.created_before.is_none_or(|t| rec.created_at < t)
}
