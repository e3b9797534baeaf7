//! [`Governance::fork`]: a new pipeline that starts from the state another pipeline (the
//! *source*) had at one of its events, and runs on from there. The source is only read.
//!
//! What the fork is made of:
//! - the source's ledger up to the fork point `seq` (inclusive): committed events never
//!   change, so a fork of a pipeline that is still running reads a stable prefix;
//! - the source's latest checkpoint, when it is at or before `seq` (its record and blackboard).
//!   The checkpoint stores keep only the *latest* checkpoint of a pipeline: when it is after
//!   `seq` (the usual case for a pipeline that went on), the state is rebuilt from the ledger
//!   prefix alone: the blackboard from its proposals and votes (approval round by approval
//!   round, as `rebuild.rs` does after Redis lost data), the bus from its agent messages, and
//!   the record (objective, mode, model, roles, timeout, approval) from the source's record. The
//!   report is not in the ledger; it is written once (RUNNING → REPORT) and never changes, so
//!   the source's record holds the report of any point at or after REPORT. Solutions, handoffs
//!   and claims are only in checkpoints: without one at or before `seq` the fork's agents
//!   start afresh on the replayed proposals and votes and write their solution again;
//! - its own ledger, which starts with `forked_from {source, seq, status}` (the link: the
//!   source's events are not copied) and the `status_changed` into the status of the fork
//!   point, committed with the fork's first checkpoint and registry row. A fork at an
//!   ORCHESTRATING point then records the replayed proposals and votes as its own events, so
//!   its ledger is a complete account of its blackboard (and a rebuild after Redis loses data
//!   works on the fork like on any pipeline).
//!
//! Where the fork goes on: a point in SPAWNED or RUNNING writes the report again (an
//! `objective` override is only allowed there, before the report exists); REPORT rests there
//! or continues as the source's `auto_continue` says; ORCHESTRATING resumes orchestration on
//! the replayed blackboard. A point in AWAITING_APPROVAL or a terminal status is not
//! forkable (409: pick an earlier seq, e.g. the ORCHESTRATING before it).

use std::time::Duration;

use chrono::Utc;

use super::driver::{self, Stage};
use super::facade::Governance;
use super::parts::Live;
use super::requests::{check_objective, validate_timeout};
use super::{rebuild, resume};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};
use crate::ids::{PipelineId, ProposalId};
use crate::role_settings::RoleSettingsMap;
use crate::state_machine::PipelineStatus;
use crate::store::{PipelineRecord, UsageTotals};

/// Where in the source's history a fork starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkPoint {
    /// After the source's event with this `seq` (1 or more, at most its last).
    Seq(u64),
    /// After the event where the source first entered this status (its first
    /// `status_changed` to it; a revision round's later ORCHESTRATING is reached with `Seq`).
    Status(PipelineStatus),
}

/// What a fork changes from the source's settings; `None` / empty keeps the source's.
#[derive(Debug, Clone, Default)]
pub struct ForkOverrides {
    /// A new objective: only at a point before the report is written (SPAWNED, RUNNING).
    pub objective: Option<String>,
    /// The orchestration timeout (1 second to 24 hours).
    pub timeout: Option<Duration>,
    /// Per-role settings over the source's, field by field (validated as a spawn's).
    pub roles: RoleSettingsMap,
}

/// Asks [`Governance::fork`] for a fork.
#[derive(Debug, Clone)]
pub struct ForkRequest {
    /// The fork point.
    pub at: ForkPoint,
    /// What differs from the source.
    pub overrides: ForkOverrides,
}

/// A fork that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forked {
    /// The new pipeline.
    pub pipeline_id: PipelineId,
    /// The pipeline it was forked from.
    pub source: PipelineId,
    /// The source's event it starts after (an `at_status` resolved to its seq).
    pub seq: u64,
    /// The status it starts in.
    pub status: PipelineStatus,
}

