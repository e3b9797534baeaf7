//! [`BoardView`]: an agent's read-only view of its pipeline's blackboard.

use std::sync::Arc;

use crate::blackboard::{Blackboard, BlackboardSnapshot, Consensus, Handoff, Proposal};
use crate::error::Result;
use crate::ids::{PipelineId, ProposalId};

/// A read-only view of the pipeline's blackboard (from [`AgentContext::board`]): what is
/// there, never a way to change it. Writing past the context does not compile:
/// ```compile_fail,E0599
/// # async fn forge(ctx: governance_core::AgentContext, p: governance_core::ProposalId) {
/// let beta: governance_core::AgentId = "BETA".parse().unwrap();
/// let vote = governance_core::Vote { voter: beta, approve: true, score: 1.0, rationale: "x".into() };
/// ctx.board().vote(&p, vote, 1).await; // BoardView has no write methods
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BoardView {
    blackboard: Arc<dyn Blackboard>,
    pipeline: PipelineId,
}

impl BoardView {
    pub(super) fn new(blackboard: Arc<dyn Blackboard>, pipeline: PipelineId) -> Self {
        Self {
            blackboard,
            pipeline,
        }
    }

    /// Everything on the board.
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn snapshot(&self) -> Result<BlackboardSnapshot> {
        self.blackboard.snapshot(&self.pipeline).await
    }

    /// The proposals, oldest first.
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn proposals(&self) -> Result<Vec<Proposal>> {
        self.blackboard.proposals(&self.pipeline).await
    }

    /// One proposal.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown proposal; blackboard failures.
    pub async fn proposal(&self, id: &ProposalId) -> Result<Proposal> {
        self.blackboard.proposal(&self.pipeline, id).await
    }

    /// The consensus, once there is one.
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn consensus(&self) -> Result<Option<Consensus>> {
        self.blackboard.consensus(&self.pipeline).await
    }

    /// The handoffs (work a failed or revoked agent left).
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn handoffs(&self) -> Result<Vec<Handoff>> {
        self.blackboard.handoffs(&self.pipeline).await
    }
}
