//! Agents in other processes: [`RemoteRole`] stands in for a role inside the engine that owns a
//! pipeline, and a [`Worker`] (any process on the same Redis: `governance worker`, or an agent
//! in another language) plays it.
//!
//! # Protocol (wire version 1; also in `docs/wire-protocol.md`)
//! 1. **Work**: the owner's [`RemoteRole`] adds one entry to the stream `gov:work:<ROLE>`
//!    (field `w`, JSON [`WorkItem`]) unless a worker already plays the role for the pipeline
//!    (heartbeat key `gov:{P}:worker:<ROLE>` exists). Workers read the stream through the
//!    consumer group `workers` (`XREADGROUP`), so each item goes to one worker.
//! 2. **Lease**: while it plays the role, the worker refreshes the heartbeat key (TTL = lease)
//!    and resets the entry's idle time (`XCLAIM … JUSTID`) every `lease / 3`. An entry idle for
//!    longer than the lease belongs to a dead worker: another worker takes it with
//!    `XAUTOCLAIM … <lease>` and plays the role again, **continuing from the blackboard** (its
//!    proposals and votes are idempotent, and the role reads what is already there).
//! 3. **Events**: everything the remote agent does that belongs in the ledger (its
//!    `agent_message`, `proposal_created`, `vote_cast`, `consensus_reached`, `llm_call`,
//!    `error` events) it publishes on the pipeline's bus as a message from `<ROLE>` to
//!    `ORCHESTRATOR`, topic `event`, content = the event's `{"type":…,"data":…}` JSON. The
//!    owner records them ([`AgentContext::record_remote`]), refusing anything an agent may not
//!    report (status changes, other agents' votes, a consensus the blackboard does not show).
//!    Its position in the bus is kept in `gov:{P}:remote:<ROLE>`, so a node that takes the
//!    pipeline over continues where the old owner stopped.
//!    The work item carries `after`, the bus `seq` when it was queued: the worker ignores
//!    control messages at or before it, and the owner ignores a `done` at or before it (both
//!    belong to an earlier run of the role, e.g. before the server restarted).
//!    It also carries the tokens (and USD) the role and the pipeline had used, which the
//!    worker counts against its budgets; the owner charges every reported `llm_call` to its
//!    own view of the budgets and stops a role (`cancel`) once they are used up.
//! 4. **End**: the worker publishes topic `done` with `{"outcome":"done"|"idle"|"revoked"|
//!    "failed","message":…}`, then `XACK`s and deletes the entry and its heartbeat. The owner
//!    cancels remote work with a message from `ORCHESTRATOR` to `<ROLE>`, topic `cancel`, and
//!    announces a changed quorum with topic `quorum` (content: the number). A worker
//!    restarted under the same name takes its own pending work back after the lease, like any
//!    other worker.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use governance_core::{
    Agent, AgentContext, AgentId, AgentOutcome, Config, DetachedContext, Error, Event, EventKind,
    GammaReason, LedgerStore, LlmClient, Message, MessageBus, PipelineId, Report, Result,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::backend::Shared;
use crate::bus::RedisBus;
use crate::error::Effect;
use crate::{RedisBackend, RedisBlackboard};

/// The consumer group every worker reads work through.
pub const WORKER_GROUP: &str = "workers";
/// The bus recipient of remote agents' reports.
pub const ORCHESTRATOR: &str = "ORCHESTRATOR";

/// One unit of agent work: play `role` in `pipeline_id` (payload of `gov:work:<ROLE>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Payload version (1).
    pub v: u32,
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// The role to play (also the agent id).
    pub role: String,
    /// The pipeline's objective.
    pub objective: String,
    /// The RUNNING stage's report.
    #[serde(default)]
    pub report: Option<Report>,
    /// Approvals a proposal needs now.
    pub quorum: u32,
    /// The model to ask.
    pub model: String,
    /// Why GAMMA was spawned (GAMMA only).
    #[serde(default)]
    pub gamma_reason: Option<GammaReason>,
    /// The pipeline's last bus `seq` when the work was queued: control messages (`cancel`,
    /// `quorum`) at or before it belong to an earlier run of the role and must be ignored.
    #[serde(default)]
    pub after: u64,
    /// Tokens this role had already used in the pipeline when the work was queued.
    #[serde(default)]
    pub agent_tokens_used: u64,
    /// Tokens the whole pipeline had used when the work was queued.
    #[serde(default)]
    pub pipeline_tokens_used: u64,
    /// USD the whole pipeline had spent when the work was queued.
    #[serde(default)]
    pub pipeline_cost_usd: f64,
}