impl Governance {
    /// Forks `source` at `req.at`: a new pipeline starts from the state the source had there
    /// (see the module docs of `engine/fork.rs`) and runs on. The source is not changed.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for `Seq(0)`, an invalid override (`objective` after the
    /// report, a timeout out of range, unknown roles or bad role settings);
    /// [`Error::NotFound`] for an unknown source, a seq past its ledger's end or a status it
    /// never entered; [`Error::Conflict`] when the state at the point is not forkable
    /// (terminal, AWAITING_APPROVAL) or its LLM mode is not available here; backend errors
    /// (nothing is written when the fork's first commit fails; when recording the replayed
    /// blackboard fails after it, the fork is ended ORCHESTRATION_FAILED and the error returned).
    pub async fn fork(&self, source: &PipelineId, req: ForkRequest) -> Result<Forked> {
        let engine = &self.engine;
        if engine.shutdown.is_cancelled() {
            return Err(Error::backend(
                "engine",
                "shutting down: not accepting new pipelines",
                true,
            ));
        }
        let ov = req.overrides;
        if let Some(t) = ov.timeout {
            validate_timeout(t)?;
        }
        crate::role_settings::validate_map(
            &ov.roles,
            &engine.known_roles(),
            engine.config.budgets.max_completion_tokens,
        )?;
        let objective = match &ov.objective {
            Some(o) => Some(check_objective(o, engine.max_objective_len)?),
            None => None,
        };
        if engine.registry.get(source).await?.is_none() {
            return Err(Error::not_found("pipeline", source));
        }
        // the committed prefix first: the record and checkpoint read after it are at least as
        // new (a status change commits its event, record and checkpoint together)
        let last = engine.ledger.last_seq(source).await?;
        let (seq, events) = prefix(engine, source, req.at, last).await?;
        let status = status_at(&events)?;
        if status.is_terminal() || status == PipelineStatus::AwaitingApproval {
            return Err(Error::Conflict(format!(
                "pipeline {source} is {status} at seq {seq}: not forkable, pick an earlier seq"
            )));
        }
        let before_report = matches!(status, PipelineStatus::Spawned | PipelineStatus::Running);
        if objective.is_some() && !before_report {
            return Err(Error::InvalidInput(format!(
                "objective can only be overridden at a point before the report is written \
                 (SPAWNED or RUNNING); pipeline {source} is {status} at seq {seq}"
            )));
        }
        let src = engine
            .registry
            .get(source)
            .await?
            .ok_or_else(|| Error::not_found("pipeline", source))?;
        let checkpoint = engine
            .checkpoints
            .latest(source)
            .await?
            .filter(|c| c.seq <= seq);
        let base = checkpoint.as_ref().map_or(&src, |c| &c.record);
        if engine.llm(&base.mode).is_err() {
            return Err(Error::Conflict(format!(
                "pipeline {source}'s LLM mode {:?} is not available here",
                base.mode
            )));
        }
        let mut record = fork_record(base, status, &events);
        if let Some(o) = objective {
            record.objective = o;
        }
        if let Some(t) = ov.timeout {
            record.timeout_secs = t.as_secs().max(1);
        }
        record.roles = crate::role_settings::overlay_map(&record.roles, &ov.roles);
        if !before_report && record.report.is_none() {
            record.report.clone_from(&src.report);
        }
        let id = record.id.clone();
        engine.ownership.claim_new(&id).await?;
        let live = Live::restore(engine, record, 0);
        let orchestrating = status == PipelineStatus::Orchestrating;
        if orchestrating {
            let (board, after) = checkpoint
                .as_ref()
                .map_or_else(Default::default, |c| (c.blackboard.clone(), c.seq));
            engine.blackboard.restore(&id, board).await?;
            let rejected: Vec<ProposalId> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::ApprovalDecided {
                        approve: false,
                        proposal_id: Some(p),
                        ..
                    } => Some(p.clone()),
                    _ => None,
                })
                .collect();
            let since: Vec<Event> = events.iter().filter(|e| e.seq > after).cloned().collect();
            // the fork decides with the approvers its own settings make
            let approvers = live.state.required().handle().clone();
            rebuild::replay_rounds(engine, &id, &since, &approvers, |p| rejected.contains(p))
                .await?;
            rebuild::republish(engine, &id, &events).await?;
        }
        let link = EventKind::ForkedFrom {
            pipeline_id: id.clone(),
            source: source.clone(),
            seq,
            status,
        };
        if let Err(e) = live.commit_fork(engine, link).await {
            let _ = engine.blackboard.clear(&id).await;
            let _ = engine.bus.clear(&id).await;
            engine.ownership.release(&id, false).await;
            return Err(e);
        }
        engine.live.lock().insert(id.clone(), live.clone());
        if orchestrating {
            // what the replayed blackboard holds becomes the fork's own record of events
            if let Err(e) = resume::sync_flags(engine, &live).await {
                // fail closed: a fork whose ledger does not account for its blackboard does
                // not run on; it ends ORCHESTRATION_FAILED saying why
                let reason = format!("fork: could not record the state it was given: {e}");
                if let Err(e2) = driver::give_up(engine, &live, reason).await {
                    tracing::error!(pipeline_id = %id, error = %e2, "fork: could not end it");
                }
                return Err(e);
            }
            for review in resume::reviews_of(&events) {
                live.state.add_review(review);
            }
        }
        tracing::info!(pipeline_id = %id, %source, seq, %status, "pipeline forked");
        match status {
            PipelineStatus::Spawned | PipelineStatus::Running => {
                driver::start(engine, live, Stage::Running);
            }
            PipelineStatus::Report if live.auto_continue() => {
                driver::start(engine, live, Stage::Orchestrating);
            }
            PipelineStatus::Report => {}
            _ => driver::start(engine, live, Stage::ResumeOrchestrating),
        }
        Ok(Forked {
            pipeline_id: id,
            source: source.clone(),
            seq,
            status,
        })
    }
}

