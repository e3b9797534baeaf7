//! [`Governance`]: the engine an embedding service holds. It spawns pipelines, continues,
//! stops and reports on them, and streams their events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{Agent, Registered, RemoteAgent};
use crate::blackboard::{Blackboard, BlackboardSnapshot};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::PipelineId;
use crate::llm::LlmClient;
use crate::local_llm::LocalLlm;
use crate::memory::{MemoryBlackboard, MemoryBus, MemoryStore};
use crate::message_bus::MessageBus;
use crate::pipeline::{Live, Stage};
use crate::roles::{Alpha, Beta, Gamma};
use crate::spawn_controller::{SpawnController, ThresholdSpawnController};
use crate::state_machine::PipelineStatus;
use crate::store::{
    CheckpointStore, LedgerStore, PipelineFilter, PipelineRecord, PipelineRegistry,
};

/// The longest objective accepted by default (characters).
pub const DEFAULT_MAX_OBJECTIVE_LEN: usize = 4000;

/// What `spawn` needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// What the pipeline should achieve.
    pub objective: String,
    /// Continue into orchestration after the report (default: `AUTO_ORCHESTRATE`).
    #[serde(default)]
    pub auto_continue: Option<bool>,
    /// LLM mode (`local`, `openrouter`; default: the engine's default mode).
    #[serde(default)]
    pub mode: Option<String>,
    /// Model (default: the default model of the mode's client: `local/deterministic` for the
    /// local LLM, `OPENROUTER_MODEL` for OpenRouter).
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout (default: `ORCHESTRATION_TIMEOUT`).
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl SpawnRequest {
    /// A request with just an objective.
    #[must_use]
    pub fn new(objective: impl Into<String>) -> Self {
        Self {
            objective: objective.into(),
            ..Self::default()
        }
    }
}

/// What `continue_pipeline` takes (the seed's `POST /api/pipeline/continue`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContinueRequest {
    /// LLM mode for the orchestration.
    #[serde(default)]
    pub mode: Option<String>,
    /// Model (default: the pipeline's model; with a `mode`, that mode's client's default model).
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// The pieces an engine is built from.
#[derive(Debug)]
pub(crate) struct Engine {
    pub config: Arc<Config>,
    pub blackboard: Arc<dyn Blackboard>,
    pub bus: Arc<dyn MessageBus>,
    pub ledger: Arc<dyn LedgerStore>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub registry: Arc<dyn PipelineRegistry>,
    pub llms: HashMap<String, Arc<dyn LlmClient>>,
    pub default_mode: String,
    pub alpha: Arc<dyn Agent>,
    pub beta: Arc<dyn Agent>,
    pub gamma: Arc<dyn Agent>,
    pub extra_roles: Vec<Arc<dyn Agent>>,
    pub controller: Arc<dyn SpawnController>,
    pub ownership: Arc<dyn crate::ownership::Ownership>,
    pub hub: broadcast::Sender<Arc<Event>>,
    pub live: Mutex<HashMap<PipelineId, Arc<Live>>>,
    pub max_objective_len: usize,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// Pipelines whose next durable write is waiting for the storage (see [`crate::durable`]).
    pub waiting_writes: Arc<AtomicUsize>,
}

impl Engine {
    /// The retry policy of acknowledged pipelines' durable writes.
    pub fn write_retry(&self) -> crate::durable::WriteRetry {
        crate::durable::WriteRetry::new(self.shutdown.clone(), self.waiting_writes.clone())
    }

    pub fn llm(&self, mode: &str) -> Result<Arc<dyn LlmClient>> {
        self.llms.get(mode).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.llms.keys().map(String::as_str).collect();
            known.sort_unstable();
            Error::InvalidInput(format!(
                "LLM mode {mode:?} is not available on this server (available: {})",
                known.join(", ")
            ))
        })
    }
}

