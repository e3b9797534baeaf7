//! One pipeline's life: creation, status changes with checkpoints, the RUNNING (report) stage,
//! and the end of a pipeline. The ORCHESTRATING stage is in [`crate::orchestration`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent::{AgentContext, ContextParts};
use crate::circuit_breaker::CircuitBreaker;
use crate::durable::write;
use crate::emitter::EventEmitter;
use crate::error::{Error, Result};
use crate::error_budget::CountingErrorBudget;
use crate::event::EventKind;
use crate::governance::{ContinueRequest, Engine, SpawnRequest};
use crate::ids::{AgentId, PipelineId};
use crate::llm::Purpose;
use crate::parse::ReportDraft;
use crate::prompt;
use crate::runtime::Shared;
use crate::state_machine::PipelineStatus;
use crate::store::{AgentRecord, AgentState, Checkpoint, PipelineRecord, Report, UsageTotals};
use crate::token_budget::PipelineBudget;

/// Where a driver task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// From SPAWNED/RUNNING: write the report.
    Running,
    /// From REPORT: orchestrate.
    Orchestrating,
    /// Already ORCHESTRATING (resume after a crash).
    ResumeOrchestrating,
}

/// How a pipeline ends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Completed,
    Failed(String),
    Timeout(String),
    Stopped,
    OrchestrationError(String),
    OrchestrationFailed(String),
    /// The engine is shutting down: checkpoint, keep the status, resume later.
    Suspended,
}

impl Outcome {
    pub fn status(&self) -> PipelineStatus {
        match self {
            Self::Completed => PipelineStatus::Completed,
            Self::Failed(_) => PipelineStatus::Failed,
            Self::Timeout(_) => PipelineStatus::Timeout,
            Self::Stopped => PipelineStatus::Stopped,
            Self::OrchestrationError(_) => PipelineStatus::OrchestrationError,
            Self::OrchestrationFailed(_) | Self::Suspended => PipelineStatus::OrchestrationFailed,
        }
    }

    pub fn reason(&self) -> Option<String> {
        match self {
            Self::Completed => None,
            Self::Suspended => Some("suspended by shutdown".to_owned()),
            Self::Stopped => Some("emergency stop".to_owned()),
            Self::Failed(r)
            | Self::Timeout(r)
            | Self::OrchestrationError(r)
            | Self::OrchestrationFailed(r) => Some(r.clone()),
        }
    }
}

/// A pipeline held in memory while it is not terminal.
#[derive(Debug)]
pub(crate) struct Live {
    pub shared: Arc<Shared>,
    record: tokio::sync::Mutex<PipelineRecord>,
    pub stop: CancellationToken,
    status_tx: watch::Sender<PipelineStatus>,
    driven: AtomicBool,
    pub auto_continue: AtomicBool,
}

impl Live {
    fn build(engine: &Engine, record: PipelineRecord, last_seq: u64) -> Arc<Self> {
        let emitter = EventEmitter::new(
            record.id.clone(),
            last_seq,
            engine.ledger.clone(),
            engine.hub.clone(),
        );
        let shared = Shared::new(
            record.id.clone(),
            Arc::from(record.objective.as_str()),
            emitter,
            PipelineBudget::new(engine.config.budgets),
            Arc::new(CircuitBreaker::new(engine.config.breaker)),
        );
        *shared.report.lock() = record.report.clone().map(Arc::new);
        *shared.agents.lock() = record.agents.clone();
        *shared.usage.lock() = record.usage;
        let (status_tx, _) = watch::channel(record.status);
        Arc::new(Self {
            shared: Arc::new(shared),
            auto_continue: AtomicBool::new(record.auto_continue),
            record: tokio::sync::Mutex::new(record),
            stop: engine.shutdown.child_token(),
            status_tx,
            driven: AtomicBool::new(false),
        })
    }

