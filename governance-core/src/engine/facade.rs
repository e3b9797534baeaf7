//! [`Governance`]: the engine an embedding service holds, and its public face. It spawns
//! pipelines, continues, stops and reports on them, streams their events, resumes them after
//! a crash and adopts those of a dead node. Build one with [`Governance::builder`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::broadcast;

use super::driver::{self, Stage};
use super::parts::{Engine, Live};
use super::requests::{ContinueRequest, SpawnRequest, check_objective, validate_timeout};
use crate::blackboard::{Blackboard, BlackboardSnapshot};
use crate::circuit_breaker::BreakerState;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::PipelineId;
use crate::message_bus::MessageBus;
use crate::ownership::Command;
use crate::state_machine::PipelineStatus;
use crate::store::{CheckpointStore, LedgerStore, PipelineFilter, PipelineRecord, StateStore};

/// The governance engine. Cheap to clone; all clones share the same pipelines.
///
/// # Example
/// Spawn a pipeline that rests at REPORT, read its report, then continue it to the end:
/// ```
/// use governance_core::{ContinueRequest, Governance, PipelineStatus, SpawnRequest};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> governance_core::Result<()> {
/// let gov = Governance::builder().build()?;
/// let mut req = SpawnRequest::new("Plan a database migration");
/// req.auto_continue = Some(false);
/// let id = gov.spawn(req).await?;
///
/// let rested = gov.wait_until_rest(&id).await?;
/// assert_eq!(rested.status, PipelineStatus::Report);
/// assert!(rested.report.is_some());
///
/// gov.continue_pipeline(&id, ContinueRequest::default()).await?;
/// let done = gov.wait(&id).await?;
/// assert_eq!(done.status, PipelineStatus::Completed);
/// assert!(!gov.events(&id, 0, 1000).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Governance {
    pub(super) engine: Arc<Engine>,
}

impl Governance {
    pub(super) fn new(engine: Engine) -> Self {
        Self {
            engine: Arc::new(engine),
        }
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

    /// The role names per-role settings may address (`SpawnRequest::roles`): REPORTER,
    /// GAMMA, ALPHA and BETA (or what replaced them) and the custom roles, in that order.
    #[must_use]
    pub fn role_names(&self) -> Vec<String> {
        self.engine.known_roles()
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

    /// The system of record (ledger, checkpoints and registry in one store).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.engine.store
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
        let objective = check_objective(&req.objective, self.engine.max_objective_len)?;
        if let Some(t) = req.timeout {
            validate_timeout(t)?;
        }
        crate::role_settings::validate_over(
            &self.engine.role_settings,
            &req.roles,
            &self.engine.known_roles(),
            self.engine.config.budgets.max_completion_tokens,
        )?;
        let mode = req
            .mode
            .clone()
            .unwrap_or_else(|| self.engine.default_mode.clone());
        self.engine.llm(&mode)?;
        let live = Live::create(&self.engine, &objective, &req, mode).await?;
        let id = live.id().clone();
        self.engine.live.lock().insert(id.clone(), live.clone());
        driver::start(&self.engine, live, Stage::Running);
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
                .forward(id, &Command::Continue(req.clone()))
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
        driver::start(&self.engine, live, Stage::Orchestrating);
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
            if self.engine.ownership.forward(id, &Command::Stop).await? {
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
            driver::stop_resting(&self.engine, &live).await?;
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

    /// Waits until the pipeline reaches a terminal status (COMPLETED, STOPPED, a failure) and
    /// returns its record. A pipeline resting at REPORT (auto-continue off) or at
    /// AWAITING_APPROVAL waits here until it is continued, decided or stopped; use
    /// [`wait_until_rest`](Self::wait_until_rest) to stop there.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn wait(&self, id: &PipelineId) -> Result<PipelineRecord> {
        self.wait_for_status(id, PipelineStatus::is_terminal).await
    }

    /// Waits until the pipeline comes to rest: it reaches REPORT (where it rests unless
    /// auto-continue is on), AWAITING_APPROVAL (it waits for [`approve`](Self::approve)) or a
    /// terminal status, and returns its record. With auto-continue on, a pipeline passes
    /// REPORT without resting: the record returned may then already show ORCHESTRATING or
    /// later.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn wait_until_rest(&self, id: &PipelineId) -> Result<PipelineRecord> {
        self.wait_for_status(id, |s| {
            s.is_terminal()
                || matches!(s, PipelineStatus::Report | PipelineStatus::AwaitingApproval)
        })
        .await
    }

    async fn wait_for_status(
        &self,
        id: &PipelineId,
        done: impl Fn(PipelineStatus) -> bool,
    ) -> Result<PipelineRecord> {
        let live = self.engine.live.lock().get(id).cloned();
        if let Some(live) = live {
            let mut rx = live.status_rx();
            let _ = rx.wait_for(|s| done(*s)).await;
        }
        self.get(id).await
    }

    /// How many pipelines the registry holds in each status (statuses with none left out).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>> {
        self.engine.registry.count_by_status().await
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
            let own = live.state.breaker().state() != BreakerState::Closed;
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
        driver::resume_incomplete(&self.engine).await
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
        match driver::resume_one(&self.engine, rec).await {
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

    async fn live(&self, id: &PipelineId) -> Result<Arc<Live>> {
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