/// Builds a [`Governance`]. Everything has an in-memory default.
#[derive(Debug, Default)]
pub struct GovernanceBuilder {
    config: Option<Config>,
    blackboard: Option<Arc<dyn Blackboard>>,
    bus: Option<Arc<dyn MessageBus>>,
    ledger: Option<Arc<dyn LedgerStore>>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    registry: Option<Arc<dyn PipelineRegistry>>,
    llms: HashMap<String, Arc<dyn LlmClient>>,
    default_mode: Option<String>,
    alpha: Option<Arc<dyn Agent>>,
    beta: Option<Arc<dyn Agent>>,
    gamma: Option<Arc<dyn Agent>>,
    extra_roles: Vec<Arc<dyn Agent>>,
    controller: Option<Arc<dyn SpawnController>>,
    ownership: Option<Arc<dyn crate::ownership::Ownership>>,
    max_objective_len: Option<usize>,
    event_capacity: Option<usize>,
}

impl GovernanceBuilder {
    /// The orchestrator settings (default: [`Config::default`]).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }
    /// The blackboard (default: in memory).
    #[must_use]
    pub fn blackboard(mut self, b: Arc<dyn Blackboard>) -> Self {
        self.blackboard = Some(b);
        self
    }
    /// The message bus (default: in memory).
    #[must_use]
    pub fn bus(mut self, b: Arc<dyn MessageBus>) -> Self {
        self.bus = Some(b);
        self
    }
    /// The ledger (default: in memory).
    #[must_use]
    pub fn ledger(mut self, l: Arc<dyn LedgerStore>) -> Self {
        self.ledger = Some(l);
        self
    }
    /// The checkpoint store (default: in memory).
    #[must_use]
    pub fn checkpoints(mut self, c: Arc<dyn CheckpointStore>) -> Self {
        self.checkpoints = Some(c);
        self
    }
    /// The pipeline registry (default: in memory).
    #[must_use]
    pub fn registry(mut self, r: Arc<dyn PipelineRegistry>) -> Self {
        self.registry = Some(r);
        self
    }
    /// One store object serving as ledger, checkpoint store and registry.
    #[must_use]
    pub fn stores<S>(self, s: Arc<S>) -> Self
    where
        S: LedgerStore + CheckpointStore + PipelineRegistry + 'static,
    {
        self.ledger(s.clone()).checkpoints(s.clone()).registry(s)
    }
    /// Registers an LLM client under a mode name (`local` is always available).
    #[must_use]
    pub fn llm(mut self, mode: impl Into<String>, client: Arc<dyn LlmClient>) -> Self {
        self.llms.insert(mode.into(), client);
        self
    }
    /// The mode used when a request names none (default `local`).
    #[must_use]
    pub fn default_mode(mut self, mode: impl Into<String>) -> Self {
        self.default_mode = Some(mode.into());
        self
    }
    /// Replaces the ALPHA role.
    #[must_use]
    pub fn alpha(mut self, a: Arc<dyn Agent>) -> Self {
        self.alpha = Some(Registered::local(a));
        self
    }
    /// Replaces the BETA role.
    #[must_use]
    pub fn beta(mut self, a: Arc<dyn Agent>) -> Self {
        self.beta = Some(Registered::local(a));
        self
    }
    /// Replaces the GAMMA role.
    #[must_use]
    pub fn gamma(mut self, a: Arc<dyn Agent>) -> Self {
        self.gamma = Some(Registered::local(a));
        self
    }
    /// Adds a custom role that runs beside ALPHA and BETA in every orchestration.
    #[must_use]
    pub fn role(mut self, a: Arc<dyn Agent>) -> Self {
        self.extra_roles.push(Registered::local(a));
        self
    }
    /// Registers a role played by another process (e.g. `governance-redis`'s `RemoteRole`):
    /// named `ALPHA`, `BETA` or `GAMMA` it replaces that role, under any other name it joins
    /// like [`role`](Self::role). Only agents registered this way receive a
    /// [`RemoteLink`](crate::RemoteLink) to record what their remote half reports.
    #[must_use]
    pub fn remote_role(mut self, a: Arc<dyn RemoteAgent>) -> Self {
        let role = a.role().to_owned();
        let agent = Registered::remote(a);
        match role.as_str() {
            "ALPHA" => self.alpha = Some(agent),
            "BETA" => self.beta = Some(agent),
            "GAMMA" => self.gamma = Some(agent),
            _ => self.extra_roles.push(agent),
        }
        self
    }
    /// Sets who owns the pipelines this engine runs (default [`SingleNode`](crate::SingleNode):
    /// this engine alone). Several server nodes on one Redis use `governance-redis`'s leases.
    #[must_use]
    pub fn ownership(mut self, o: Arc<dyn crate::ownership::Ownership>) -> Self {
        self.ownership = Some(o);
        self
    }

