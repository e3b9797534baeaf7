//! A live pipeline's state changes: creating it, restoring it for a resume, moving it from
//! status to status with a checkpoint each time (one atomic commit with its events), and building its agents' contexts. [`Outcome`] says how a pipeline ends.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::parts::{Engine, Live};
use super::requests::{ContinueRequest, SpawnRequest};
use super::state::PipelineState;
use crate::agent::{AgentContext, ContextParts};
use crate::blackboard::BlackboardSnapshot;
use crate::circuit_breaker::CircuitBreaker;
use crate::emitter::EventEmitter;
use crate::error::{Error, Result};
use crate::error_budget::CountingErrorBudget;
use crate::event::{EventKind, GammaReason};
use crate::ids::{AgentId, PipelineId};
use crate::retry::RetryPolicy;
use crate::state_machine::PipelineStatus;
use crate::store::{Checkpoint, PipelineRecord, UsageTotals};
use crate::token_budget::PipelineBudget;

/// What a status change commits besides the status (see [`Live::set_status_with`]).
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// Events written before `status_changed`, in the same commit (a decision and what it
    /// leads to are never half-written).
    pub leading: Vec<EventKind>,
    /// The blackboard the checkpoint holds instead of the live one (a revision's fresh board,
    /// put in place after the commit).
    pub board: Option<BlackboardSnapshot>,
    /// The record's revision count after the change.
    pub revisions: Option<u32>,
    /// The driver lets the pipeline go as the change becomes visible (a rest that others may
    /// claim: a decision arriving the moment after finds it free).
    pub release_driver: bool,
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