    /// Creates a SPAWNED pipeline: registry row, first event, first checkpoint.
    pub async fn create(
        engine: &Engine,
        objective: &str,
        req: &SpawnRequest,
        mode: String,
    ) -> Result<Arc<Self>> {
        let now = Utc::now();
        // the model that will answer: the mode's client's default unless one is asked for
        let model = req.model.clone().unwrap_or_else(|| {
            engine.llm(&mode).map_or_else(
                |_| engine.config.model.clone(),
                |llm| llm.default_model().to_owned(),
            )
        });
        let record = PipelineRecord {
            id: PipelineId::generate(),
            objective: objective.to_owned(),
            status: PipelineStatus::Spawned,
            history: vec![(PipelineStatus::Spawned, now)],
            auto_continue: req.auto_continue.unwrap_or(engine.config.auto_orchestrate),
            mode,
            model,
            timeout_secs: req
                .timeout
                .unwrap_or(engine.config.orchestration_timeout)
                .as_secs()
                .max(1),
            created_at: now,
            updated_at: now,
            orchestration_started_at: None,
            report: None,
            agents: Vec::new(),
            gamma: None,
            usage: UsageTotals::default(),
            results: None,
            failure: None,
            last_seq: 0,
        };
        engine.ownership.claim_new(&record.id).await?;
        let live = Self::build(engine, record, 0);
        {
            let mut rec = live.record.lock().await;
            let event = EventKind::StatusChanged {
                pipeline_id: rec.id.clone(),
                status: PipelineStatus::Spawned,
                previous: None,
                reason: None,
            };
            // not retried: a spawn the storage refuses fails at once (503), nothing is lost
            live.commit_state(engine, &mut rec, Some(event), false)
                .await?;
        }
        // acknowledged: from now on its writes wait out storage failures
        live.shared.emitter.retry_writes(engine.write_retry());
        Ok(live)
    }

    /// Rebuilds a live pipeline from its registry record (resume). Its writes are retried once
    /// a driver runs it ([`start`]); the resume's own writes fail at once, so a resume at
    /// start-up never waits for a full disk.
    pub fn restore(engine: &Engine, record: PipelineRecord, last_seq: u64) -> Arc<Self> {
        Self::build(engine, record, last_seq)
    }

    pub fn is_driven(&self) -> bool {
        self.driven.load(Ordering::Acquire)
    }

    pub fn status_rx(&self) -> watch::Receiver<PipelineStatus> {
        self.status_tx.subscribe()
    }

    /// The record with the live agent/usage state merged in.
    pub async fn snapshot_record(&self) -> PipelineRecord {
        let mut rec = self.record.lock().await.clone();
        self.sync_runtime(&mut rec);
        rec
    }

    /// The record with the live agent/usage state merged in, unless a state change is being
    /// written right now (it holds the record, and may be waiting for a backend).
    pub fn try_snapshot_record(&self) -> Option<PipelineRecord> {
        let mut rec = self.record.try_lock().ok()?.clone();
        self.sync_runtime(&mut rec);
        Some(rec)
    }

    /// Merges the live agent/usage state into `rec` (e.g. the registry's committed copy).
    pub fn sync_runtime(&self, rec: &mut PipelineRecord) {
        rec.agents.clone_from(&self.shared.agents.lock());
        rec.usage = *self.shared.usage.lock();
        rec.last_seq = self.shared.emitter.last_seq();
    }

    pub async fn with_record<T>(&self, f: impl FnOnce(&mut PipelineRecord) -> T) -> T {
        f(&mut *self.record.lock().await)
    }