    /// Replaces the spawn controller.
    #[must_use]
    pub fn spawn_controller(mut self, c: Arc<dyn SpawnController>) -> Self {
        self.controller = Some(c);
        self
    }
    /// The longest objective accepted (default 4000 characters).
    #[must_use]
    pub fn max_objective_len(mut self, n: usize) -> Self {
        self.max_objective_len = Some(n);
        self
    }
    /// Capacity of the live event channel (default 16384); slower subscribers lag.
    #[must_use]
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = Some(n);
        self
    }

    /// Builds the engine.
    ///
    /// # Errors
    /// [`Error::Config`] when the default mode has no client or a custom role name is invalid
    /// or taken.
    pub fn build(self) -> Result<Governance> {
        let config = self.config.unwrap_or_default();
        let mut llms = self.llms;
        llms.entry("local".to_owned())
            .or_insert_with(|| Arc::new(LocalLlm::default()));
        let default_mode = self.default_mode.unwrap_or_else(|| "local".to_owned());
        if !llms.contains_key(&default_mode) {
            return Err(Error::config(
                "GOVERNANCE_LLM_MODE",
                format!("no LLM client registered for default mode {default_mode:?}"),
            ));
        }
        let mut names = vec![
            "ALPHA".to_owned(),
            "BETA".to_owned(),
            "GAMMA".to_owned(),
            "REPORTER".to_owned(),
            "ORCHESTRATOR".to_owned(),
        ];
        // replaced ALPHA/BETA: their names are their agent ids, so they must not pass for
        // each other, GAMMA, the reporter or the orchestrator
        let alpha_name = self.alpha.as_ref().map_or("ALPHA", |a| a.role());
        let beta_name = self.beta.as_ref().map_or("BETA", |b| b.role());
        for role in [alpha_name, beta_name] {
            if role.len() > 32
                || crate::ids::validate_id("role", role).is_err()
                || role.starts_with("GAMMA")
                || role == "REPORTER"
                || role == "ORCHESTRATOR"
                || alpha_name == beta_name
            {
                return Err(Error::config(
                    "role",
                    format!(
                        "invalid ALPHA/BETA role name {role:?}: 1-32 of [A-Za-z0-9_-], distinct, \
                         not GAMMA*, REPORTER or ORCHESTRATOR"
                    ),
                ));
            }
            if !names.iter().any(|n| n == role) {
                names.push(role.to_owned());
            }
        }
        for r in &self.extra_roles {
            let role = r.role();
            if role.len() > 32
                || crate::ids::validate_id("role", role).is_err()
                || role.starts_with("GAMMA")
            {
                return Err(Error::config(
                    "role",
                    format!("invalid custom role name {role:?}: 1-32 of [A-Za-z0-9_-], not GAMMA*"),
                ));
            }
            if names.iter().any(|n| n == role) {
                return Err(Error::config(
                    "role",
                    format!("role {role:?} is already registered"),
                ));
            }
            names.push(role.to_owned());
        }
        let mem = Arc::new(MemoryStore::default());
        let (hub, _) = broadcast::channel(self.event_capacity.unwrap_or(16_384).max(16));
        let thresholds = config.gamma;
        Ok(Governance {
            engine: Arc::new(Engine {
                config: Arc::new(config),
                blackboard: self
                    .blackboard
                    .unwrap_or_else(|| Arc::new(MemoryBlackboard::default())),
                bus: self.bus.unwrap_or_else(|| Arc::new(MemoryBus::default())),
                ledger: self.ledger.unwrap_or_else(|| mem.clone()),
                checkpoints: self.checkpoints.unwrap_or_else(|| mem.clone()),
                registry: self.registry.unwrap_or(mem),
                llms,
                default_mode,
                alpha: self.alpha.unwrap_or_else(|| Arc::new(Alpha)),
                beta: self.beta.unwrap_or_else(|| Arc::new(Beta)),
                gamma: self.gamma.unwrap_or_else(|| Arc::new(Gamma)),
                extra_roles: self.extra_roles,
                controller: self
                    .controller
                    .unwrap_or_else(|| Arc::new(ThresholdSpawnController::new(thresholds))),
                ownership: self
                    .ownership
                    .unwrap_or_else(|| Arc::new(crate::ownership::SingleNode)),
                hub,
                live: Mutex::new(HashMap::new()),
                max_objective_len: self.max_objective_len.unwrap_or(DEFAULT_MAX_OBJECTIVE_LEN),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                waiting_writes: Arc::default(),
            }),
        })
    }
}

