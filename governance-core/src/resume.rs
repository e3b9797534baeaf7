//! Resuming pipelines after a crash: every pipeline the registry shows as not terminal is
//! rebuilt from its last checkpoint plus the ledger events after it, then driven on.
//!
//! The blackboard is rebuilt deterministically: proposals and votes recorded in the ledger
//! after the checkpoint are re-applied in ledger order with the quorum they were cast at, so the
//! consensus comes out the same as before the crash and is never decided twice.

use std::sync::Arc;

use crate::blackboard::{Proposal, Vote};
use crate::error::Result;
use crate::event::EventKind;
use crate::governance::Engine;
use crate::ids::PipelineId;
use crate::pipeline::{Live, Outcome, Stage, finish, start};
use crate::state_machine::PipelineStatus;
use crate::store::PipelineFilter;

pub(crate) async fn resume_incomplete(engine: &Arc<Engine>) -> Result<Vec<PipelineId>> {
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

/// Resumes one non-terminal pipeline from its last checkpoint and the ledger; `false` when it
/// could not be resumed (it then ended ORCHESTRATION_FAILED).
pub(crate) async fn resume_one(
    engine: &Arc<Engine>,
    rec: crate::store::PipelineRecord,
) -> Result<bool> {
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
        .retain(|a| a.agent_id == "REPORTER" && a.state != crate::store::AgentState::Running);
    let live = Live::restore(engine, record.clone(), last_seq);
    engine.live.lock().insert(id.clone(), live.clone());
    let unresumable = match rebuild_blackboard(engine, &id, checkpoint.as_ref()).await {
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
        finish(engine, &live, Outcome::OrchestrationFailed(reason)).await?;
        engine.live.lock().remove(&id);
        engine.ownership.release(&id, true).await;
        return Ok(false);
    }
    tracing::info!(pipeline_id = %id, status = %record.status, "resuming pipeline");
    // the audit trail shows a resume as what it is; the agents' spawns are not repeated
    let resumed = live
        .shared
        .emitter
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
    match record.status {
        PipelineStatus::Spawned | PipelineStatus::Running => {
            start(engine, live, Stage::Running);
        }
        PipelineStatus::Report if record.auto_continue => {
            start(engine, live, Stage::Orchestrating);
        }
        PipelineStatus::Report => {}
        _ => start(engine, live, Stage::ResumeOrchestrating),
    }
    Ok(true)
}

async fn rebuild_blackboard(
    engine: &Engine,
    id: &PipelineId,
    checkpoint: Option<&crate::store::Checkpoint>,
) -> Result<()> {
    let current = engine.blackboard.snapshot(id).await?;
    let cp_seq = checkpoint.map_or(0, |c| c.seq);
    if current.proposals.is_empty() {
        if let Some(cp) = checkpoint {
            engine.blackboard.restore(id, cp.blackboard.clone()).await?;
        }
        // re-apply what the ledger recorded after the checkpoint, in order
        let mut after = cp_seq;
        loop {
            let events = engine.ledger.read(id, after, 1000).await?;
            let Some(last) = events.last() else { break };
            after = last.seq;
            for ev in events {
                match ev.kind {
                    EventKind::ProposalCreated {
                        proposal_id,
                        author,
                        title,
                        content,
                        ..
                    } => {
                        let mut p = Proposal::new(proposal_id, author, title, content);
                        p.created_at = ev.ts;
                        engine.blackboard.create_proposal(id, p).await?;
                    }
                    EventKind::VoteCast {
                        proposal_id,
                        voter,
                        approve,
                        score,
                        rationale,
                        quorum,
                        ..
                    } => {
                        engine
                            .blackboard
                            .vote(
                                id,
                                &proposal_id,
                                Vote {
                                    voter,
                                    approve,
                                    score,
                                    rationale,
                                },
                                quorum,
                            )
                            .await?;
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Tells the runtime what the rebuilt blackboard already holds (consensus, solution), and
/// records a consensus the blackboard decided while replaying votes whose `consensus_reached`
/// event the crash kept out of the ledger, so the ledger shows it exactly once.
async fn sync_flags(engine: &Engine, live: &Live) -> Result<()> {
    use std::sync::atomic::Ordering;
    let id = &live.shared.id;
    let snap = engine.blackboard.snapshot(id).await?;
    // what the ledger recorded of the blackboard
    let mut proposals = std::collections::HashSet::new();
    let mut votes = std::collections::HashSet::new();
    let mut recorded = false;
    let mut started = false;
    let mut spawned = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let events = engine.ledger.read(id, after, 1000).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        for e in events {
            match e.kind {
                EventKind::ProposalCreated { proposal_id, .. } => {
                    proposals.insert(proposal_id);
                }
                EventKind::VoteCast {
                    proposal_id, voter, ..
                } => {
                    votes.insert((proposal_id, voter));
                }
                EventKind::ConsensusReached { .. } => recorded = true,
                EventKind::OrchestrationStarted { .. } => started = true,
                EventKind::AgentSpawned { agent_id, .. } => {
                    spawned.insert(agent_id);
                }
                _ => {}
            }
        }
    }
    {
        let mut r = live.shared.recorded.lock();
        r.proposals.extend(proposals);
        r.votes.extend(votes);
        r.orchestration_started = started;
        r.spawned.extend(spawned);
    }
    // A shared blackboard (Redis) outlives the process that died; it may hold a proposal or
    // a vote whose event that process never wrote (it died between the two). Record them, so
    // the ledger stays a complete account of the blackboard.
    live.shared.record_unrecorded(&snap, None).await?;
    if let Some(c) = &snap.consensus {
        if !recorded {
            live.shared
                .emitter
                .emit(EventKind::ConsensusReached {
                    pipeline_id: id.clone(),
                    proposal_id: c.proposal_id.clone(),
                    votes: c.votes,
                })
                .await?;
        }
        live.shared.consensus.store(true, Ordering::Release);
    }
    live.shared
        .solution
        .store(!snap.solutions.is_empty(), Ordering::Release);
    live.shared.proposals_changed.store(true, Ordering::Release);
    Ok(())
}