/// How a remote agent's run ended (topic `done`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// `done`, `idle`, `revoked` or `failed`.
    pub outcome: String,
    /// Why, for `revoked` and `failed`.
    #[serde(default)]
    pub message: Option<String>,
}

fn work_stream(prefix: &str, role: &str) -> String {
    format!("{prefix}:work:{role}")
}

fn work_channel(prefix: &str) -> String {
    format!("{prefix}:work")
}

/// `gov:{P}:ended:<ROLE>`: set when the owner stops following the role (TTL one day).
fn ended_key(shared: &Shared, id: &PipelineId, role: &str) -> String {
    pipeline_key(shared, id, &format!("ended:{role}"))
}

fn pipeline_key(shared: &Shared, id: &PipelineId, name: &str) -> String {
    format!("{}:{{{}}}:{name}", shared.config.key_prefix, id.as_str())
}

fn orchestrator() -> AgentId {
    AgentId::new(ORCHESTRATOR).unwrap_or_else(|_| unreachable!("a valid literal id"))
}

/// A role played by a worker process: registered in the owning engine in place of the local
/// agent (`.alpha(..)`, `.beta(..)`, `.gamma(..)` or `.role(..)`). See the module docs.
#[derive(Clone)]
pub struct RemoteRole {
    shared: Arc<Shared>,
    role: String,
    votes: bool,
}

impl fmt::Debug for RemoteRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRole")
            .field("role", &self.role)
            .field("votes", &self.votes)
            .finish_non_exhaustive()
    }
}

impl RemoteRole {
    /// `role` (`[A-Za-z0-9_-]{1,32}`) played by workers on `backend`; `votes`: whether its
    /// votes count toward the quorum.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for an invalid role name.
    pub fn new(backend: &RedisBackend, role: &str, votes: bool) -> Result<Self> {
        governance_core::validate_id("role", role)?;
        Ok(Self {
            shared: backend.shared(),
            role: role.to_owned(),
            votes,
        })
    }

    /// Queues the role's work unless a worker plays it already; returns the bus `seq` from
    /// which a `done` belongs to this run (`None`: a worker already plays it, any `done` after
    /// the saved cursor counts).
    async fn enqueue(&self, ctx: &AgentContext) -> Result<Option<u64>> {
        let id = ctx.pipeline_id();
        let heartbeat = pipeline_key(&self.shared, id, &format!("worker:{}", self.role));
        let playing: i64 = self
            .shared
            .query(
                redis::cmd("EXISTS").arg(&heartbeat),
                "remote heartbeat",
                Effect::Read,
            )
            .await?;
        if playing != 0 {
            return Ok(None);
        }
        let bus_seq: u64 = self
            .shared
            .query::<Option<u64>>(
                redis::cmd("GET").arg(self.shared.keys(id).bus_seq()),
                "bus seq",
                Effect::Read,
            )
            .await?
            .unwrap_or(0);
        let item = WorkItem {
            v: 1,
            pipeline_id: id.clone(),
            role: self.role.clone(),
            objective: ctx.objective().to_owned(),
            report: ctx.report().map(|r| (*r).clone()),
            quorum: ctx.quorum(),
            model: ctx.model().to_owned(),
            gamma_reason: ctx.gamma_reason(),
            after: bus_seq,
            agent_tokens_used: ctx.tokens_used(),
            pipeline_tokens_used: ctx.pipeline_used().0,
            pipeline_cost_usd: ctx.pipeline_used().1,
        };
        let json = serde_json::to_string(&item)
            .map_err(|e| Error::Internal(format!("cannot encode a work item: {e}")))?;
        let _: String = self
            .shared
            .query(
                redis::cmd("XADD")
                    .arg(work_stream(&self.shared.config.key_prefix, &self.role))
                    .arg("*")
                    .arg("w")
                    .arg(json),
                "work enqueue",
                Effect::Idempotent,
            )
            .await?;
        // wake idle workers now rather than at their next poll (best effort)
        let _ = self
            .shared
            .query::<()>(
                redis::cmd("PUBLISH")
                    .arg(work_channel(&self.shared.config.key_prefix))
                    .arg(&self.role),
                "work notify",
                Effect::Idempotent,
            )
            .await;
        Ok(Some(bus_seq))
    }

