//! Rebuilding a live pipeline's blackboard and bus from the durable store after the
//! coordination backend lost data (noticed by `crate::coordination::CoordinationWatch`), and re-applying the ledger's
//! proposals and votes (shared with the resume after a crash, `super::resume`).
//!
//! The ledger is the account of the blackboard: every proposal and vote an agent makes is
//! recorded in it (`proposal_created`, `vote_cast` with the quorum it was cast at), and every
//! handoff (`handoff_created`). The checkpoints hold the rest (solutions, partial results,
//! claims). A rebuild restores the last checkpoint's blackboard and re-applies *every*
//! proposal, vote and handoff of the ledger on top, in ledger order: what the checkpoint
//! already holds is repeated idempotently (same proposal id, one vote per voter), and a
//! checkpoint taken after the loss but before it was noticed (which may hold less) loses
//! nothing the ledger has. The vote that decided the consensus is the one the ledger's
//! `consensus_reached` follows (see [`replay`]), so the consensus comes out as the ledger
//! recorded it; votes with no `consensus_reached` after them in the ledger are decided by the
//! pipeline's consensus rule. The bus log is put back from the ledger's
//! `agent_message` events. Solutions are only in checkpoints: a solution written after the
//! last checkpoint is lost with the backend, and the restarted agents write it again.

use std::sync::Arc;

use super::approval::revision_board;
use super::handoff::pending_of;
use super::parts::{Engine, Live};
use crate::blackboard::{Handoff, Proposal, Vote};
use crate::control::{CONTROL_TOPIC, Control};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};
use crate::ids::{AgentId, PipelineId, ProposalId};
use crate::message_bus::Message;
use crate::quorum::{ApproversHandle, ConsensusRule, Quorum};
use crate::role::Role;

/// Every event of `id`'s ledger after `after`, in order.
pub(super) async fn ledger_after(
    engine: &Engine,
    id: &PipelineId,
    after: u64,
) -> Result<Vec<Event>> {
    let mut all = Vec::new();
    let mut after = after;
    loop {
        let events = engine.ledger.read(id, after, 1000).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        all.extend(events);
    }
    Ok(all)
}

/// The proposals `events` record a `consensus_reached` on.
fn decided(events: &[Event]) -> Vec<&ProposalId> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConsensusReached { proposal_id, .. } => Some(proposal_id),
            _ => None,
        })
        .collect()
}

/// The approvers a pipeline's settings (`roles`, its record's) make, as far as the ledger
/// alone tells (no takeovers): the agents of the required roles, and every GAMMA the engine
/// may spawn as mediators. A resumed pipeline's replay decides with them.
pub(super) fn recorded_approvers(
    engine: &Engine,
    roles: &crate::role_settings::RoleSettingsMap,
) -> ApproversHandle {
    let required = engine
        .known_roles()
        .iter()
        .filter(|r| Role::GAMMA != r.as_str() && Role::REPORTER != r.as_str())
        .filter(|r| {
            roles
                .get(r.as_str())
                .map_or(Role::BETA == r.as_str(), |s| s.is_required(r))
        })
        .filter_map(|r| AgentId::new(r).ok())
        .collect();
    let mediators = (1..=engine.config.gamma.max_spawns.max(1))
        .map(|n| Role::gamma(n).agent_id())
        .collect();
    ApproversHandle::new(required, mediators)
}

