//! The worker side of remote roles: a [`Worker`] process claims work for its roles from
//! Redis and plays each in an [`AgentContext::detached`] context whose events go onto the
//! pipeline's bus for the owner. The protocol is in [`crate::remote`]'s docs and
//! `docs/wire-protocol.md`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use governance_core::{
    Agent, AgentContext, AgentOutcome, ApproversHandle, Config, Control, DetachedContext, Error,
    Event, LedgerStore, LlmClient, MessageBus, PipelineId, QuorumHandle, Result, Role,
};
use tokio_util::sync::CancellationToken;

use crate::conn::{Effect, Shared};
use crate::coordination::RedisBus;
use crate::protocol::{
    PROTOCOL_VERSION, RemoteOutcome, WORKER_GROUP, WorkItem, WorkerReport, ended_key,
    heartbeat_key, work_channel, work_stream,
};
use crate::{RedisBackend, RedisBlackboard};

/// Where a worker's agent sends its events: onto the pipeline's bus, for the owner.
#[derive(Debug)]
struct Forward {
    bus: Arc<dyn MessageBus>,
    from: Role,
}

#[async_trait]
impl LedgerStore for Forward {
    async fn append(&self, events: &[Event]) -> Result<()> {
        for e in events {
            let report = WorkerReport::Event {
                event: Box::new(e.kind.clone()),
            };
            self.bus
                .publish(e.pipeline_id(), report.message(&self.from)?)
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
    roles: HashMap<Role, Arc<dyn Agent>>,
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
    /// [`Error::InvalidId`] for an invalid name or role name; [`Error::Config`] without roles
    /// or with a lease under 300 ms.
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
        let roles = roles
            .into_iter()
            .map(|a| Ok((Role::new(a.role())?, a)))
            .collect::<Result<_>>()?;
        Ok(Self {
            shared: backend.shared(),
            name: name.to_owned(),
            roles,
            llm,
            config: Arc::new(config),
            lease,
        })
    }

    async fn ensure_groups(&self) -> Result<()> {
        for role in self.roles.keys() {
            let stream = work_stream(&self.shared.config.key_prefix, role);
            self.shared
                .ensure_group("worker group", &stream, WORKER_GROUP)
                .await?;
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
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(WORKER_GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(16)
            .arg("STREAMS")
            .arg(stream)
            .arg(">");
        // nil when there is nothing new; a deleted group (NOGROUP) is created again at once
        let (reply, _): (Option<redis::streams::StreamReadReply>, bool) = self
            .shared
            .query_on_group("work claim", &cmd, stream, WORKER_GROUP)
            .await?;
        Ok(reply
            .unwrap_or_default()
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
    async fn ended(&self, id: &PipelineId, role: &Role) -> bool {
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
        if item.v != PROTOCOL_VERSION {
            // refuse rather than guess: a worker that speaks that version takes it
            tracing::warn!(
                version = item.v,
                "leaving a work item of another protocol version pending"
            );
            return;
        }
        let Some(agent) = self.roles.get(&item.role).cloned() else {
            tracing::warn!(role = %item.role, "work for a role this worker does not play");
            return;
        };
        let agent_id = item.role.agent_id();
        let id = item.pipeline_id.clone();
        if self.ended(&id, &item.role).await {
            // the pipeline went on without this work (e.g. it ended while its worker was dead)
            self.finish_entry(stream, entry).await;
            return;
        }
        let span = tracing::info_span!("agent", pipeline_id = %id, agent_id = %agent_id, worker = %self.name);
        let _enter = span.enter();
        drop(_enter);
        let heartbeat = heartbeat_key(&self.shared, &id, &item.role);
        let bus: Arc<dyn MessageBus> = Arc::new(RedisBus::new(self.shared.clone()));
        let blackboard = Arc::new(RedisBlackboard::new(self.shared.clone()));
        let agent_cancel = cancel.child_token();
        let quorum = QuorumHandle::new(item.quorum);
        let approvers = ApproversHandle::new(item.required.clone(), item.mediators.clone());
        let parts = DetachedContext::new(
            id.clone(),
            item.objective.clone(),
            agent_id.clone(),
            blackboard,
            bus.clone(),
            self.llm.clone(),
            self.config.clone(),
            Arc::new(Forward {
                bus: bus.clone(),
                from: item.role.clone(),
            }),
        )
        .report(item.report.clone())
        .quorum(quorum.clone())
        .approvers(approvers.clone())
        .model(item.model.clone())
        .role_settings(item.settings.clone())
        .gamma_reason(item.gamma_reason)
        .cancel(agent_cancel.clone())
        .agent_tokens_used(item.agent_tokens_used)
        .pipeline_used(item.pipeline_tokens_used, item.pipeline_cost_usd)
        // money budgets are reserved in the store, shared with the owner and other workers
        .cost_ledger(Arc::new(crate::cost::RedisCostLedger::new(
            self.shared.clone(),
        )));
        let ctx = AgentContext::detached(parts);
        // heartbeat + control messages until the agent returns
        let watch = AbortOnDrop({
            let (shared, name, lease) = (self.shared.clone(), self.name.clone(), self.lease);
            let (stream, entry, heartbeat) =
                (stream.to_owned(), entry.to_owned(), heartbeat.clone());
            let (bus, quorum, role, id) = (bus.clone(), quorum, item.role.clone(), id.clone());
            let agent_cancel = agent_cancel.clone();
            let start = item.after;
            let ended = ended_key(&self.shared, &id, &item.role);
            tokio::spawn(async move {
                let mut after = start;
                // control messages wake it through the bus's live feed; heartbeats tick
                let mut live = bus.subscribe(&id).await.ok();
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
                    if let Ok(msgs) = bus.read(&id, after, 256).await {
                        for m in msgs {
                            after = m.seq;
                            if m.to != role.as_str() {
                                continue;
                            }
                            match Control::from_message(&m) {
                                Some(Control::Cancel) => agent_cancel.cancel(),
                                Some(Control::Quorum { quorum: q }) => quorum.set(q),
                                Some(Control::Approvers {
                                    required,
                                    mediators,
                                }) => {
                                    approvers.set(required, mediators);
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
        let (outcome, message) = match &result {
            Ok(AgentOutcome::Idle) => (RemoteOutcome::Idle, None),
            Ok(_) => (RemoteOutcome::Done, None),
            Err(Error::Revoked(m)) => (RemoteOutcome::Revoked, Some(m.clone())),
            Err(Error::Cancelled) => (RemoteOutcome::Idle, Some("cancelled".to_owned())),
            Err(e) => (RemoteOutcome::Failed, Some(e.to_string())),
        };
        let done = WorkerReport::Done { outcome, message }.message(&item.role);
        if let Err(e) = match done {
            Ok(m) => bus.publish(&id, m).await,
            Err(e) => Err(e),
        } {
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
