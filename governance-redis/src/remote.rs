//! Agents in other processes: [`RemoteRole`] stands in for a role inside the engine that owns a
//! pipeline, and a [`Worker`] (any process on the same Redis: `governance worker`, or an agent
//! in another language) plays it.
//!
//! # Protocol (wire protocol version 2; also in `docs/wire-protocol.md`)
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
//!    `ORCHESTRATOR`, topic `control`, content = a [`WorkerReport::Event`]
//!    (`{"type":"event","event":{"type":…,"data":…}}`). The owner records them ([`RemoteLink::record_remote`]), refusing anything an agent may not
//!    report (status changes, other agents' votes, a consensus the blackboard does not show).
//!    Its position in the bus is kept in `gov:{P}:remote:<ROLE>`, so a node that takes the
//!    pipeline over continues where the old owner stopped.
//!    The work item carries `after`, the bus `seq` when it was queued: the worker ignores
//!    control messages at or before it, and the owner ignores a `done` report at or before it (both
//!    belong to an earlier run of the role, e.g. before the server restarted).
//!    It also carries the tokens (and USD) the role and the pipeline had used, which the
//!    worker counts against its budgets; the owner charges every reported `llm_call` to its
//!    own view of the budgets and stops a role ([`Control::Cancel`]) once they are used up.
//! 4. **End**: the worker reports [`WorkerReport::Done`] (`{"type":"done","outcome":"done"|
//!    "idle"|"revoked"|"failed","message":…}`), then `XACK`s and deletes the entry and its
//!    heartbeat. The owner cancels remote work with a message from `ORCHESTRATOR` to `<ROLE>`,
//!    topic `control`, content [`Control::Cancel`] (`{"type":"cancel"}`), and announces a
//!    changed quorum with [`Control::Quorum`] (`{"type":"quorum","quorum":1}`). A worker
//!    restarted under the same name takes its own pending work back after the lease, like any
//!    other worker.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use governance_core::{
    AgentContext, AgentOutcome, CONTROL_TOPIC, Control, Error, MessageBus, PipelineId, RemoteAgent,
    RemoteLink, Result, Role,
};

use crate::RedisBackend;
use crate::conn::{Effect, Shared};
use crate::coordination::RedisBus;
pub use crate::protocol::{PROTOCOL_VERSION, RemoteOutcome, WORKER_GROUP, WorkItem, WorkerReport};
use crate::protocol::{control, ended_key, heartbeat_key, pipeline_key, work_channel, work_stream};

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
    role: Role,
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
        Ok(Self {
            shared: backend.shared(),
            role: Role::new(role)?,
            votes,
        })
    }

    /// Queues the role's work unless a worker plays it already; returns the bus `seq` from
    /// which a `done` belongs to this run (`None`: a worker already plays it, any `done` after
    /// the saved cursor counts).
    async fn enqueue(&self, ctx: &AgentContext, link: &RemoteLink) -> Result<Option<u64>> {
        let id = ctx.pipeline_id();
        let heartbeat = heartbeat_key(&self.shared, id, &self.role);
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
        let rule = ctx.consensus_rule();
        let item = WorkItem {
            v: PROTOCOL_VERSION,
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
            settings: link.settings().clone(),
            required: rule.required,
            mediators: rule.mediators,
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
                    .arg(self.role.as_str()),
                "work notify",
                Effect::Idempotent,
            )
            .await;
        Ok(Some(bus_seq))
    }

    async fn tell(&self, id: &PipelineId, message: &Control) {
        if let Err(e) = self.bus().publish(id, control(&self.role, message)).await {
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
        let mut approvers = ctx.consensus_rule();
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
                self.tell(&id, &Control::Quorum { quorum }).await;
            }
            let now = ctx.consensus_rule();
            if (&now.required, &now.mediators) != (&approvers.required, &approvers.mediators) {
                approvers = now;
                let (required, mediators) =
                    (approvers.required.clone(), approvers.mediators.clone());
                self.tell(
                    &id,
                    &Control::Approvers {
                        required,
                        mediators,
                    },
                )
                .await;
            }
            let msgs = bus.read(&id, after, 256).await?;
            let moved = !msgs.is_empty();
            for m in msgs {
                after = m.seq;
                if m.from != self.role
                    || m.to != Role::ORCHESTRATOR.as_str()
                    || m.topic != CONTROL_TOPIC
                {
                    continue;
                }
                let report = match WorkerReport::parse(&m.content) {
                    Ok(r) => r,
                    // a `done` this version cannot read ends the role as failed
                    Err(true) => WorkerReport::Done {
                        outcome: RemoteOutcome::Failed,
                        message: Some("malformed done message".into()),
                    },
                    Err(false) => {
                        tracing::warn!(role = %self.role, "ignoring a malformed remote report");
                        continue;
                    }
                };
                match report {
                    WorkerReport::Event { event } => {
                        if let Err(e) = link.record_remote(*event).await {
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
                    // a `done` of an earlier run (before this run queued its work)
                    WorkerReport::Done { .. } if m.seq <= floor => {}
                    WorkerReport::Done { outcome, message } => {
                        self.save_cursor(&cursor_key, after).await;
                        link.reconcile_remote().await?;
                        link.sync_solution().await?;
                        let message = message.unwrap_or_default();
                        return match outcome {
                            RemoteOutcome::Done => Ok(AgentOutcome::Done),
                            RemoteOutcome::Idle => Ok(AgentOutcome::Idle),
                            RemoteOutcome::Revoked => Err(Error::Revoked(message)),
                            RemoteOutcome::Failed => Err(Error::backend(
                                "remote",
                                format!("remote {} failed: {message}", self.role),
                                false,
                            )),
                        };
                    }
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
        self.role.as_str()
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
            self.tell(ctx.pipeline_id(), &Control::Cancel).await;
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