/// Re-applies the proposals and votes of `events` to `id`'s blackboard, in order, at the
/// quorum each vote was cast at. A vote on a proposal the blackboard does not hold is skipped.
///
/// The [`ConsensusRule`]'s required approvers are the ones in force when each vote was cast,
/// which the ledger does not repeat, and the ledger's order of two agents' votes on one
/// proposal is not always the order the blackboard applied them in (each agent records its
/// vote after writing it). When `events` hold a `consensus_reached`, the ledger says which
/// proposal was decided: its votes are replayed with their quorum alone (the consensus falls
/// on it once its replayed approvals reach the quorum, whatever their order) and every other
/// vote with a rule no vote satisfies (an approval the orchestrator never gives), so the
/// replay decides the consensus the ledger records and no other. Without one (the process may
/// have died between the deciding vote and its `consensus_reached`), votes are replayed with
/// `approvers`: the pipeline's own (a live rebuild) or those its settings make (a resume).
pub(super) async fn replay(
    engine: &Engine,
    id: &PipelineId,
    events: &[Event],
    approvers: &ApproversHandle,
) -> Result<()> {
    let decided = decided(events);
    for ev in events {
        match &ev.kind {
            EventKind::ProposalCreated {
                proposal_id,
                author,
                title,
                content,
                ..
            } => {
                let mut p = Proposal::new(
                    proposal_id.clone(),
                    author.clone(),
                    title.clone(),
                    content.clone(),
                );
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
                let vote = Vote {
                    voter: voter.clone(),
                    approve: *approve,
                    score: *score,
                    rationale: rationale.clone(),
                };
                let quorum = Quorum::new(*quorum)?;
                let rule = if decided.contains(&proposal_id) {
                    ConsensusRule::new(quorum)
                } else if decided.is_empty() {
                    approvers.rule(quorum)
                } else {
                    ConsensusRule::new(quorum).with_required(vec![Role::ORCHESTRATOR.agent_id()])
                };
                match engine.blackboard.vote(id, proposal_id, vote, &rule).await {
                    Ok(_) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The bus topic of a recorded `agent_message` (the ledger keeps sender, recipient and text;
/// the topics agents act on are recognisable from the text they write).
fn topic_of(content: &str) -> &'static str {
    if content.starts_with("handoff ") {
        "handoff"
    } else if content.starts_with("approve ") || content.starts_with("reject ") {
        "evaluation"
    } else if content.starts_with("claimed ") {
        "handoff_claimed"
    } else {
        "rebuilt"
    }
}

/// Rebuilds `live`'s blackboard and bus log from its last checkpoint and its ledger (see the
/// module docs), sets the pipeline's consensus and solution flags from the rebuilt
/// blackboard, and records `coordination_rebuilt`. Its agents must not be running.
///
/// # Errors
/// Backend errors (the caller retries retryable ones); the event could not be written.
pub(super) async fn rebuild(engine: &Engine, live: &Live) -> Result<()> {
    let id = live.id();
    let checkpoint = engine.checkpoints.latest(id).await?;
    let checkpoint_seq = checkpoint.as_ref().map_or(0, |c| c.seq);
    engine
        .blackboard
        .restore(id, checkpoint.map(|c| c.blackboard).unwrap_or_default())
        .await?;
    let events = ledger_after(engine, id, 0).await?;
    let approvers = live.state.required().handle().clone();
    replay_rounds(engine, id, &events, &approvers, |p| {
        live.state.was_rejected(p)
    })
    .await?;
    let board = engine.blackboard.snapshot(id).await?;
    for ev in &events {
        if let EventKind::HandoffCreated {
            handoff_id, from, ..
        } = &ev.kind
            && !board.handoffs.iter().any(|h| &h.id == handoff_id)
        {
            let role = live.state.agent_role(from.as_str());
            let handoff = Handoff {
                id: handoff_id.clone(),
                from: from.clone(),
                pending: pending_of(&role),
                role,
                reason: "rebuilt from the ledger".into(),
                claimed_by: None,
                created_at: ev.ts,
            };
            engine.blackboard.create_handoff(id, handoff).await?;
        }
    }
    // the money counters, when the lost backend held them (a shared cost ledger): what the
    // ledger's `llm_call` events cost
    super::spent::SpentCost::of(&events).seed(live).await?;
    let messages = republish(engine, id, &events).await?;
    let board = engine.blackboard.snapshot(id).await?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    live.state
        .reset_board_flags(board.consensus.is_some(), !board.solutions.is_empty());
    live.state.proposals_changed();
    tracing::info!(
        pipeline_id = %id,
        proposals = board.proposals.len(),
        consensus = board.consensus.is_some(),
        "blackboard and bus rebuilt from the durable store"
    );
    live.state
        .emitter()
        .emit(EventKind::CoordinationRebuilt {
            pipeline_id: id.clone(),
            checkpoint_seq,
            proposals: count(board.proposals.len()),
            votes: count(board.proposals.iter().map(|p| p.votes.len()).sum()),
            consensus: board.consensus.is_some(),
            solutions: count(board.solutions.len()),
            handoffs: count(board.handoffs.len()),
            messages,
        })
        .await?;
    Ok(())
}

/// Re-applies the proposals and votes of `events` (a ledger from its start, or from a
/// checkpoint) to `id`'s blackboard ([`replay`]), one approval round at a time: a reviewer's
/// rejection started a revision round on a fresh board (the rejected round's proposals kept as
/// SUPERSEDED, no consensus, no solution), so between rounds that fresh board is made again,
/// as the engine did when the round began. `rejected` tells a rejected consensus proposal.
pub(super) async fn replay_rounds(
    engine: &Engine,
    id: &PipelineId,
    events: &[Event],
    approvers: &ApproversHandle,
    rejected: impl Fn(&ProposalId) -> bool,
) -> Result<()> {
    let mut round = 0;
    for (i, ev) in events.iter().enumerate() {
        if matches!(ev.kind, EventKind::ApprovalDecided { approve: false, .. }) {
            replay(engine, id, &events[round..=i], approvers).await?;
            round = i + 1;
            let snap = engine.blackboard.snapshot(id).await?;
            if snap
                .consensus
                .as_ref()
                .is_some_and(|c| rejected(&c.proposal_id))
            {
                engine.blackboard.restore(id, revision_board(&snap)).await?;
            }
        }
    }
    replay(engine, id, &events[round..], approvers).await
}

/// Clears `id`'s bus log and puts the `agent_message` events of `events` back on it, in order
/// (the engine's typed control messages on their own topic). Returns how many.
pub(super) async fn republish(engine: &Engine, id: &PipelineId, events: &[Event]) -> Result<u32> {
    engine.bus.clear(id).await?;
    let mut messages = 0u32;
    for ev in events {
        if let EventKind::AgentMessage {
            from, to, content, ..
        } = &ev.kind
        {
            let topic = if Role::ORCHESTRATOR == from.as_str() && Control::parse(content).is_ok() {
                CONTROL_TOPIC
            } else {
                topic_of(content)
            };
            let mut m = Message::new(from.clone(), to.clone(), topic, content.clone());
            m.ts = ev.ts;
            engine.bus.publish(id, m).await?;
            messages += 1;
        }
    }
    Ok(messages)
}

/// Whether `id`'s ledger records a consensus.
pub(super) async fn ledger_has_consensus(engine: &Engine, id: &PipelineId) -> Result<bool> {
    Ok(ledger_after(engine, id, 0)
        .await?
        .iter()
        .any(|e| matches!(e.kind, EventKind::ConsensusReached { .. })))
}

/// Starts the engine's background check of its coordination backends (once).
pub(super) fn watch(engine: &Arc<Engine>) {
    if !engine.coordination.claim_start() {
        return;
    }
    let weak = Arc::downgrade(engine);
    tokio::spawn(async move {
        loop {
            let Some(e) = weak.upgrade() else { return };
            if e.shutdown.is_cancelled() {
                return;
            }
            let (_, checked) = e.coordination.check_detail(&*e.blackboard, &*e.bus).await;
            if checked == crate::coordination::Checked::NeverLoses {
                return;
            }
            let shutdown = e.shutdown.clone();
            drop(e);
            tokio::select! {
                () = tokio::time::sleep(crate::coordination::CHECK_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}