    async fn tell(&self, id: &PipelineId, topic: &str, content: String) {
        let bus = RedisBus::new(self.shared.clone());
        if let Err(e) = bus
            .publish(id, Message::new(orchestrator(), &self.role, topic, content))
            .await
        {
            tracing::warn!(pipeline_id = %id, error = %e, "could not message the remote agent");
        }
    }

    async fn follow(&self, ctx: &AgentContext) -> Result<AgentOutcome> {
        let id = ctx.pipeline_id().clone();
        let cursor_key = pipeline_key(&self.shared, &id, &format!("remote:{}", self.role));
        let mut after: u64 = self
            .shared
            .query::<Option<u64>>(
                redis::cmd("GET").arg(&cursor_key),
                "remote cursor",
                Effect::Read,
            )
            .await?
            .unwrap_or(0);
        // (re)started: workers may play the role again
        let _: () = self
            .shared
            .query(
                redis::cmd("DEL").arg(ended_key(&self.shared, &id, &self.role)),
                "remote ended",
                Effect::Idempotent,
            )
            .await?;
        let floor = self.enqueue(ctx).await?.unwrap_or(0);
        let mut quorum = ctx.quorum();
        let poll = ctx.config().agent_poll_interval;
        // woken by the bus's live feed (at-most-once); the poll is the fallback
        let mut live = ctx.bus().subscribe(&id).await.ok();
        let mut draining = false;
        loop {
            if ctx.is_cancelled() {
                if draining {
                    self.save_cursor(&cursor_key, after).await;
                    if let Err(e) = ctx.reconcile_remote().await {
                        tracing::warn!(role = %self.role, error = %e, "could not reconcile the remote agent's work");
                    }
                    return Err(Error::Cancelled);
                }
                // one last read: record what the worker reported just before the end
                draining = true;
            }
            if ctx.quorum() != quorum {
                quorum = ctx.quorum();
                self.tell(&id, "quorum", quorum.to_string()).await;
            }
            let msgs = ctx.bus().read(&id, after, 256).await?;
            let moved = !msgs.is_empty();
            for m in msgs {
                after = m.seq;
                if m.from.as_str() != self.role || m.to != ORCHESTRATOR {
                    continue;
                }
                match m.topic.as_str() {
                    "event" => match serde_json::from_str::<EventKind>(&m.content) {
                        Ok(kind) => {
                            if let Err(e) = ctx.record_remote(kind).await {
                                if e.kind() != governance_core::ErrorKind::InvalidInput {
                                    return Err(e);
                                }
                                tracing::warn!(role = %self.role, error = %e, "refused a remote event");
                            }
                            // recorded: a node taking over goes on after it (a report is
                            // recorded twice only if this node dies between the two writes)
                            self.save_cursor(&cursor_key, after).await;
                            // the worker only knew the usage as of queueing: the owner, which
                            // sees every agent's calls, stops a role past the budget
                            if let Some(why) = ctx.budget_exhausted() {
                                return Err(Error::BudgetExceeded(why));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(role = %self.role, error = %e, "ignoring a malformed remote event");
                        }
                    },
                    // a `done` of an earlier run (before this run queued its work)
                    "done" if m.seq <= floor => {}
                    "done" => {
                        self.save_cursor(&cursor_key, after).await;
                        ctx.reconcile_remote().await?;
                        ctx.sync_solution().await?;
                        let done: Done = serde_json::from_str(&m.content).unwrap_or(Done {
                            outcome: "failed".into(),
                            message: Some("malformed done message".into()),
                        });
                        return match done.outcome.as_str() {
                            "done" => Ok(AgentOutcome::Done),
                            "idle" => Ok(AgentOutcome::Idle),
                            "revoked" => Err(Error::Revoked(done.message.unwrap_or_default())),
                            _ => Err(Error::backend(
                                "remote",
                                format!(
                                    "remote {} failed: {}",
                                    self.role,
                                    done.message.unwrap_or_default()
                                ),
                                false,
                            )),
                        };
                    }
                    _ => {}
                }
            }
            if moved {
                self.save_cursor(&cursor_key, after).await;
                ctx.sync_solution().await?;
            }
            if draining {
                continue;
            }
            if moved {
                continue; // there may be more
            }
            match live.as_mut() {
                Some(feed) => tokio::select! {
                    m = feed.next() => if m.is_none() { live = None },
                    () = tokio::time::sleep(poll) => {}
                    () = ctx.cancellation().cancelled() => {}
                },
                None => tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = ctx.cancellation().cancelled() => {}
                },
            }
        }
    }

