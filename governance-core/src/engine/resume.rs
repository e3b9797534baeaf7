//! Resuming pipelines after a crash: a pipeline the registry shows as not terminal is
//! rebuilt from its last checkpoint plus the ledger events after it; the driver then drives it
//! on (`super::driver::resume_one`).
//!
//! The blackboard is rebuilt deterministically: proposals and votes recorded in the ledger
//! after the checkpoint are re-applied in ledger order with the quorum they were cast at, so the
//! consensus comes out the same as before the crash and is never decided twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::parts::{Engine, Live};
use super::state::{Recorded, Review};
use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::ids::PipelineId;
use crate::role::Role;
use crate::store::{AgentState, Checkpoint, PipelineRecord};

/// A pipeline rebuilt for a resume, held live (in the engine's table).
pub(super) enum Rebuilt {
    /// Ready to be driven on from its status; `resumed` is in the ledger.
    Ready(Arc<Live>),
    /// It cannot go on (its blackboard cannot be rebuilt, its LLM mode is gone): the driver
    /// ends it ORCHESTRATION_FAILED for this reason.
    Unresumable(Arc<Live>, String),
}

/// Rebuilds one non-terminal pipeline from its last checkpoint and the ledger, and puts it in
/// the engine's live table.
///
/// # Errors
/// Backend errors reading its ledger and checkpoint; the `resumed` event could not be written
/// (it is then not held live: the next attempt, or another node, resumes it).
pub(super) async fn rebuild(engine: &Engine, rec: PipelineRecord) -> Result<Rebuilt> {
    let id = rec.id.clone();
    let last_seq = engine.ledger.last_seq(&id).await?;
    let checkpoint = engine.checkpoints.latest(&id).await?;
    // the registry row may be older than the checkpoint; take the newer record
    let mut record = match &checkpoint {
        Some(cp) if cp.record.updated_at > rec.updated_at => cp.record.clone(),
        _ => rec,
    };
    record
        .agents
        .retain(|a| Role::REPORTER == a.agent_id.as_str() && a.state != AgentState::Running);
    let live = Live::restore(engine, record.clone(), last_seq);
    engine.live.lock().insert(id.clone(), live.clone());
    let approvers = super::rebuild::recorded_approvers(engine, &record.roles);
    let unresumable = match rebuild_blackboard(engine, &id, checkpoint.as_ref(), &approvers).await {
        Err(e) => Some(format!("cannot resume: {e}")),
        Ok(()) if engine.llm(&record.mode).is_err() => Some(format!(
            "cannot resume: LLM mode {:?} is not available",
            record.mode
        )),
        Ok(()) => sync_flags(engine, &live)
            .await
            .err()
            .map(|e| format!("cannot resume: {e}")),
    };
    if let Some(reason) = unresumable {
        return Ok(Rebuilt::Unresumable(live, reason));
    }
    tracing::info!(pipeline_id = %id, status = %record.status, "resuming pipeline");
    // the audit trail shows a resume as what it is; the agents' spawns are not repeated
    let resumed = live
        .state
        .emitter()
        .emit(EventKind::Resumed {
            pipeline_id: id.clone(),
            status: record.status,
        })
        .await;
    if let Err(e) = resumed {
        // not resumed: leave it to the next attempt (or another node)
        engine.live.lock().remove(&id);
        return Err(e);
    }
    Ok(Rebuilt::Ready(live))
}

async fn rebuild_blackboard(
    engine: &Engine,
    id: &PipelineId,
    checkpoint: Option<&Checkpoint>,
    approvers: &crate::quorum::ApproversHandle,
) -> Result<()> {
    let current = engine.blackboard.snapshot(id).await?;
    let cp_seq = checkpoint.map_or(0, |c| c.seq);
    if current.proposals.is_empty() {
        if let Some(cp) = checkpoint {
            engine.blackboard.restore(id, cp.blackboard.clone()).await?;
        }
        // re-apply what the ledger recorded after the checkpoint, in order
        let events = super::rebuild::ledger_after(engine, id, cp_seq).await?;
        super::rebuild::replay(engine, id, &events, approvers).await?;
    }
    Ok(())
}

/// Tells the runtime what the rebuilt blackboard already holds (consensus, solution), and
/// records a consensus the blackboard decided while replaying votes whose `consensus_reached`
/// event the crash kept out of the ledger, so the ledger shows it exactly once.
pub(super) async fn sync_flags(engine: &Engine, live: &Live) -> Result<()> {
    let id = live.id();
    let snap = engine.blackboard.snapshot(id).await?;
    // what the ledger recorded of the blackboard
    let mut proposals = HashSet::new();
    let mut votes = HashSet::new();
    let mut recorded = HashSet::new();
    let mut started = false;
    let mut spawned = HashSet::new();
    let events = super::rebuild::ledger_after(engine, id, 0).await?;
    for e in &events {
        match &e.kind {
            EventKind::ProposalCreated { proposal_id, .. } => {
                proposals.insert(proposal_id.clone());
            }
            EventKind::VoteCast {
                proposal_id, voter, ..
            } => {
                votes.insert((proposal_id.clone(), voter.clone()));
            }
            EventKind::ConsensusReached { proposal_id, .. } => {
                recorded.insert(proposal_id.clone());
            }
            EventKind::OrchestrationStarted { .. } => started = true,
            EventKind::AgentSpawned { agent_id, .. } => {
                spawned.insert(agent_id.clone());
            }
            _ => {}
        }
    }
    // what its LLM calls cost, as the providers reported it (the system of record for money)
    super::spent::SpentCost::of(&events).restore(live).await?;
    for review in reviews_of(&events) {
        live.state.add_review(review);
    }
    live.state.restore_recorded(Recorded {
        proposals,
        votes,
        orchestration_started: started,
        spawned,
    });
    // A shared blackboard (Redis) outlives the process that died; it may hold a proposal or
    // a vote whose event that process never wrote (it died between the two). Record them, so
    // the ledger stays a complete account of the blackboard.
    live.state.record_unrecorded(&snap, None).await?;
    if let Some(c) = &snap.consensus {
        if !recorded.contains(&c.proposal_id) {
            live.state
                .emitter()
                .emit(EventKind::ConsensusReached {
                    pipeline_id: id.clone(),
                    proposal_id: c.proposal_id.clone(),
                    votes: c.votes,
                })
                .await?;
        }
        live.state.mark_consensus();
    }
    if !snap.solutions.is_empty() {
        live.state.mark_solution();
    }
    live.state.proposals_changed();
    Ok(())
}

/// The reviewers' rejections `events` record (ALPHA's feedback in a revision round), each
/// with the title of the outcome it was asked about.
pub(super) fn reviews_of(events: &[Event]) -> Vec<Review> {
    let mut titles = HashMap::new();
    let mut reviews = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::ApprovalRequested {
                proposal_id: Some(p),
                title,
                ..
            } => {
                titles.insert(p.clone(), title.clone());
            }
            EventKind::ApprovalDecided {
                approve: false,
                proposal_id,
                by,
                feedback,
                ..
            } => reviews.push(Review {
                title: proposal_id
                    .as_ref()
                    .and_then(|p| titles.get(p).cloned())
                    .unwrap_or_default(),
                proposal_id: proposal_id.clone(),
                by: by.clone(),
                feedback: feedback.clone(),
            }),
            _ => {}
        }
    }
    reviews
}
