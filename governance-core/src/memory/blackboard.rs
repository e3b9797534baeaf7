//! [`MemoryBlackboard`]: the in-memory [`Blackboard`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use parking_lot::{Mutex, RwLock};

use crate::blackboard::{
    Blackboard, BlackboardSnapshot, Consensus, Handoff, Proposal, ProposalStatus, Solution, Vote,
    VoteOutcome,
};
use crate::error::{Error, Result};
use crate::ids::{AgentId, HandoffId, PipelineId, ProposalId};
use crate::quorum::ConsensusRule;

/// One pipeline's board. `dead` is set when [`Blackboard::clear`] unlinks it, so a writer that
/// fetched the board just before the clear retries on a fresh one instead of writing into a
/// board nobody can see any more.
#[derive(Debug, Default)]
struct Board {
    state: BlackboardSnapshot,
    dead: bool,
}

type Shard = Arc<Mutex<Board>>;

/// An in-memory [`Blackboard`], sharded per pipeline.
///
/// The pipeline map is behind a read-write lock that is only held to find (or insert) the
/// pipeline's board; each board has its own mutex, so concurrent pipelines do not contend. No
/// lock is ever held across an `.await`. Every operation runs under its board's mutex, which
/// makes it atomic and gives the consensus rule of the trait exactly: a vote is recorded once
/// per `(proposal, voter)`, the first proposal to satisfy the [`ConsensusRule`] is `ACCEPTED` and
/// becomes the consensus, later ones are `SUPERSEDED`, `quorum` rejections make a proposal
/// `REJECTED`.
///
/// A pipeline costs nothing until something is written to it, and nothing again after
/// [`clear`](Blackboard::clear).
#[derive(Debug, Default)]
pub struct MemoryBlackboard {
    boards: RwLock<HashMap<PipelineId, Shard>>,
}

impl MemoryBlackboard {
    /// An empty blackboard.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pipelines with data on the board.
    #[must_use]
    pub fn pipelines(&self) -> usize {
        self.boards.read().len()
    }

    fn existing(&self, pipeline: &PipelineId) -> Option<Shard> {
        self.boards.read().get(pipeline).cloned()
    }

    fn get_or_create(&self, pipeline: &PipelineId) -> Shard {
        if let Some(board) = self.existing(pipeline) {
            return board;
        }
        Arc::clone(self.boards.write().entry(pipeline.clone()).or_default())
    }

    /// Runs `f` on the pipeline's board, creating the board when needed.
    fn write<T>(&self, pipeline: &PipelineId, f: impl FnOnce(&mut BlackboardSnapshot) -> T) -> T {
        loop {
            let board = self.get_or_create(pipeline);
            let mut guard = board.lock();
            if !guard.dead {
                return f(&mut guard.state);
            }
        }
    }

    /// Runs `f` on the pipeline's board when it exists, or on an empty board otherwise (without
    /// creating one).
    fn read<T>(&self, pipeline: &PipelineId, f: impl FnOnce(&mut BlackboardSnapshot) -> T) -> T {
        loop {
            let Some(board) = self.existing(pipeline) else {
                return f(&mut BlackboardSnapshot::default());
            };
            let mut guard = board.lock();
            if !guard.dead {
                return f(&mut guard.state);
            }
        }
    }
}

fn find_proposal<'a>(
    state: &'a mut BlackboardSnapshot,
    id: &ProposalId,
) -> Result<&'a mut Proposal> {
    state
        .proposals
        .iter_mut()
        .find(|p| &p.id == id)
        .ok_or_else(|| Error::not_found("proposal", id))
}

/// Applies the consensus rule of [`Blackboard`] to one vote.
fn apply_vote(
    state: &mut BlackboardSnapshot,
    id: &ProposalId,
    vote: Vote,
    rule: &ConsensusRule,
) -> Result<VoteOutcome> {
    let quorum = rule.quorum.get();
    let has_consensus = state.consensus.is_some();
    let proposal = find_proposal(state, id)?;
    if proposal.votes.iter().any(|v| v.voter == vote.voter) {
        return Ok(VoteOutcome {
            recorded: false,
            approvals: proposal.approvals(),
            rejections: proposal.rejections(),
            status: proposal.status,
            consensus: None,
        });
    }
    proposal.votes.push(vote);
    let (approvals, rejections) = (proposal.approvals(), proposal.rejections());
    let mut consensus = None;
    let approvers = proposal
        .votes
        .iter()
        .filter(|v| v.approve)
        .map(|v| &v.voter);
    if proposal.status == ProposalStatus::Open {
        if rule.accepts(approvals, approvers) {
            if has_consensus {
                proposal.status = ProposalStatus::Superseded;
            } else {
                proposal.status = ProposalStatus::Accepted;
                consensus = Some(Consensus {
                    proposal_id: proposal.id.clone(),
                    votes: approvals,
                    voters: proposal
                        .votes
                        .iter()
                        .filter(|v| v.approve)
                        .map(|v| v.voter.clone())
                        .collect(),
                    decided_at: Utc::now(),
                });
            }
        } else if rejections >= quorum {
            proposal.status = ProposalStatus::Rejected;
        }
    }
    let status = proposal.status;
    if consensus.is_some() {
        state.consensus.clone_from(&consensus);
    }
    Ok(VoteOutcome {
        recorded: true,
        approvals,
        rejections,
        status,
        consensus,
    })
}