/// The governance engine. Cheap to clone; all clones share the same pipelines.
#[derive(Debug, Clone)]
pub struct Governance {
    pub(crate) engine: Arc<Engine>,
}

impl Governance {
    /// A builder with in-memory defaults.
    #[must_use]
    pub fn builder() -> GovernanceBuilder {
        GovernanceBuilder::default()
    }

    /// The orchestrator settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The default LLM mode.
    #[must_use]
    pub fn default_mode(&self) -> &str {
        &self.engine.default_mode
    }

    /// Registered LLM modes.
    #[must_use]
    pub fn modes(&self) -> Vec<String> {
        let mut m: Vec<String> = self.engine.llms.keys().cloned().collect();
        m.sort();
        m
    }

    /// The blackboard backend.
    #[must_use]
    pub fn blackboard(&self) -> &Arc<dyn Blackboard> {
        &self.engine.blackboard
    }

    /// The bus backend.
    #[must_use]
    pub fn bus(&self) -> &Arc<dyn MessageBus> {
        &self.engine.bus
    }

    /// The ledger backend.
    #[must_use]
    pub fn ledger(&self) -> &Arc<dyn LedgerStore> {
        &self.engine.ledger
    }

    /// The checkpoint backend.
    #[must_use]
    pub fn checkpoints(&self) -> &Arc<dyn CheckpointStore> {
        &self.engine.checkpoints
    }

    /// The registry backend.
    #[must_use]
    pub fn registry(&self) -> &Arc<dyn PipelineRegistry> {
        &self.engine.registry
    }

