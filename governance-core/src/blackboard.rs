//! The Blackboard: per-pipeline shared state of the agents.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{AgentId, HandoffId, PipelineId, ProposalId};
use crate::quorum::ConsensusRule;

/// Version of the blackboard payload JSON (the wire protocol).
pub const BLACKBOARD_PAYLOAD_VERSION: u32 = 1;

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProposalStatus {
    /// Not yet decided: counts as *unresolved* for the CONFLICT trigger.
    Open,
    /// Reached `quorum` approvals and won the pipeline's consensus.
    Accepted,
    /// Reached `quorum` rejections.
    Rejected,
    /// Reached `quorum` approvals after another proposal had already won.
    Superseded,
}

/// A proposal written by an agent (normally ALPHA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Payload version ([`BLACKBOARD_PAYLOAD_VERSION`]).
    #[serde(default = "default_version")]
    pub v: u32,
    /// Id, chosen by the author (deterministic ids make a retried create idempotent).
    pub id: ProposalId,
    /// Who wrote it.
    pub author: AgentId,
    /// Short title.
    pub title: String,
    /// The proposal text.
    pub content: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Decision state.
    pub status: ProposalStatus,
    /// Votes in the order they were recorded (one per voter).
    pub votes: Vec<Vote>,
}

impl Proposal {
    /// A new open proposal without votes.
    #[must_use]
    pub fn new(
        id: ProposalId,
        author: AgentId,
        title: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        Self {
            v: BLACKBOARD_PAYLOAD_VERSION,
            id,
            author,
            title: title.into(),
            content: content.into(),
            created_at: Utc::now(),
            status: ProposalStatus::Open,
            votes: Vec::new(),
        }
    }

    /// Number of approving votes.
    #[must_use]
    pub fn approvals(&self) -> u32 {
        u32::try_from(self.votes.iter().filter(|v| v.approve).count()).unwrap_or(u32::MAX)
    }

    /// Number of rejecting votes.
    #[must_use]
    pub fn rejections(&self) -> u32 {
        u32::try_from(self.votes.iter().filter(|v| !v.approve).count()).unwrap_or(u32::MAX)
    }
}

fn default_version() -> u32 {
    BLACKBOARD_PAYLOAD_VERSION
}

/// One agent's vote on a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// The voter; one vote per voter per proposal.
    pub voter: AgentId,
    /// Approve (`true`) or reject.
    pub approve: bool,
    /// The voter's score of the proposal, 0.0–1.0.
    pub score: f64,
    /// Why.
    pub rationale: String,
}

/// The consensus of a pipeline: the first proposal to reach the quorum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consensus {
    /// The winning proposal.
    pub proposal_id: ProposalId,
    /// Approving votes at the moment of the decision.
    pub votes: u32,
    /// Who approved it.
    pub voters: Vec<AgentId>,
    /// When it was decided.
    pub decided_at: DateTime<Utc>,
}

/// What a [`Blackboard::vote`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteOutcome {
    /// `false` when this voter had already voted on the proposal (nothing changed).
    pub recorded: bool,
    /// Approvals after the vote.
    pub approvals: u32,
    /// Rejections after the vote.
    pub rejections: u32,
    /// The proposal's status after the vote.
    pub status: ProposalStatus,
    /// `Some` exactly when *this* vote decided the pipeline's consensus.
    pub consensus: Option<Consensus>,
}

/// A solution built by an agent (normally BETA) from an accepted proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    /// Who built it.
    pub agent: AgentId,
    /// The proposal it builds on.
    pub proposal_id: Option<ProposalId>,
    /// The solution text.
    pub content: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Work a revoked or failed agent leaves for its partner or GAMMA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// Id.
    pub id: HandoffId,
    /// The agent that handed off.
    pub from: AgentId,
    /// Its role (so the claimer knows what work it takes over).
    pub role: String,
    /// Why (e.g. the budget limit that revoked the agent).
    pub reason: String,
    /// Pending work items, free-form.
    pub pending: Vec<String>,
    /// Who claimed it, once claimed.
    pub claimed_by: Option<AgentId>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Everything on one pipeline's blackboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlackboardSnapshot {
    /// Proposals in creation order.
    pub proposals: Vec<Proposal>,
    /// The consensus, if reached.
    pub consensus: Option<Consensus>,
    /// Solutions in the order written.
    pub solutions: Vec<Solution>,
    /// Handoffs in the order written.
    pub handoffs: Vec<Handoff>,
    /// Partial results by key (`"<agent>/<name>"` by convention).
    pub partials: BTreeMap<String, serde_json::Value>,
}

impl BlackboardSnapshot {
    /// Proposals that are still open (*unresolved*).
    #[must_use]
    pub fn unresolved(&self) -> usize {
        self.proposals
            .iter()
            .filter(|p| p.status == ProposalStatus::Open)
            .count()
    }
}