impl Live {
    pub(super) fn build(engine: &Engine, record: PipelineRecord, last_seq: u64) -> Arc<Self> {
        let emitter = EventEmitter::new(last_seq, engine.ledger.clone(), engine.hub.clone());
        let state = PipelineState::new(
            record.id.clone(),
            Arc::from(record.objective.as_str()),
            emitter,
            match &engine.cost_ledger {
                Some(l) => PipelineBudget::with_cost_ledger(engine.config.budgets, l.clone()),
                None => PipelineBudget::new(engine.config.budgets),
            },
            Arc::new(CircuitBreaker::new(engine.config.breaker)),
        )
        .with_report(record.report.clone())
        .with_agents(record.agents.clone(), record.usage);
        let (status_tx, _) = watch::channel(record.status);
        Arc::new(Self {
            state: Arc::new(state),
            auto_continue: AtomicBool::new(record.auto_continue),
            record: tokio::sync::Mutex::new(record),
            stop: engine.shutdown.child_token(),
            status_tx,
            driven: AtomicBool::new(false),
            board_epoch: std::sync::atomic::AtomicU64::new(engine.coordination.epoch()),
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
            require_approval: req
                .require_approval
                .unwrap_or(engine.config.approval.required),
            revisions: 0,
            roles: crate::role_settings::overlay_map(&engine.role_settings, &req.roles),
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
            live.commit_state(engine, &mut rec, vec![event], None, false)
                .await?;
        }
        // acknowledged: from now on its writes wait out storage failures
        live.state.emitter().retry_writes(engine.write_retry());
        Ok(live)
    }

    /// A fork's first commit: `forked_from`, its `status_changed` into the status it starts
    /// in (no previous status), the checkpoint of its rebuilt blackboard and its registry row,
    /// all or nothing. Not retried: a fork the storage refuses fails at once.
    pub async fn commit_fork(&self, engine: &Engine, forked_from: EventKind) -> Result<()> {
        let mut rec = self.record.lock().await;
        let reason = match &forked_from {
            EventKind::ForkedFrom { source, seq, .. } => {
                Some(format!("forked from pipeline {source} at seq {seq}"))
            }
            _ => None,
        };
        let status = EventKind::StatusChanged {
            pipeline_id: rec.id.clone(),
            status: rec.status,
            previous: None,
            reason,
        };
        self.commit_state(engine, &mut rec, vec![forked_from, status], None, false)
            .await
    }

    /// Rebuilds a live pipeline from its registry record (resume). Its writes are retried once
    /// a driver runs it (`driver::start`); the resume's own writes fail at once, so a resume at
    /// start-up never waits for a full disk.
    pub fn restore(engine: &Engine, record: PipelineRecord, last_seq: u64) -> Arc<Self> {
        Self::build(engine, record, last_seq)
    }

    pub async fn prepare_continue(&self, req: &ContinueRequest) -> Result<()> {
        let mut rec = self.record.lock().await;
        if rec.status != PipelineStatus::Report || self.stop.is_cancelled() {
            return Err(Error::InvalidTransition {
                from: rec.status,
                to: PipelineStatus::Orchestrating,
            });
        }
        if !self.claim_driver() {
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

    /// Commits a state change (`events` — the status change's, when there is one — then
    /// `checkpoint_created`, the checkpoint and the registry row) as one
    /// [`crate::store::StatusChange`] of the engine's [`crate::store::StateStore`]: all or
    /// nothing. The checkpoint holds `board` when given, else the live blackboard.
    async fn commit_state(
        &self,
        engine: &Engine,
        rec: &mut PipelineRecord,
        events: Vec<EventKind>,
        board: Option<BlackboardSnapshot>,
        is_final: bool,
    ) -> Result<()> {
        self.sync_runtime(rec);
        let id = rec.id.clone();
        let blackboard = match (board, self.state.emitter().write_retry()) {
            (Some(board), _) => board,
            _ if rec.status == PipelineStatus::Spawned => BlackboardSnapshot::default(),
            // a driven pipeline waits for its blackboard as for its stores (one policy)
            (None, Some(policy)) => {
                policy
                    .run("blackboard snapshot", || engine.blackboard.snapshot(&id))
                    .await?
            }
            (None, None) => snapshot_retrying(engine, &id).await?,
        };
        let mut kinds = events;
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
        self.state
            .emitter()
            .emit_with_state(&*engine.store, kinds, &mut cp, rec)
            .await
    }

    /// A checkpoint in the current status (e.g. right after consensus).
    pub async fn checkpoint_now(&self, engine: &Engine) -> Result<()> {
        let mut rec = self.record.lock().await;
        self.commit_state(engine, &mut rec, Vec::new(), None, false)
            .await
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
        self.set_status_with(engine, to, reason, Change::default())
            .await
    }

    /// [`set_status`](Self::set_status) with what else the same commit carries ([`Change`]).
    pub async fn set_status_with(
        &self,
        engine: &Engine,
        to: PipelineStatus,
        reason: Option<String>,
        change: Change,
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
        if to == PipelineStatus::Orchestrating && rec.orchestration_started_at.is_none() {
            rec.orchestration_started_at = Some(now);
        }
        if to.is_terminal() && to != PipelineStatus::Completed {
            rec.failure.clone_from(&reason);
        }
        if let Some(n) = change.revisions {
            rec.revisions = n;
        }
        let mut events = change.leading;
        events.push(EventKind::StatusChanged {
            pipeline_id: rec.id.clone(),
            status: to,
            previous: Some(from),
            reason,
        });
        self.commit_state(engine, &mut rec, events, change.board, to.is_terminal())
            .await?;
        *guard = rec;
        if change.release_driver {
            // under the record's lock: whoever sees the new status finds the pipeline free
            self.set_driven(false);
        }
        drop(guard);
        self.status_tx.send_replace(to);
        Ok(())
    }

    /// Builds an agent context for `agent_id` in this pipeline, whose blackboard was built in
    /// coordination epoch `epoch` (see `crate::coordination::Guard`).
    pub async fn agent_context(
        &self,
        engine: &Engine,
        agent_id: AgentId,
        role: &str,
        cancel: CancellationToken,
        (gamma, epoch): (Option<GammaReason>, u64),
    ) -> Result<AgentContext> {
        let (mode, model, settings) = self
            .with_record(|r| {
                let settings = r.roles.get(role).cloned().unwrap_or_default();
                let model = settings.model.clone().unwrap_or_else(|| r.model.clone());
                (r.mode.clone(), model, settings)
            })
            .await;
        let llm = engine.llm(&mode)?;
        Ok(AgentContext::new(ContextParts {
            agent_id,
            role: role.to_owned(),
            shared: self.state.clone(),
            blackboard: engine.blackboard.clone(),
            bus: engine.bus.clone(),
            llm,
            stack: engine.llm_stack.clone(),
            model,
            settings,
            config: engine.config.clone(),
            error_budget: Arc::new(CountingErrorBudget::new(engine.config.error_budget)),
            cancel,
            gamma_reason: gamma,
            guard: Some(crate::coordination::Guard {
                watch: engine.coordination.clone(),
                epoch,
            }),
        }))
    }
}

/// The blackboard, retrying transient backend failures for a while
/// ([`RetryPolicy::checkpoint_read`]: about 12 s).
pub(super) async fn snapshot_retrying(
    engine: &Engine,
    id: &PipelineId,
) -> Result<BlackboardSnapshot> {
    let mut schedule = RetryPolicy::checkpoint_read().schedule("");
    loop {
        match engine.blackboard.snapshot(id).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_retryable() => {
                let Some(delay) = schedule.next_delay(&e) else {
                    return Err(e);
                };
                tracing::warn!(error = %e, "blackboard unavailable for a checkpoint; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}
