//! The driver: one task per driven pipeline runs its stages in order — RUNNING
//! ([`report`](super::report)), then ORCHESTRATING ([`supervisor`](super::supervisor)) — and
//! ends it ([`finish`]: results, final status, final checkpoint) with the [`Outcome`] a stage
//! returns. Resumed pipelines ([`resume`](super::resume)) are driven on from their status.
//! A pipeline that needs a human's approval rests at AWAITING_APPROVAL instead of finishing
//! ([`approval`]); [`decide`] carries a decision out (complete, revise, fail) and
//! [`watch_deadline`] ends an unanswered wait TIMEOUT.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tracing::Instrument;

use super::approval::{self, Claim};
use super::live::{Change, Outcome, snapshot_retrying};
use super::parts::{Engine, Live};
use super::requests::ApprovalDecision;
use super::resume::{self, Rebuilt};
use super::{report, supervisor};
use crate::blackboard::BlackboardSnapshot;
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::ids::PipelineId;
use crate::state_machine::PipelineStatus;
use crate::store::{PipelineFilter, PipelineRecord};

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

/// Starts a driver task for `live` from `stage`.
pub(super) fn start(engine: &Arc<Engine>, live: Arc<Live>, stage: Stage) {
    live.set_driven(true);
    super::rebuild::watch(engine);
    // a driven pipeline waits out storage failures instead of dying (see `crate::durable`)
    live.state.emitter().retry_writes(engine.write_retry());
    let e = engine.clone();
    let span = tracing::info_span!("pipeline", pipeline_id = %live.id());
    engine.tasks.spawn(
        async move {
            let result = drive(&e, &live, stage).await;
            if let Ok(true) = result {
                // resting at AWAITING_APPROVAL: the claim went with the status change, a
                // decision may hold the pipeline already
                watch_deadline(&e, live);
                return;
            }
            if let Err(Error::Fenced { .. }) = &result {
                // another node owns it now: write nothing more, let it go here
                tracing::warn!("lost the pipeline's lease to another node; dropping it here");
                live.set_driven(false);
                e.live.lock().remove(live.id());
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
            live.set_driven(false);
            let terminal = live.status_rx().borrow().is_terminal();
            if terminal {
                e.live.lock().remove(live.id());
                e.ownership.release(live.id(), true).await;
            } else if e.shutdown.is_cancelled() {
                e.ownership.release(live.id(), false).await;
            }
        }
        .instrument(span),
    );
}

/// Drives a pipeline through `stage` to its end or a rest; `true` when it rests at
/// AWAITING_APPROVAL (the driver's claim was given up as the status changed).
async fn drive(engine: &Engine, live: &Live, stage: Stage) -> Result<bool> {
    let end = match stage {
        Stage::Running => match report::run(engine, live).await? {
            None if live.auto_continue() => supervisor::orchestrate(engine, live, false).await?,
            end => end,
        },
        Stage::Orchestrating => supervisor::orchestrate(engine, live, false).await?,
        Stage::ResumeOrchestrating => supervisor::orchestrate(engine, live, true).await?,
    };
    match end {
        None => Ok(false),
        // the engine is shutting down: keep the status, the next engine resumes it
        Some(Outcome::Suspended) => live.checkpoint_now(engine).await.map(|()| false),
        Some(Outcome::Completed) if live.with_record(|r| r.require_approval).await => {
            approval::request(engine, live).await.map(|()| true)
        }
        Some(outcome) => finish(engine, live, outcome).await.map(|()| false),
    }
}

/// Carries out a human's decision on a pipeline waiting at AWAITING_APPROVAL: approve →
/// COMPLETED; reject → a revision round (ORCHESTRATING on a fresh blackboard, the feedback
/// for ALPHA), or FAILED once `GOVERNANCE_MAX_REVISIONS` rounds were rejected. The
/// `approval_decided` event is in the same commit as the status it leads to. Returns that
/// status.
///
/// # Errors
/// [`Error::Conflict`] when the pipeline is not waiting or another decision holds it;
/// backend errors (nothing was written: it still waits).
pub(super) async fn decide(
    engine: &Arc<Engine>,
    live: Arc<Live>,
    decision: ApprovalDecision,
    decision_id: String,
) -> Result<crate::PipelineStatus> {
    use crate::state_machine::PipelineStatus as S;
    let claim = approval::claim(&live, decision.revision).await?;
    let revision = live.with_record(|r| r.revisions).await;
    let max = engine.config.approval.max_revisions;
    let snap = engine.blackboard.snapshot(live.id()).await?;
    let proposal_id = snap.consensus.as_ref().map(|c| c.proposal_id.clone());
    let by = decision.by.trim().to_owned();
    let feedback = decision
        .feedback
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    let event = EventKind::ApprovalDecided {
        pipeline_id: live.id().clone(),
        revision,
        proposal_id: proposal_id.clone(),
        approve: decision.approve,
        by: by.clone(),
        decided_at: Utc::now(),
        feedback: feedback.clone(),
        decision_id,
    };
    if decision.approve {
        end_waiting(engine, &live, claim, Outcome::Completed, vec![event]).await?;
        return Ok(S::Completed);
    }
    if revision >= max {
        let reason = format!(
            "the reviewer {by:?} rejected the outcome after {revision} revision round(s), the \
             most GOVERNANCE_MAX_REVISIONS ({max}) allows{}",
            feedback
                .as_deref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
        end_waiting(engine, &live, claim, Outcome::Failed(reason), vec![event]).await?;
        return Ok(S::Failed);
    }
    let change = Change {
        leading: vec![event],
        board: Some(approval::revision_board(&snap)),
        revisions: Some(revision + 1),
        release_driver: false,
    };
    let reason = format!("revision {} asked for by {by}", revision + 1);
    live.set_status_with(engine, S::Orchestrating, Some(reason), change)
        .await?;
    live.state
        .add_review(approval::review_of(&snap, proposal_id, &by, feedback));
    // the driver takes the claim over; the round starts by putting the fresh board in place
    claim.keep();
    start(engine, live, Stage::ResumeOrchestrating);
    Ok(S::Orchestrating)
}

/// Ends a waiting pipeline that `claim` holds with `outcome` (`leading` events in the same
/// commit as its final status), then lets it go.
async fn end_waiting(
    engine: &Engine,
    live: &Live,
    claim: Claim<'_>,
    outcome: Outcome,
    leading: Vec<EventKind>,
) -> Result<()> {
    finish_with(engine, live, outcome, leading).await?;
    drop(claim);
    engine.live.lock().remove(live.id());
    engine.ownership.release(live.id(), true).await;
    Ok(())
}

/// Ends the pipeline's wait for approval TIMEOUT at its deadline (`GOVERNANCE_APPROVAL_TIMEOUT`
/// after it began, the same after a restart), unless it is decided, stopped or suspended first.
pub(super) fn watch_deadline(engine: &Arc<Engine>, live: Arc<Live>) {
    let Some(timeout) = engine.config.approval.timeout else {
        return;
    };
    let e = engine.clone();
    let span = tracing::info_span!("pipeline", pipeline_id = %live.id());
    engine.tasks.spawn(
        async move {
            let (since, revision) = live
                .with_record(|r| (approval::waiting_since(r), r.revisions))
                .await;
            let Some(deadline) = since.and_then(|s| approval::deadline(s, Some(timeout))) else {
                return;
            };
            let mut rx = live.status_rx();
            tokio::select! {
                () = tokio::time::sleep(approval::remaining(deadline, Utc::now())) => {}
                _ = rx.wait_for(|s| *s != crate::PipelineStatus::AwaitingApproval) => return,
                // a stop, or the engine's shutdown (the next engine keeps counting)
                () = live.stop.cancelled() => return,
            }
            let Ok(claim) = approval::claim(&live, Some(revision)).await else {
                return; // decided (or being decided) meanwhile
            };
            let reason = format!(
                "no approval decision within {}s (GOVERNANCE_APPROVAL_TIMEOUT)",
                timeout.as_secs()
            );
            if let Err(err) = end_waiting(&e, &live, claim, Outcome::Timeout(reason), Vec::new()).await {
                tracing::error!(error = %err, "could not end the wait for approval at its deadline");
            }
        }
        .instrument(span),
    );
}

/// Stops a pipeline that no task drives (resting at REPORT).
pub(super) async fn stop_resting(engine: &Engine, live: &Live) -> Result<()> {
    if !live.claim_driver() {
        return Ok(()); // a driver is running and will see the stop token
    }
    let r = if live.status_rx().borrow().is_terminal() {
        Ok(())
    } else {
        finish(engine, live, Outcome::Stopped).await
    };
    live.set_driven(false);
    engine.live.lock().remove(live.id());
    if r.is_ok() {
        engine.ownership.release(live.id(), true).await;
    }
    r
}

/// Ends a pipeline: results (or partial results and a partial report), the final status,
/// the final checkpoint; then frees its blackboard and bus log (they live on in the checkpoint
/// and the ledger).
async fn finish(engine: &Engine, live: &Live, outcome: Outcome) -> Result<()> {
    finish_with(engine, live, outcome, Vec::new()).await
}

/// [`finish`] with `leading` events (a decision) in the commit of the final status, before
/// `orchestration_complete`: the end and what led to it are written together or not at all.
async fn finish_with(
    engine: &Engine,
    live: &Live,
    outcome: Outcome,
    mut leading: Vec<EventKind>,
) -> Result<()> {
    let id = live.id().clone();
    let snapshot = final_board(engine, live).await;
    // no final status contradicts the record: a pipeline whose blackboard holds a consensus
    // and a solution built from it did reach its goal, whatever went wrong afterwards
    let outcome = match outcome {
        Outcome::Failed(reason) | Outcome::OrchestrationFailed(reason)
            if snapshot.consensus.is_some()
                && !snapshot.solutions.is_empty()
                && *live.status_rx().borrow() == PipelineStatus::Orchestrating =>
        {
            tracing::warn!(%reason, "the pipeline has its consensus and solution; it ends COMPLETED");
            Outcome::Completed
        }
        other => other,
    };
    let status = outcome.status();
    // degraded: a lone agent decided, i.e. the consensus was accepted with a single approval
    // (only possible at quorum 1, after its partner was lost). The quorum *now* says nothing:
    // it drops to 1 whenever the agents finish.
    let degraded = snapshot.consensus.as_ref().is_some_and(|c| c.votes < 2);
    let report = live.state.report();
    let complexity = report.as_deref().map_or(0.0, |r| r.complexity);
    let results = crate::results::build(&snapshot, status, degraded, complexity);
    let orchestrated = live
        .with_record(|r| {
            r.results = Some(results.clone());
            r.orchestration_started_at.is_some()
        })
        .await;
    if orchestrated {
        leading.push(EventKind::OrchestrationComplete {
            pipeline_id: id.clone(),
            status,
            results,
        });
    }
    let change = Change {
        leading,
        ..Change::default()
    };
    live.set_status_with(engine, status, outcome.reason(), change)
        .await?;
    // the final checkpoint holds the blackboard; free the working copies
    if let Err(e) = engine.blackboard.clear(&id).await {
        tracing::warn!(error = %e, "could not clear the blackboard of a finished pipeline");
    }
    if let Err(e) = engine.bus.clear(&id).await {
        tracing::warn!(error = %e, "could not clear the bus log of a finished pipeline");
    }
    Ok(())
}

/// The blackboard a pipeline ends with: read (waiting out an outage like any durable write of
/// a driven pipeline), then rebuilt from the durable store when the coordination backend lost
/// data since it was built; the last checkpoint's when it cannot be read at all.
async fn final_board(engine: &Engine, live: &Live) -> BlackboardSnapshot {
    let id = live.id();
    for _ in 0..3 {
        let read = match live.state.emitter().write_retry() {
            Some(policy) => {
                policy
                    .run("blackboard snapshot", || engine.blackboard.snapshot(id))
                    .await
            }
            None => snapshot_retrying(engine, id).await,
        };
        let Ok(board) = read else { break };
        let epoch = engine
            .coordination
            .check(&*engine.blackboard, &*engine.bus)
            .await;
        if epoch == live.board_epoch.load(Ordering::Acquire) {
            return board;
        }
        // the blackboard lost data since it was built: rebuild it before reading the results
        if let Err(e) = super::rebuild::rebuild(engine, live).await {
            tracing::warn!(error = %e, "could not rebuild the blackboard of a finishing pipeline");
            break;
        }
        live.board_epoch.store(epoch, Ordering::Release);
    }
    match engine.checkpoints.latest(id).await {
        Ok(Some(cp)) => cp.blackboard,
        _ => BlackboardSnapshot::default(),
    }
}

/// Resumes every pipeline the registry shows as not terminal and that is not live here.
pub(super) async fn resume_incomplete(engine: &Arc<Engine>) -> Result<Vec<PipelineId>> {
    let statuses: Vec<PipelineStatus> = PipelineStatus::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .collect();
    let mut resumed = Vec::new();
    let mut offset = 0;
    loop {
        let page = engine
            .registry
            .list(&PipelineFilter {
                statuses: statuses.clone(),
                limit: 500,
                offset,
                ..PipelineFilter::default()
            })
            .await?;
        if page.is_empty() {
            break;
        }
        offset += page.len();
        for rec in page {
            if engine.live.lock().contains_key(&rec.id) {
                continue;
            }
            let id = rec.id.clone();
            if resume_one(engine, rec).await? {
                resumed.push(id);
            }
        }
    }
    Ok(resumed)
}

/// Ends a pipeline held live that cannot go on (it cannot be resumed, a fork's given state
/// could not be recorded) ORCHESTRATION_FAILED for `reason`, and lets it go.
pub(super) async fn give_up(engine: &Engine, live: &Live, reason: String) -> Result<()> {
    finish(engine, live, Outcome::OrchestrationFailed(reason)).await?;
    engine.live.lock().remove(live.id());
    engine.ownership.release(live.id(), true).await;
    Ok(())
}

/// Resumes one non-terminal pipeline from its last checkpoint and the ledger
/// ([`resume::rebuild`]) and drives it on from its status; `false` when it could not be
/// resumed (it then ended ORCHESTRATION_FAILED).
pub(super) async fn resume_one(engine: &Arc<Engine>, rec: PipelineRecord) -> Result<bool> {
    let live = match resume::rebuild(engine, rec).await? {
        Rebuilt::Ready(live) => live,
        Rebuilt::Unresumable(live, reason) => {
            give_up(engine, &live, reason).await?;
            return Ok(false);
        }
    };
    let status = *live.status_rx().borrow();
    match status {
        PipelineStatus::Spawned | PipelineStatus::Running => {
            start(engine, live, Stage::Running);
        }
        PipelineStatus::Report if live.auto_continue() => {
            start(engine, live, Stage::Orchestrating);
        }
        PipelineStatus::Report => {}
        // waiting for a human: no task, no agent; only its deadline is watched
        PipelineStatus::AwaitingApproval => watch_deadline(engine, live),
        _ => start(engine, live, Stage::ResumeOrchestrating),
    }
    Ok(true)
}
