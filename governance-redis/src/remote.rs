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
//!    owner records them ([`RemoteLink::record_remote`]), refusing anything an agent may not
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

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use governance_core::{
    AgentContext, AgentId, AgentOutcome, Error, EventKind, GammaReason, Message, MessageBus,
    PipelineId, RemoteAgent, RemoteLink, Report, Result,
};
use serde::{Deserialize, Serialize};

use crate::RedisBackend;
use crate::conn::{Effect, Shared};
use crate::coordination::RedisBus;

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

pub(crate) fn work_stream(prefix: &str, role: &str) -> String {
    format!("{prefix}:work:{role}")
}

pub(crate) fn work_channel(prefix: &str) -> String {
    format!("{prefix}:work")
}

/// `gov:{P}:ended:<ROLE>`: set when the owner stops following the role (TTL one day).
pub(crate) fn ended_key(shared: &Shared, id: &PipelineId, role: &str) -> String {
    pipeline_key(shared, id, &format!("ended:{role}"))
}

pub(crate) fn pipeline_key(shared: &Shared, id: &PipelineId, name: &str) -> String {
    format!("{}:{{{}}}:{name}", shared.config.key_prefix, id.as_str())
}

pub(crate) fn orchestrator() -> AgentId {
    AgentId::new(ORCHESTRATOR).unwrap_or_else(|_| unreachable!("a valid literal id"))
}

/// A role played by a worker process: registered in the owning engine with
/// [`GovernanceBuilder::remote_role`](governance_core::GovernanceBuilder::remote_role) (named
/// `ALPHA`, `BETA` or `GAMMA` it replaces the local agent). See the module docs.
///
/// ```no_run
/// # async fn demo(backend: governance_redis::RedisBackend) -> governance_core::Result<()> {
/// use std::sync::Arc;
/// use governance_redis::RemoteRole;
/// let gov = governance_core::Governance::builder()
///     .blackboard(backend.blackboard())
///     .bus(backend.bus())
///     .remote_role(Arc::new(RemoteRole::new(&backend, "BETA", true)?))
///     .build()?;
/// # let _ = gov; Ok(()) }
/// ```
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
    async fn enqueue(&self, ctx: &AgentContext, link: &RemoteLink) -> Result<Option<u64>> {
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
            model: link.model().to_owned(),
            gamma_reason: ctx.gamma_reason(),
            after: bus_seq,
            agent_tokens_used: ctx.tokens_used(),
            pipeline_tokens_used: link.pipeline_used().0,
            pipeline_cost_usd: link.pipeline_used().1,
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
        if let Err(e) = self
            .bus()
            .publish(id, Message::new(orchestrator(), &self.role, topic, content))
            .await
        {
            tracing::warn!(pipeline_id = %id, error = %e, "could not message the remote agent");
        }
    }

    /// The bus, for the owner's side of the protocol (reports in, control messages out).
    fn bus(&self) -> RedisBus {
        RedisBus::new(self.shared.clone())
    }

    async fn follow(&self, ctx: &AgentContext, link: &RemoteLink) -> Result<AgentOutcome> {
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
        let floor = self.enqueue(ctx, link).await?.unwrap_or(0);
        let mut quorum = ctx.quorum();
        let poll = ctx.config().agent_poll_interval;
        // woken by the bus's live feed (at-most-once); the poll is the fallback
        let bus = self.bus();
        let mut live = bus.subscribe(&id).await.ok();
        let mut draining = false;
        loop {
            if ctx.is_cancelled() {
                if draining {
                    self.save_cursor(&cursor_key, after).await;
                    if let Err(e) = link.reconcile_remote().await {
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
            let msgs = bus.read(&id, after, 256).await?;
            let moved = !msgs.is_empty();
            for m in msgs {
                after = m.seq;
                if m.from.as_str() != self.role || m.to != ORCHESTRATOR {
                    continue;
                }
                match m.topic.as_str() {
                    "event" => match serde_json::from_str::<EventKind>(&m.content) {
                        Ok(kind) => {
                            if let Err(e) = link.record_remote(kind).await {
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
                            if let Some(why) = link.budget_exhausted() {
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
                        link.reconcile_remote().await?;
                        link.sync_solution().await?;
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
                link.sync_solution().await?;
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
                    () = ctx.cancelled() => {}
                },
                None => tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = ctx.cancelled() => {}
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
impl RemoteAgent for RemoteRole {
    fn role(&self) -> &str {
        &self.role
    }

    fn votes(&self) -> bool {
        self.votes
    }

    async fn run(&self, ctx: AgentContext, link: RemoteLink) -> Result<AgentOutcome> {
        let r = self.follow(&ctx, &link).await;
        if let Err(Error::BudgetExceeded(why)) = &r {
            // record what the worker already wrote, then stop it
            if let Err(e) = link.reconcile_remote().await {
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