/// Per-pipeline shared state: proposals, votes, consensus, solutions, handoffs, partial results.
///
/// # Contract
/// - Every method is atomic: concurrent callers (tasks, connections, processes) never see or
///   produce a half-applied update.
/// - **Consensus rule**: a vote is recorded at most once per `(proposal, voter)`; a second vote
///   by the same voter returns `recorded: false` and changes nothing. When an approving vote
///   makes an open proposal satisfy the [`ConsensusRule`] — `quorum` approvals and an approval
///   from every required voter (or from a mediator) — it becomes `ACCEPTED` and the pipeline's
///   consensus, unless the pipeline already has one, in which case it becomes `SUPERSEDED`.
///   Approvals short of a required voter's leave it `OPEN` (a required voter's rejection
///   blocks it). When it reaches `quorum` rejections it becomes `REJECTED`. Votes on a decided proposal are still recorded but
///   do not change its status. Exactly one vote ever returns `consensus: Some(_)` per pipeline.
/// - Ids reach storage keys only after validation (they are validated types).
/// - Operations on a pipeline that has no data behave as on an empty blackboard, except those
///   that address an item by id, which return [`crate::Error::NotFound`].
///
/// # Errors
/// Backend failures are [`crate::Error::Backend`]; `retryable: true` means the operation was
/// certainly not applied.
///
/// # Cancel safety
/// Dropping a future may leave the operation applied or not, never half-applied.
///
/// # Example
/// Two voters on a quorum of two: the second approval reaches consensus, exactly once.
/// ```
/// use governance_core::{
///     AgentId, Blackboard, MemoryBlackboard, PipelineId, Proposal, ProposalId, ProposalStatus,
///     ConsensusRule, Quorum, Vote,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> governance_core::Result<()> {
/// let bb = MemoryBlackboard::default();
/// let p = PipelineId::new("p-1")?;
/// let (alpha, beta) = (AgentId::new("ALPHA")?, AgentId::new("BETA")?);
/// let id = ProposalId::new("prop-1")?;
/// bb.create_proposal(&p, Proposal::new(id.clone(), alpha.clone(), "Edge cache", "details"))
///     .await?;
///
/// let vote = |voter: &AgentId| Vote {
///     voter: voter.clone(),
///     approve: true,
///     score: 0.9,
///     rationale: "sound".into(),
/// };
/// // BETA's approval is required: ALPHA's alone never decides
/// let rule = ConsensusRule::new(Quorum::DEFAULT).with_required(vec![beta.clone()]);
/// let first = bb.vote(&p, &id, vote(&alpha), &rule).await?;
/// assert!(first.consensus.is_none());
/// let second = bb.vote(&p, &id, vote(&beta), &rule).await?;
/// assert_eq!(second.consensus.map(|c| c.proposal_id), Some(id.clone()));
///
/// let snapshot = bb.snapshot(&p).await?;
/// assert_eq!(snapshot.proposals[0].status, ProposalStatus::Accepted);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Blackboard: Send + Sync + std::fmt::Debug {
    /// Creates a proposal. Creating the same id again with the same author is idempotent
    /// (returns the stored proposal); with another author it is [`crate::Error::Conflict`].
    async fn create_proposal(&self, pipeline: &PipelineId, proposal: Proposal) -> Result<Proposal>;

    /// One proposal.
    async fn proposal(&self, pipeline: &PipelineId, id: &ProposalId) -> Result<Proposal>;

    /// All proposals in creation order.
    async fn proposals(&self, pipeline: &PipelineId) -> Result<Vec<Proposal>>;

    /// Records a vote and applies the consensus rule `rule` atomically (see the trait docs).
    async fn vote(
        &self,
        pipeline: &PipelineId,
        proposal: &ProposalId,
        vote: Vote,
        rule: &ConsensusRule,
    ) -> Result<VoteOutcome>;

    /// The pipeline's consensus, if reached.
    async fn consensus(&self, pipeline: &PipelineId) -> Result<Option<Consensus>>;

    /// Appends a solution.
    async fn add_solution(&self, pipeline: &PipelineId, solution: Solution) -> Result<()>;

    /// Writes a handoff. Same id again is idempotent.
    async fn create_handoff(&self, pipeline: &PipelineId, handoff: Handoff) -> Result<()>;

    /// Claims a handoff for `claimer`. Returns `true` for exactly one claimer; `false` when it
    /// was already claimed by someone else (claiming again as the same claimer returns `true`).
    async fn claim_handoff(
        &self,
        pipeline: &PipelineId,
        id: &HandoffId,
        claimer: &AgentId,
    ) -> Result<bool>;

    /// All handoffs in the order written.
    async fn handoffs(&self, pipeline: &PipelineId) -> Result<Vec<Handoff>>;

    /// Sets a partial result (last write wins per key).
    async fn put_partial(
        &self,
        pipeline: &PipelineId,
        key: &str,
        value: serde_json::Value,
    ) -> Result<()>;

    /// Everything on the pipeline's blackboard.
    async fn snapshot(&self, pipeline: &PipelineId) -> Result<BlackboardSnapshot>;

    /// Replaces the pipeline's blackboard with `snapshot` (used to resume from a checkpoint).
    async fn restore(&self, pipeline: &PipelineId, snapshot: BlackboardSnapshot) -> Result<()>;

    /// Deletes the pipeline's blackboard (after it has been checkpointed).
    async fn clear(&self, pipeline: &PipelineId) -> Result<()>;

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// The backend's [`DataGeneration`](crate::DataGeneration), so the engine notices when it
    /// lost data (see `DataGeneration::lost_since`); `None` (the default) for a backend that
    /// never loses data while the process lives, like the in-memory one. Called every half
    /// second by the engine: one short round trip, never riding out an outage.
    ///
    /// # Errors
    /// The backend is unreachable (the engine asks again later).
    async fn generation(&self) -> Result<Option<crate::DataGeneration>> {
        Ok(None)
    }
}