    pub async fn prepare_continue(&self, req: &ContinueRequest) -> Result<()> {
        let mut rec = self.record.lock().await;
        if rec.status != PipelineStatus::Report || self.stop.is_cancelled() {
            return Err(Error::InvalidTransition {
                from: rec.status,
                to: PipelineStatus::Orchestrating,
            });
        }
        if self
            .driven
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::Conflict("the pipeline is already continuing".into()));
        }
        if let Some(m) = &req.mode {
            rec.mode.clone_from(m);
        }
        if let Some(m) = &req.model {
            rec.model.clone_from(m);
        }
        if let Some(t) = req.timeout {
            rec.timeout_secs = t.as_secs().max(1);
        }
        Ok(())
    }

    /// Writes the events of a state change (an optional `status_changed`, then
    /// `checkpoint_created`), the checkpoint and the registry row, atomically when the ledger
    /// backend can (SQLite), else one after the other.
    async fn commit_state(
        &self,
        engine: &Engine,
        rec: &mut PipelineRecord,
        status_event: Option<EventKind>,
        is_final: bool,
    ) -> Result<()> {
        self.sync_runtime(rec);
        let id = rec.id.clone();
        let blackboard = match self.shared.emitter.write_retry() {
            _ if rec.status == PipelineStatus::Spawned => {
                crate::blackboard::BlackboardSnapshot::default()
            }
            // a driven pipeline waits for its blackboard as for its stores (one policy)
            Some(policy) => {
                policy
                    .run("blackboard snapshot", || engine.blackboard.snapshot(&id))
                    .await?
            }
            None => snapshot_retrying(engine, &id).await?,
        };
        let mut kinds = Vec::with_capacity(2);
        kinds.extend(status_event);
        kinds.push(EventKind::CheckpointCreated {
            pipeline_id: rec.id.clone(),
            status: rec.status,
            is_final,
        });
        let mut cp = Checkpoint {
            record: rec.clone(),
            blackboard,
            seq: 0,
            is_final,
            created_at: Utc::now(),
        };
        let stored = self
            .shared
            .emitter
            .emit_with_state(kinds, &mut cp, rec)
            .await?;
        if !stored {
            let (policy, cp, rec) = (self.shared.emitter.write_retry(), &cp, &*rec);
            write(policy, "checkpoint", || engine.checkpoints.save(cp)).await?;
            write(policy, "registry record", || engine.registry.upsert(rec)).await?;
        }
        Ok(())
    }

    /// A checkpoint in the current status (e.g. right after consensus).
    pub async fn checkpoint_now(&self, engine: &Engine) -> Result<()> {
        let mut rec = self.record.lock().await;
        self.commit_state(engine, &mut rec, None, false).await
    }

    /// Ends the pipeline in memory only (its stores are unreachable), so waiters return.
    pub async fn force_terminal(&self, status: PipelineStatus, reason: String) {
        let mut rec = self.record.lock().await;
        if !rec.status.is_terminal() {
            rec.status = status;
            rec.history.push((status, Utc::now()));
            rec.failure = Some(reason);
        }
        let st = rec.status;
        drop(rec);
        self.status_tx.send_replace(st);
    }

    /// Moves to `to` (validated by the state machine), persists, emits and checkpoints.
    pub async fn set_status(
        &self,
        engine: &Engine,
        to: PipelineStatus,
        reason: Option<String>,
    ) -> Result<()> {
        let mut guard = self.record.lock().await;
        let from = guard.status;
        from.transition(to)?;
        // work on a copy: if persisting fails, the pipeline is still in `from` (and the
        // driver's fallback to ORCHESTRATION_FAILED remains a legal transition)
        let mut rec = guard.clone();
        let now = Utc::now();
        rec.status = to;
        rec.history.push((to, now));
        rec.updated_at = now;
        if to == PipelineStatus::Orchestrating {
            rec.orchestration_started_at = Some(now);
        }
        if to.is_terminal() && to != PipelineStatus::Completed {
            rec.failure.clone_from(&reason);
        }
        let event = EventKind::StatusChanged {
            pipeline_id: rec.id.clone(),
            status: to,
            previous: Some(from),
            reason,
        };
        self.commit_state(engine, &mut rec, Some(event), to.is_terminal())
            .await?;
        *guard = rec;
        drop(guard);
        self.status_tx.send_replace(to);
        Ok(())
    }
}

/// Starts a driver task for `live` from `stage`.
pub(crate) fn start(engine: &Arc<Engine>, live: Arc<Live>, stage: Stage) {
    live.driven.store(true, Ordering::Release);
    // a driven pipeline waits out storage failures instead of dying (see `crate::durable`)
    live.shared.emitter.retry_writes(engine.write_retry());
    let e = engine.clone();
    let span = tracing::info_span!("pipeline", pipeline_id = %live.shared.id);
    engine.tasks.spawn(
        async move {
            let result = drive(&e, &live, stage).await;
            if let Err(Error::Fenced { .. }) = &result {
                // another node owns it now: write nothing more, let it go here
                tracing::warn!("lost the pipeline's lease to another node; dropping it here");
                live.driven.store(false, Ordering::Release);
                e.live.lock().remove(&live.shared.id);
                return;
            }
            if let Err(err) = &result
                && e.shutdown.is_cancelled()
            {
                // a write failed while the engine shuts down: what is not written is not lost,
                // the next engine resumes the pipeline from its last durable state
                tracing::warn!(error = %err, "pipeline suspended by shutdown with a change unwritten");
            } else if let Err(err) = result {
                tracing::error!(error = %err, "pipeline driver failed");
                let status = live.status_rx().borrow().to_owned();
                if !status.is_terminal() {
                    let reason = format!("orchestrator error: {err}");
                    if let Err(e2) =
                        finish(&e, &live, Outcome::OrchestrationFailed(reason.clone())).await
                    {
                        tracing::error!(error = %e2, "could not record ORCHESTRATION_FAILED");
                        // never leave waiters hanging: end it in memory at least
                        live.force_terminal(
                            PipelineStatus::OrchestrationFailed,
                            format!("{reason}; not persisted: {e2}"),
                        )
                        .await;
                    }
                }
            }
            live.driven.store(false, Ordering::Release);
            let terminal = live.status_rx().borrow().is_terminal();
            if terminal {
                e.live.lock().remove(&live.shared.id);
                e.ownership.release(&live.shared.id, true).await;
            } else if e.shutdown.is_cancelled() {
                e.ownership.release(&live.shared.id, false).await;
            }
        }
        .instrument(span),
    );
}