    /// Live events of every pipeline (at-most-once; replay from the ledger with
    /// [`events`](Self::events) to fill gaps).
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.engine.hub.subscribe()
    }

    /// Spawns a pipeline; it starts RUNNING at once. Returns its id.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or too long objective or an unknown mode;
    /// backend errors from the registry/ledger.
    pub async fn spawn(&self, req: SpawnRequest) -> Result<PipelineId> {
        if self.engine.shutdown.is_cancelled() {
            return Err(Error::backend(
                "engine",
                "shutting down: not accepting new pipelines",
                true,
            ));
        }
        let objective = req.objective.trim();
        if objective.is_empty() {
            return Err(Error::InvalidInput("objective must not be empty".into()));
        }
        if objective.chars().count() > self.engine.max_objective_len {
            return Err(Error::InvalidInput(format!(
                "objective is longer than {} characters",
                self.engine.max_objective_len
            )));
        }
        if let Some(t) = req.timeout {
            validate_timeout(t)?;
        }
        let mode = req
            .mode
            .clone()
            .unwrap_or_else(|| self.engine.default_mode.clone());
        self.engine.llm(&mode)?;
        let live = Live::create(&self.engine, objective, &req, mode).await?;
        let id = live.shared.id.clone();
        self.engine.live.lock().insert(id.clone(), live.clone());
        crate::pipeline::start(&self.engine, live, Stage::Running);
        Ok(id)
    }

    /// Continues a pipeline resting at REPORT into orchestration.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] when it is not at REPORT (or already
    /// continuing); [`Error::InvalidInput`] for an unknown mode.
    pub async fn continue_pipeline(&self, id: &PipelineId, mut req: ContinueRequest) -> Result<()> {
        if let Some(t) = req.timeout {
            validate_timeout(t)?;
        }
        if let Some(m) = &req.mode {
            let llm = self.engine.llm(m)?;
            // a new mode without a model: that mode's client's default model
            if req.model.is_none() {
                req.model = Some(llm.default_model().to_owned());
            }
        }
        let live = match self.live(id).await {
            Ok(live) => live,
            // resting at REPORT on another node (cluster mode): ask its owner
            Err(Error::InvalidTransition {
                from: PipelineStatus::Report,
                ..
            }) if self
                .engine
                .ownership
                .forward(id, &crate::ownership::Command::Continue(req.clone()))
                .await? =>
            {
                let rec = self
                    .wait_elsewhere(id, |s| s != PipelineStatus::Report)
                    .await?;
                tracing::debug!(pipeline_id = %id, status = %rec.status, "continued by its owner");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        live.prepare_continue(&req).await?;
        crate::pipeline::start(&self.engine, live, Stage::Orchestrating);
        Ok(())
    }

    /// Emergency stop: cancels the pipeline's agents and ends it STOPPED (a pipeline that has
    /// already ended keeps its status). Returns the final status.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when another process runs it and the
    /// [`Ownership`](crate::Ownership) cannot forward the stop to it; [`Error::Timeout`] when
    /// the owner did not stop it within a minute of the forwarded request.
    pub async fn stop(&self, id: &PipelineId) -> Result<PipelineStatus> {
        let Some(live) = self.engine.live.lock().get(id).cloned() else {
            let rec = self.get(id).await?;
            if rec.status.is_terminal() {
                return Ok(rec.status);
            }
            // it runs in another process (cluster mode): ask its owner, wait for the end
            if self
                .engine
                .ownership
                .forward(id, &crate::ownership::Command::Stop)
                .await?
            {
                return self
                    .wait_elsewhere(id, |s| s.is_terminal())
                    .await
                    .map(|r| r.status);
            }
            return Err(Error::Conflict(format!(
                "pipeline {id} is not running in this process (node {})",
                self.engine.ownership.node_id()
            )));
        };
        live.stop.cancel();
        if !live.is_driven() {
            // resting at REPORT (or not started): stop it here
            crate::pipeline::stop_resting(&self.engine, &live).await?;
        }
        let mut rx = live.status_rx();
        let st = *rx
            .wait_for(|s| s.is_terminal())
            .await
            .map_err(|_| Error::Internal("pipeline task ended without a status".into()))?;
        Ok(st)
    }

    /// The pipeline's record (live state for a running pipeline). While a running pipeline's
    /// status change is being written (which may wait for a backend: the blackboard's snapshot,
    /// a full disk), it is the registry's committed record with the live agents and usage.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn get(&self, id: &PipelineId) -> Result<PipelineRecord> {
        let live = self.engine.live.lock().get(id).cloned();
        if let Some(live) = live {
            if let Some(rec) = live.try_snapshot_record() {
                return Ok(rec);
            }
            if let Some(mut rec) = self.engine.registry.get(id).await? {
                live.sync_runtime(&mut rec);
                return Ok(rec);
            }
            return Ok(live.snapshot_record().await);
        }
        self.engine
            .registry
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found("pipeline", id))
    }

    /// The pipeline's blackboard (from the final checkpoint once it has ended).
    ///
    /// # Errors
    /// [`Error::NotFound`]; backend errors.
    pub async fn blackboard_snapshot(&self, id: &PipelineId) -> Result<BlackboardSnapshot> {
        let live = self.engine.live.lock().get(id).cloned();
        // a terminal pipeline's working blackboard may already be cleared: use the checkpoint
        if live.is_some_and(|l| !l.status_rx().borrow().is_terminal()) {
            return self.engine.blackboard.snapshot(id).await;
        }
        match self.engine.checkpoints.latest(id).await? {
            Some(cp) => Ok(cp.blackboard),
            None => {
                self.get(id).await?;
                Ok(BlackboardSnapshot::default())
            }
        }
    }

    /// Pipelines matching `filter`, newest first.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
        self.engine.registry.list(filter).await
    }

    /// The pipeline's events with `seq > after` (at most `limit`) from the ledger.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn events(&self, id: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.engine.ledger.read(id, after, limit).await
    }

    /// Waits until the pipeline reaches a terminal status (or, when `rest` is true, REPORT)
    /// and returns its record. With auto-continue on, a pipeline passes REPORT without resting:
    /// the record returned for `rest = true` may then already show ORCHESTRATING or later.
    /// A pipeline resting at REPORT with `rest = false` waits until it is continued or stopped.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn wait(&self, id: &PipelineId, rest: bool) -> Result<PipelineRecord> {
        let live = self.engine.live.lock().get(id).cloned();
        if let Some(live) = live {
            let mut rx = live.status_rx();
            let _ = rx
                .wait_for(|s| s.is_terminal() || (rest && *s == PipelineStatus::Report))
                .await;
        }
        self.get(id).await
    }

    /// Number of pipelines currently held live (not terminal).
    #[must_use]
    pub fn live_count(&self) -> usize {
        self.engine.live.lock().len()
    }

    /// Live pipelines being driven whose LLM calls a circuit breaker refuses now: the
    /// pipeline's own breaker is open or half-open (no call has succeeded since it opened), or
    /// its LLM mode is in `modes_refused` (a breaker shared by every pipeline of that mode, as
    /// `serve` keeps around its OpenRouter client, is not closed).
    pub async fn breaker_blocked_count(&self, modes_refused: &[&str]) -> usize {
        let lives: Vec<_> = self.engine.live.lock().values().cloned().collect();
        let mut n = 0;
        for live in lives.into_iter().filter(|l| l.is_driven()) {
            let own = live.shared.breaker.state() != crate::BreakerState::Closed;
            if own
                || (!modes_refused.is_empty()
                    && modes_refused.contains(&live.with_record(|r| r.mode.clone()).await.as_str()))
            {
                n += 1;
            }
        }
        n
    }

    /// How many running pipelines are waiting for their storage right now: a durable write
    /// (ledger, checkpoint, registry) failed retryably (a full disk, an unreachable store) and
    /// is being retried with backoff. They go on by themselves once writes succeed again.
    #[must_use]
    pub fn pipelines_waiting_to_write(&self) -> usize {
        self.engine.waiting_writes.load(Ordering::Acquire)
    }

    /// Graceful shutdown: cancels every running pipeline's agents, writes a checkpoint of each
    /// in its current (non-terminal) status, and waits at most `grace` for that. The pipelines
    /// are *suspended*, not stopped: an engine started later on the same stores picks them up
    /// with [`resume_incomplete`](Self::resume_incomplete). Use [`stop`](Self::stop) to end a
    /// pipeline for good.
    pub async fn shutdown(&self, grace: Duration) {
        self.engine.shutdown.cancel();
        self.engine.tasks.close();
        let _ = tokio::time::timeout(grace, self.engine.tasks.wait()).await;
    }

    /// Whether [`shutdown`](Self::shutdown) has begun (new spawns are refused).
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.engine.shutdown.is_cancelled()
    }

    /// Resumes every pipeline the registry shows as not terminal and that is not running in
    /// this process (after a crash): each continues from its last checkpoint and the ledger.
    /// Returns the ids resumed; pipelines that cannot be resumed end ORCHESTRATION_FAILED.
    ///
    /// # Errors
    /// Backend errors listing the pipelines.
    pub async fn resume_incomplete(&self) -> Result<Vec<PipelineId>> {
        crate::resume::resume_incomplete(&self.engine).await
    }

    /// Polls the registry until `done(status)` holds for a pipeline another engine runs
    /// (a command was forwarded to it), for at most a minute.
    async fn wait_elsewhere(
        &self,
        id: &PipelineId,
        done: impl Fn(PipelineStatus) -> bool,
    ) -> Result<PipelineRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let rec = self.get(id).await?;
            if done(rec.status) {
                return Ok(rec);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "the request was handed to the node owning pipeline {id}, which has not \
                     carried it out within 60 s (status {})",
                    rec.status
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes over a pipeline whose owning node is gone (its lease expired) and drives it on
    /// from its last checkpoint and the ledger, as [`resume_incomplete`](Self::resume_incomplete)
    /// does after a crash. Returns `false` when there is nothing to do: it already runs here,
    /// another node owns it, or it has ended.
    ///
    /// # Errors
    /// Backend errors (the ownership claim is released again).
    pub async fn adopt(&self, id: &PipelineId) -> Result<bool> {
        if self.engine.shutdown.is_cancelled() || self.engine.live.lock().contains_key(id) {
            return Ok(false);
        }
        if !self.engine.ownership.take_over(id).await? {
            return Ok(false);
        }
        let rec = match self.engine.registry.get(id).await {
            Ok(Some(rec)) if !rec.status.is_terminal() => rec,
            Ok(_) => {
                // ended (or never written) meanwhile: not ours to finish or archive
                self.engine.ownership.release(id, false).await;
                return Ok(false);
            }
            Err(e) => {
                self.engine.ownership.release(id, false).await;
                return Err(e);
            }
        };
        match crate::resume::resume_one(&self.engine, rec).await {
            Ok(resumed) => Ok(resumed),
            Err(e) => {
                self.engine.ownership.release(id, false).await;
                Err(e)
            }
        }
    }

    /// Feeds an event that another node emitted into this engine's live stream
    /// ([`subscribe`](Self::subscribe)), so clients of this node see pipelines that run
    /// elsewhere. It is not written anywhere (the owner already wrote it to the shared ledger).
    pub fn relay(&self, event: Arc<Event>) {
        let _ = self.engine.hub.send(event);
    }

    /// This engine's node id (from its [`Ownership`](crate::Ownership)).
    #[must_use]
    pub fn node_id(&self) -> &str {
        self.engine.ownership.node_id()
    }

    pub(crate) async fn live(&self, id: &PipelineId) -> Result<Arc<Live>> {
        if let Some(l) = self.engine.live.lock().get(id).cloned() {
            return Ok(l);
        }
        let rec = self
            .engine
            .registry
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found("pipeline", id))?;
        Err(Error::InvalidTransition {
            from: rec.status,
            to: PipelineStatus::Orchestrating,
        })
    }
}

fn validate_timeout(t: Duration) -> Result<()> {
    if t.is_zero() || t > Duration::from_secs(86_400) {
        return Err(Error::InvalidInput(
            "timeout must be between 1 second and 24 hours".into(),
        ));
    }
    Ok(())
}