    async fn save_cursor(&self, key: &str, after: u64) {
        if let Err(e) = self
            .shared
            .query::<()>(
                redis::cmd("SET").arg(key).arg(after),
                "remote cursor",
                Effect::Idempotent,
            )
            .await
        {
            tracing::warn!(error = %e, "could not save the remote cursor");
        }
    }
}

#[async_trait]
impl Agent for RemoteRole {
    fn role(&self) -> &str {
        &self.role
    }

    fn votes(&self) -> bool {
        self.votes
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let r = self.follow(&ctx).await;
        if let Err(Error::BudgetExceeded(why)) = &r {
            // record what the worker already wrote, then stop it
            if let Err(e) = ctx.reconcile_remote().await {
                tracing::warn!(role = %self.role, error = %e, "could not reconcile the remote agent's work");
            }
            tracing::info!(role = %self.role, %why, "remote role stopped by the budget");
        }
        if matches!(r, Err(Error::Cancelled | Error::BudgetExceeded(_))) {
            self.tell(ctx.pipeline_id(), "cancel", String::new()).await;
        }
        // whatever the reason, the owner no longer follows this role: a worker that takes
        // the work over later (its first worker died) drops it instead of playing on
        if let Err(e) = self
            .shared
            .query::<()>(
                redis::cmd("SET")
                    .arg(ended_key(&self.shared, ctx.pipeline_id(), &self.role))
                    .arg(1)
                    .arg("EX")
                    .arg(86_400),
                "remote ended",
                Effect::Idempotent,
            )
            .await
        {
            tracing::warn!(role = %self.role, error = %e, "could not mark the remote role ended");
        }
        r
    }
}

/// Where a worker's agent sends its events: onto the pipeline's bus, for the owner.
#[derive(Debug)]
struct Forward {
    bus: Arc<dyn MessageBus>,
    from: AgentId,
}

#[async_trait]
impl LedgerStore for Forward {
    async fn append(&self, events: &[Event]) -> Result<()> {
        for e in events {
            let json = serde_json::to_string(&e.kind)
                .map_err(|e| Error::Internal(format!("cannot encode an event: {e}")))?;
            self.bus
                .publish(
                    e.pipeline_id(),
                    Message::new(self.from.clone(), ORCHESTRATOR, "event", json),
                )
                .await?;
        }
        Ok(())
    }

    async fn read(&self, _: &PipelineId, _: u64, _: usize) -> Result<Vec<Event>> {
        Ok(Vec::new())
    }

    async fn last_seq(&self, _: &PipelineId) -> Result<u64> {
        Ok(0)
    }
}