async fn drive(engine: &Arc<Engine>, live: &Arc<Live>, stage: Stage) -> Result<()> {
    match stage {
        Stage::Running => {
            if run_report_stage(engine, live).await? && live.auto_continue.load(Ordering::Acquire) {
                crate::orchestration::orchestrate(engine, live, false).await?;
            }
            Ok(())
        }
        Stage::Orchestrating => crate::orchestration::orchestrate(engine, live, false).await,
        Stage::ResumeOrchestrating => crate::orchestration::orchestrate(engine, live, true).await,
    }
}

/// Builds an agent context for `agent_id` in `live`.
pub(crate) async fn context(
    engine: &Engine,
    live: &Live,
    agent_id: AgentId,
    role: &str,
    cancel: CancellationToken,
    gamma: Option<crate::event::GammaReason>,
) -> Result<AgentContext> {
    let (mode, model) = live
        .with_record(|r| (r.mode.clone(), r.model.clone()))
        .await;
    let llm = engine.llm(&mode)?;
    Ok(AgentContext::new(ContextParts {
        agent_id,
        role: role.to_owned(),
        shared: live.shared.clone(),
        blackboard: engine.blackboard.clone(),
        bus: engine.bus.clone(),
        llm,
        model,
        config: engine.config.clone(),
        error_budget: Arc::new(CountingErrorBudget::new(engine.config.error_budget)),
        cancel,
        gamma_reason: gamma,
    }))
}

pub(crate) fn register_agent(live: &Live, agent_id: &str, role: &str) {
    let mut agents = live.shared.agents.lock();
    agents.retain(|a| a.agent_id != agent_id);
    agents.push(AgentRecord {
        agent_id: agent_id.to_owned(),
        role: role.to_owned(),
        state: AgentState::Running,
        tokens_used: 0,
        errors: 0,
        reason: None,
    });
}