/// The fork point's seq and the source's events up to it (inclusive).
async fn prefix(
    engine: &super::parts::Engine,
    source: &PipelineId,
    at: ForkPoint,
    last: u64,
) -> Result<(u64, Vec<Event>)> {
    let not_found = |what: String| Error::NotFound {
        what: "fork point",
        id: what,
    };
    let limit = match at {
        ForkPoint::Seq(0) => {
            return Err(Error::InvalidInput(
                "at_seq must be at least 1 (the first event)".into(),
            ));
        }
        ForkPoint::Seq(n) if n > last => {
            return Err(not_found(format!(
                "seq {n} of pipeline {source} (its ledger ends at seq {last})"
            )));
        }
        ForkPoint::Seq(n) => n,
        ForkPoint::Status(_) => last,
    };
    let mut events = Vec::new();
    let mut after = 0;
    while after < limit {
        let page = engine.ledger.read(source, after, 1000).await?;
        let Some(end) = page.last().map(|e| e.seq) else {
            break;
        };
        events.extend(page.into_iter().filter(|e| e.seq <= limit));
        after = end;
    }
    let seq = match at {
        ForkPoint::Seq(n) => n,
        ForkPoint::Status(want) => events
            .iter()
            .find(|e| matches!(e.kind, EventKind::StatusChanged { status, .. } if status == want))
            .map(|e| e.seq)
            .ok_or_else(|| not_found(format!("status {want} in pipeline {source}'s ledger")))?,
    };
    events.retain(|e| e.seq <= seq);
    Ok((seq, events))
}

/// The status the source was in after the last of `events`.
fn status_at(events: &[Event]) -> Result<PipelineStatus> {
    events
        .iter()
        .rev()
        .find_map(|e| match e.kind {
            EventKind::StatusChanged { status, .. } => Some(status),
            _ => None,
        })
        .ok_or_else(|| Error::Internal("the source's ledger has no status_changed".into()))
}

/// The fork's record: the source's settings (`base`: its checkpoint's record at or before the
/// fork point, else its current record), a new id, the status of the fork point, its own
/// history, usage and results from here on.
fn fork_record(base: &PipelineRecord, status: PipelineStatus, events: &[Event]) -> PipelineRecord {
    let now = Utc::now();
    let reported = !matches!(status, PipelineStatus::Spawned | PipelineStatus::Running);
    let revisions = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ApprovalDecided { approve: false, .. }))
        .count();
    PipelineRecord {
        id: PipelineId::generate(),
        objective: base.objective.clone(),
        status,
        history: vec![(status, now)],
        auto_continue: base.auto_continue,
        mode: base.mode.clone(),
        model: base.model.clone(),
        timeout_secs: base.timeout_secs,
        created_at: now,
        updated_at: now,
        orchestration_started_at: (status == PipelineStatus::Orchestrating).then_some(now),
        report: if reported { base.report.clone() } else { None },
        agents: Vec::new(),
        gamma: None,
        usage: UsageTotals::default(),
        results: None,
        failure: None,
        last_seq: 0,
        require_approval: base.require_approval,
        revisions: u32::try_from(revisions).unwrap_or(u32::MAX),
        roles: base.roles.clone(),
    }
}