/// A worker process's agent runner: claims work for its roles from Redis and plays them. See
/// the module docs for the protocol.
pub struct Worker {
    shared: Arc<Shared>,
    name: String,
    roles: HashMap<String, Arc<dyn Agent>>,
    llm: Arc<dyn LlmClient>,
    config: Arc<Config>,
    lease: Duration,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker named `name` (`[A-Za-z0-9_-]{1,64}`, unique among workers) playing `roles`
    /// with `llm`. `lease`: how long its work stays its own without a heartbeat.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for an invalid name; [`Error::Config`] without roles or with a
    /// lease under 300 ms.
    pub fn new(
        backend: &RedisBackend,
        name: &str,
        roles: Vec<Arc<dyn Agent>>,
        llm: Arc<dyn LlmClient>,
        config: Config,
        lease: Duration,
    ) -> Result<Self> {
        governance_core::validate_id("worker", name)?;
        if roles.is_empty() {
            return Err(Error::config("--roles", "a worker needs at least one role"));
        }
        if lease < Duration::from_millis(300) {
            return Err(Error::config(
                "GOVERNANCE_LEASE_MS",
                "a lease must be at least 300 ms",
            ));
        }
        Ok(Self {
            shared: backend.shared(),
            name: name.to_owned(),
            roles: roles
                .into_iter()
                .map(|a| (a.role().to_owned(), a))
                .collect(),
            llm,
            config: Arc::new(config),
            lease,
        })
    }