#[async_trait]
impl Blackboard for MemoryBlackboard {
    async fn create_proposal(&self, pipeline: &PipelineId, proposal: Proposal) -> Result<Proposal> {
        self.write(pipeline, |state| {
            if let Some(existing) = state.proposals.iter().find(|p| p.id == proposal.id) {
                return if existing.author == proposal.author {
                    Ok(existing.clone())
                } else {
                    Err(Error::Conflict(format!(
                        "proposal {} already exists with author {}",
                        proposal.id, existing.author
                    )))
                };
            }
            state.proposals.push(proposal.clone());
            Ok(proposal)
        })
    }

    async fn proposal(&self, pipeline: &PipelineId, id: &ProposalId) -> Result<Proposal> {
        self.read(pipeline, |state| {
            find_proposal(state, id).map(|p| p.clone())
        })
    }

    async fn proposals(&self, pipeline: &PipelineId) -> Result<Vec<Proposal>> {
        Ok(self.read(pipeline, |state| state.proposals.clone()))
    }

    async fn vote(
        &self,
        pipeline: &PipelineId,
        proposal: &ProposalId,
        vote: Vote,
        rule: &ConsensusRule,
    ) -> Result<VoteOutcome> {
        // A vote only addresses an existing proposal, so it never creates a board.
        self.read(pipeline, |state| apply_vote(state, proposal, vote, rule))
    }

    async fn consensus(&self, pipeline: &PipelineId) -> Result<Option<Consensus>> {
        Ok(self.read(pipeline, |state| state.consensus.clone()))
    }

    async fn add_solution(&self, pipeline: &PipelineId, solution: Solution) -> Result<()> {
        self.write(pipeline, |state| state.solutions.push(solution));
        Ok(())
    }

    async fn create_handoff(&self, pipeline: &PipelineId, handoff: Handoff) -> Result<()> {
        self.write(pipeline, |state| {
            if !state.handoffs.iter().any(|h| h.id == handoff.id) {
                state.handoffs.push(handoff);
            }
        });
        Ok(())
    }

    async fn claim_handoff(
        &self,
        pipeline: &PipelineId,
        id: &HandoffId,
        claimer: &AgentId,
    ) -> Result<bool> {
        self.read(pipeline, |state| {
            let handoff = state
                .handoffs
                .iter_mut()
                .find(|h| &h.id == id)
                .ok_or_else(|| Error::not_found("handoff", id))?;
            match &handoff.claimed_by {
                Some(owner) => Ok(owner == claimer),
                None => {
                    handoff.claimed_by = Some(claimer.clone());
                    Ok(true)
                }
            }
        })
    }

    async fn handoffs(&self, pipeline: &PipelineId) -> Result<Vec<Handoff>> {
        Ok(self.read(pipeline, |state| state.handoffs.clone()))
    }

    async fn put_partial(
        &self,
        pipeline: &PipelineId,
        key: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        self.write(pipeline, |state| {
            state.partials.insert(key.to_owned(), value)
        });
        Ok(())
    }

    async fn snapshot(&self, pipeline: &PipelineId) -> Result<BlackboardSnapshot> {
        Ok(self.read(pipeline, |state| state.clone()))
    }

    async fn restore(&self, pipeline: &PipelineId, snapshot: BlackboardSnapshot) -> Result<()> {
        self.write(pipeline, |state| *state = snapshot);
        Ok(())
    }

    async fn clear(&self, pipeline: &PipelineId) -> Result<()> {
        let removed = self.boards.write().remove(pipeline);
        if let Some(board) = removed {
            let mut guard = board.lock();
            guard.dead = true;
            guard.state = BlackboardSnapshot::default();
        }
        Ok(())
    }
}