/// RUNNING: the report. Returns `true` when the pipeline reached REPORT.
async fn run_report_stage(engine: &Arc<Engine>, live: &Arc<Live>) -> Result<bool> {
    let status = *live.status_rx().borrow();
    if engine.shutdown.is_cancelled() {
        return Ok(false);
    }
    if live.stop.is_cancelled() {
        finish(engine, live, Outcome::Stopped).await?;
        return Ok(false);
    }
    if status == PipelineStatus::Spawned {
        live.set_status(engine, PipelineStatus::Running, None)
            .await?;
    }
    let timeout = Duration::from_secs(live.with_record(|r| r.timeout_secs).await);
    let reporter = AgentId::new("REPORTER")?;
    register_agent(live, "REPORTER", "REPORTER");
    let ctx = match context(
        engine,
        live,
        reporter,
        "REPORTER",
        live.stop.child_token(),
        None,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            finish(engine, live, Outcome::OrchestrationError(e.to_string())).await?;
            return Ok(false);
        }
    };
    let ask = ctx.ask::<ReportDraft>(
        Purpose::Report,
        prompt::report(&live.shared.objective),
        |_| Ok(()),
    );
    let result = tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout(format!(
                "report not written within {}s",
                timeout.as_secs()
            )))
        });
    let (state, outcome) = match result {
        Ok(d) => {
            let report = Report {
                summary: d.summary,
                findings: d.findings,
                complexity: d.complexity,
                partial: false,
            };
            *live.shared.report.lock() = Some(Arc::new(report.clone()));
            live.with_record(|r| r.report = Some(report)).await;
            (AgentState::Done, None)
        }
        Err(Error::Cancelled) if engine.shutdown.is_cancelled() => {
            (AgentState::Cancelled, Some(Outcome::Suspended))
        }
        Err(Error::Cancelled) => (AgentState::Cancelled, Some(Outcome::Stopped)),
        Err(Error::Timeout(m)) => (AgentState::Cancelled, Some(Outcome::Timeout(m))),
        Err(Error::Unauthorized(m)) => (
            AgentState::Failed,
            Some(Outcome::OrchestrationError(format!(
                "LLM provider refused the credentials: {m}"
            ))),
        ),
        Err(e) if e.provider_outage().is_some() => (
            AgentState::Failed,
            Some(Outcome::Failed(e.provider_outage().unwrap_or_default())),
        ),
        Err(e @ Error::Revoked(_)) => (
            AgentState::Revoked,
            Some(Outcome::Failed(format!("REPORTER {e}"))),
        ),
        Err(e) => (
            AgentState::Failed,
            Some(Outcome::Failed(format!("report stage failed: {e}"))),
        ),
    };
    live.shared.update_agent("REPORTER", |a| {
        a.state = state;
        a.reason = outcome.as_ref().and_then(Outcome::reason);
    });
    if let Some(o) = outcome {
        if o == Outcome::Suspended {
            live.checkpoint_now(engine).await?;
        } else {
            finish(engine, live, o).await?;
        }
        return Ok(false);
    }
    live.set_status(engine, PipelineStatus::Report, None)
        .await?;
    if live.stop.is_cancelled() {
        finish(engine, live, Outcome::Stopped).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Stops a pipeline that no task drives (resting at REPORT).
pub(crate) async fn stop_resting(engine: &Arc<Engine>, live: &Arc<Live>) -> Result<()> {
    if live
        .driven
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Ok(()); // a driver is running and will see the stop token
    }
    let r = if live.status_rx().borrow().is_terminal() {
        Ok(())
    } else {
        finish(engine, live, Outcome::Stopped).await
    };
    live.driven.store(false, Ordering::Release);
    engine.live.lock().remove(&live.shared.id);
    if r.is_ok() {
        engine.ownership.release(&live.shared.id, true).await;
    }
    r
}

/// Ends a pipeline: results (or partial results and a partial report), the final status,
/// the final checkpoint; then frees its blackboard and bus log (they live on in the checkpoint
/// and the ledger).
pub(crate) async fn finish(engine: &Arc<Engine>, live: &Arc<Live>, outcome: Outcome) -> Result<()> {
    let id = live.shared.id.clone();
    let snapshot = snapshot_retrying(engine, &id).await.unwrap_or_default();
    let status = outcome.status();
    // degraded: a lone agent decided, i.e. the consensus was accepted with a single approval
    // (only possible at quorum 1, after its partner was lost). The quorum *now* says nothing:
    // it drops to 1 whenever the agents finish.
    let degraded = snapshot.consensus.as_ref().is_some_and(|c| c.votes < 2);
    let report = live.shared.report.lock().clone();
    let results = crate::results::build(&snapshot, status, degraded, report.as_deref());
    let orchestrated = live
        .with_record(|r| {
            r.results = Some(results.clone());
            r.orchestration_started_at.is_some()
        })
        .await;
    if orchestrated {
        live.shared
            .emitter
            .emit(EventKind::OrchestrationComplete {
                pipeline_id: id.clone(),
                status,
                results,
            })
            .await?;
    }
    live.set_status(engine, status, outcome.reason()).await?;
    // the final checkpoint holds the blackboard; free the working copies
    if let Err(e) = engine.blackboard.clear(&id).await {
        tracing::warn!(error = %e, "could not clear the blackboard of a finished pipeline");
    }
    if let Err(e) = engine.bus.clear(&id).await {
        tracing::warn!(error = %e, "could not clear the bus log of a finished pipeline");
    }
    Ok(())
}

/// The blackboard, retrying transient backend failures for a while (about 12 s).
async fn snapshot_retrying(
    engine: &Engine,
    id: &PipelineId,
) -> Result<crate::blackboard::BlackboardSnapshot> {
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match engine.blackboard.snapshot(id).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_retryable() && tries < 8 => {
                tries += 1;
                tracing::warn!(error = %e, "blackboard unavailable for a checkpoint; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(e) => return Err(e),
        }
    }
}