    async fn ensure_groups(&self) -> Result<()> {
        for role in self.roles.keys() {
            let r: std::result::Result<(), Error> = self
                .shared
                .query::<()>(
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(work_stream(&self.shared.config.key_prefix, role))
                        .arg(WORKER_GROUP)
                        .arg("0")
                        .arg("MKSTREAM"),
                    "worker group",
                    Effect::Idempotent,
                )
                .await;
            if let Err(e) = r
                && !e.to_string().contains("BUSYGROUP")
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Claims and plays work until `cancel`; the work it holds then is left pending, so other
    /// workers take it over after the lease (or this worker, restarted under the same name,
    /// after the lease).
    ///
    /// # Errors
    /// Backend errors creating the consumer groups.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        self.ensure_groups().await?;
        let this = Arc::new(self);
        let running: Arc<parking_lot::Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut last_reclaim = tokio::time::Instant::now() - this.lease;
        let wake = Arc::new(tokio::sync::Notify::new());
        let listener = AbortOnDrop(tokio::spawn(listen(
            this.shared.clone(),
            wake.clone(),
            cancel.clone(),
        )));
        while !cancel.is_cancelled() {
            let mut items = Vec::new();
            for role in this.roles.keys() {
                let stream = work_stream(&this.shared.config.key_prefix, role);
                if last_reclaim.elapsed() >= this.lease / 2 {
                    match this.reclaim(&stream).await {
                        Ok(mut v) => items.append(&mut v),
                        Err(e) => tracing::warn!(error = %e, "reclaiming work failed"),
                    }
                }
                match this.claim(&stream).await {
                    Ok(mut v) => items.append(&mut v),
                    Err(e) if e.to_string().contains("NOGROUP") => {
                        let _ = this.ensure_groups().await;
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming work failed"),
                }
            }
            if last_reclaim.elapsed() >= this.lease / 2 {
                last_reclaim = tokio::time::Instant::now();
            }
            let items_claimed = !items.is_empty();
            for (stream, entry, json) in items {
                // entry ids are per stream: two roles' streams can hold the same id
                let key = format!("{stream} {entry}");
                if !running.lock().insert(key.clone()) {
                    continue;
                }
                let (this, running, cancel) = (this.clone(), running.clone(), cancel.clone());
                tasks.spawn(async move {
                    this.play(&stream, &entry, &json, cancel).await;
                    running.lock().remove(&key);
                });
            }
            while tasks.try_join_next().is_some() {}
            if !items_claimed {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = wake.notified() => {}
                    () = tokio::time::sleep(this.config.agent_poll_interval) => {}
                }
            }
        }
        drop(listener);
        tasks.shutdown().await;
        Ok(())
    }

    async fn claim(&self, stream: &str) -> Result<Vec<(String, String, String)>> {
        let reply: redis::streams::StreamReadReply = self
            .shared
            .query(
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(WORKER_GROUP)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(16)
                    .arg("STREAMS")
                    .arg(stream)
                    .arg(">"),
                "work claim",
                Effect::Read,
            )
            .await
            .or_else(|e| {
                if e.to_string().contains("nil") {
                    Ok(redis::streams::StreamReadReply::default())
                } else {
                    Err(e)
                }
            })?;
        Ok(reply
            .keys
            .into_iter()
            .flat_map(|k| {
                let key = k.key;
                k.ids.into_iter().filter_map(move |id| {
                    let w: Option<String> = id.get("w");
                    w.map(|w| (key.clone(), id.id, w))
                })
            })
            .collect())
    }

    async fn reclaim(&self, stream: &str) -> Result<Vec<(String, String, String)>> {
        let reply: redis::streams::StreamAutoClaimReply = self
            .shared
            .query(
                redis::cmd("XAUTOCLAIM")
                    .arg(stream)
                    .arg(WORKER_GROUP)
                    .arg(&self.name)
                    .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX))
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(16),
                "work reclaim",
                Effect::Idempotent,
            )
            .await?;
        Ok(reply
            .claimed
            .into_iter()
            .filter_map(|id| {
                let w: Option<String> = id.get("w");
                w.map(|w| (stream.to_owned(), id.id, w))
            })
            .collect())
    }

    /// Whether the owner stopped following `role` in `id` (its work is stale).
    async fn ended(&self, id: &PipelineId, role: &str) -> bool {
        self.shared
            .query::<i64>(
                redis::cmd("EXISTS").arg(ended_key(&self.shared, id, role)),
                "remote ended",
                Effect::Read,
            )
            .await
            .is_ok_and(|n| n == 1)
    }

    async fn finish_entry(&self, stream: &str, entry: &str) {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(stream)
            .arg(WORKER_GROUP)
            .arg(entry)
            .ignore();
        pipe.cmd("XDEL").arg(stream).arg(entry).ignore();
        if let Err(e) = self
            .shared
            .query::<()>(&pipe, "work ack", Effect::Idempotent)
            .await
        {
            tracing::warn!(error = %e, "could not acknowledge finished work");
        }
    }

    /// Plays one work item to its end.
    async fn play(&self, stream: &str, entry: &str, json: &str, cancel: CancellationToken) {
        let item: WorkItem = match serde_json::from_str(json) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a malformed work item");
                self.finish_entry(stream, entry).await;
                return;
            }
        };
        let Some(agent) = self.roles.get(&item.role).cloned() else {
            tracing::warn!(role = %item.role, "work for a role this worker does not play");
            return;
        };
        let Ok(agent_id) = AgentId::new(&item.role) else {
            self.finish_entry(stream, entry).await;
            return;
        };
        let id = item.pipeline_id.clone();
        if self.ended(&id, &item.role).await {
            // the pipeline went on without this work (e.g. it ended while its worker was dead)
            self.finish_entry(stream, entry).await;
            return;
        }
        let span = tracing::info_span!("agent", pipeline_id = %id, agent_id = %agent_id, worker = %self.name);
        let _enter = span.enter();
        drop(_enter);
        let heartbeat = pipeline_key(&self.shared, &id, &format!("worker:{}", item.role));
        let bus: Arc<dyn MessageBus> = Arc::new(RedisBus::new(self.shared.clone()));
        let blackboard = Arc::new(RedisBlackboard::new(self.shared.clone()));
        let agent_cancel = cancel.child_token();
        let mut parts = DetachedContext::new(
            id.clone(),
            item.objective.clone(),
            agent_id.clone(),
            blackboard,
            bus.clone(),
            self.llm.clone(),
            self.config.clone(),
            Arc::new(Forward {
                bus: bus.clone(),
                from: agent_id.clone(),
            }),
        );
        parts.report = item.report.clone();
        parts.quorum = item.quorum;
        parts.model = item.model.clone();
        parts.gamma_reason = item.gamma_reason;
        parts.cancel = agent_cancel.clone();
        parts.agent_tokens_used = item.agent_tokens_used;
        parts.pipeline_used = (item.pipeline_tokens_used, item.pipeline_cost_usd);
        let ctx = AgentContext::detached(parts);
        // heartbeat + control messages until the agent returns
        let watch = AbortOnDrop({
            let (shared, name, lease) = (self.shared.clone(), self.name.clone(), self.lease);
            let (stream, entry, heartbeat) =
                (stream.to_owned(), entry.to_owned(), heartbeat.clone());
            let (ctx, role, id) = (ctx.clone(), item.role.clone(), id.clone());
            let agent_cancel = agent_cancel.clone();
            let start = item.after;
            let ended = ended_key(&self.shared, &id, &item.role);
            tokio::spawn(async move {
                let mut after = start;
                // control messages wake it through the bus's live feed; heartbeats tick
                let mut live = ctx.bus().subscribe(&id).await.ok();
                let mut beat = tokio::time::interval(lease / 3);
                beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = agent_cancel.cancelled() => return,
                        _ = beat.tick() => {
                            let mut pipe = redis::pipe();
                            pipe.cmd("SET")
                                .arg(&heartbeat)
                                .arg(&name)
                                .arg("PX")
                                .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
                                .ignore();
                            pipe.cmd("XCLAIM")
                                .arg(&stream)
                                .arg(WORKER_GROUP)
                                .arg(&name)
                                .arg(0)
                                .arg(&entry)
                                .arg("JUSTID")
                                .ignore();
                            pipe.cmd("EXISTS").arg(&ended);
                            match shared
                                .query::<(i64,)>(&pipe, "worker heartbeat", Effect::Idempotent)
                                .await
                            {
                                Ok((1,)) => {
                                    tracing::info!("the owner no longer follows this role; stopping");
                                    agent_cancel.cancel();
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "worker heartbeat failed"),
                            }
                        }
                        m = async {
                            match live.as_mut() {
                                Some(feed) => feed.next().await,
                                None => std::future::pending().await,
                            }
                        } => {
                            if m.is_none() {
                                live = None;
                            }
                        }
                    }
                    if let Ok(msgs) = ctx.bus().read(&id, after, 256).await {
                        for m in msgs {
                            after = m.seq;
                            if m.from.as_str() != ORCHESTRATOR || m.to != role {
                                continue;
                            }
                            match m.topic.as_str() {
                                "cancel" => agent_cancel.cancel(),
                                "quorum" => {
                                    if let Ok(q) = m.content.parse() {
                                        ctx.set_quorum(q);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
            })
        });
        tracing::info!(pipeline_id = %id, role = %item.role, worker = %self.name, "playing a role");
        let result = agent.run(ctx.clone()).await;
        if cancel.is_cancelled() {
            // the worker is shutting down: leave the entry pending for another worker
            return;
        }
        agent_cancel.cancel();
        let _ = watch.join().await;
        let done = match &result {
            Ok(AgentOutcome::Idle) => Done {
                outcome: "idle".into(),
                message: None,
            },
            Ok(_) => Done {
                outcome: "done".into(),
                message: None,
            },
            Err(Error::Revoked(m)) => Done {
                outcome: "revoked".into(),
                message: Some(m.clone()),
            },
            Err(Error::Cancelled) => Done {
                outcome: "idle".into(),
                message: Some("cancelled".into()),
            },
            Err(e) => Done {
                outcome: "failed".into(),
                message: Some(e.to_string()),
            },
        };
        let content = serde_json::to_string(&done).unwrap_or_default();
        if let Err(e) = bus
            .publish(&id, Message::new(agent_id, ORCHESTRATOR, "done", content))
            .await
        {
            tracing::warn!(error = %e, "could not report the end of a role; it will be replayed");
            return;
        }
        let _ = self
            .shared
            .query::<()>(
                redis::cmd("DEL").arg(&heartbeat),
                "worker heartbeat",
                Effect::Idempotent,
            )
            .await;
        self.finish_entry(stream, entry).await;
    }
}

/// Listens on `gov:work` and wakes the worker's claim loop.
async fn listen(shared: Arc<Shared>, wake: Arc<tokio::sync::Notify>, cancel: CancellationToken) {
    let channels = [work_channel(&shared.config.key_prefix)];
    crate::cluster::on_messages(&shared, &channels, &cancel, |_, _| wake.notify_one()).await;
}

/// A task that dies with its owner (a worker's heartbeat must stop when its work is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    async fn join(mut self) -> std::result::Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
