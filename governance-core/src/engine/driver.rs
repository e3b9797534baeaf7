//! The driver: one task per driven pipeline runs its stages in order — RUNNING
//! ([`report`](super::report)), then ORCHESTRATING ([`supervisor`](super::supervisor)) — and
//! ends it ([`finish`]: results, final status, final checkpoint) with the [`Outcome`] a stage
//! returns. Resumed pipelines ([`resume`](super::resume)) are driven on from their status.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::Instrument;

use super::live::{Outcome, snapshot_retrying};
use super::parts::{Engine, Live};
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

async fn drive(engine: &Engine, live: &Live, stage: Stage) -> Result<()> {
    let end = match stage {
        Stage::Running => match report::run(engine, live).await? {
            None if live.auto_continue() => supervisor::orchestrate(engine, live, false).await?,
            end => end,
        },
        Stage::Orchestrating => supervisor::orchestrate(engine, live, false).await?,
        Stage::ResumeOrchestrating => supervisor::orchestrate(engine, live, true).await?,
    };
    match end {
        None => Ok(()),
        // the engine is shutting down: keep the status, the next engine resumes it
        Some(Outcome::Suspended) => live.checkpoint_now(engine).await,
        Some(outcome) => finish(engine, live, outcome).await,
    }
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
        live.state
            .emitter()
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

/// Resumes one non-terminal pipeline from its last checkpoint and the ledger
/// ([`resume::rebuild`]) and drives it on from its status; `false` when it could not be
/// resumed (it then ended ORCHESTRATION_FAILED).
pub(super) async fn resume_one(engine: &Arc<Engine>, rec: PipelineRecord) -> Result<bool> {
    let id = rec.id.clone();
    let live = match resume::rebuild(engine, rec).await? {
        Rebuilt::Ready(live) => live,
        Rebuilt::Unresumable(live, reason) => {
            finish(engine, &live, Outcome::OrchestrationFailed(reason)).await?;
            engine.live.lock().remove(&id);
            engine.ownership.release(&id, true).await;
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
        _ => start(engine, live, Stage::ResumeOrchestrating),
    }
    Ok(true)
}
