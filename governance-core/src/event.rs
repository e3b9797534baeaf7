//! Typed events. One JSON shape for the WebSocket, SSE, the ledger and the CLI:
//! `{"type": "...", "seq": n, "ts": "...", "data": {"pipeline_id": ..., ...}}`.
//!
//! `seq` is per pipeline, starts at 1 and has no gaps: a client that reconnects with the last
//! `seq` it saw gets exactly what it missed.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, HandoffId, PipelineId, ProposalId};
use crate::response_format::ResponseFormatKind;
use crate::state_machine::PipelineStatus;

/// Why a GAMMA mediator was spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GammaReason {
    /// No progress for `GAMMA_STUCK_THRESHOLD` seconds.
    Stuck,
    /// `GAMMA_CONFLICT_THRESHOLD` or more unresolved proposals.
    Conflict,
    /// The task's complexity score is above `GAMMA_COMPLEXITY_THRESHOLD`.
    Complexity,
}

impl GammaReason {
    /// `STUCK`, `CONFLICT` or `COMPLEXITY`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stuck => "STUCK",
            Self::Conflict => "CONFLICT",
            Self::Complexity => "COMPLEXITY",
        }
    }
}

impl std::fmt::Display for GammaReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of an event, tagged by `type` with its fields under `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The pipeline changed status.
    StatusChanged {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The new status.
        status: PipelineStatus,
        /// The status before, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<PipelineStatus>,
        /// Why (for failures, timeouts and stops).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The orchestration stage began.
    OrchestrationStarted {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The model requested.
        model: String,
        /// `local` or `openrouter` (or a custom client's name).
        mode: String,
        /// Roles started (`ALPHA`, `BETA`, custom roles).
        agents: Vec<String>,
    },
    /// The pipeline was picked up again after its process stopped (a crash, a shutdown, or a
    /// dead node's pipeline taken over): agents that were running restart from the blackboard.
    /// Their `agent_spawned` and the `orchestration_started` are in the ledger already and are
    /// not repeated.
    Resumed {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The status it resumed in.
        status: PipelineStatus,
    },
    /// The coordination backend (blackboard, bus) lost data (a Redis restarted empty or from an
    /// older snapshot) and the pipeline's blackboard and bus were rebuilt from the durable
    /// store: its last checkpoint plus the proposals, votes and handoffs of the ledger.
    CoordinationRebuilt {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The `seq` of the checkpoint the blackboard was restored from (0: none).
        checkpoint_seq: u64,
        /// Proposals on the rebuilt blackboard.
        proposals: u32,
        /// Votes on the rebuilt blackboard.
        votes: u32,
        /// Whether the rebuilt blackboard holds the consensus.
        consensus: bool,
        /// Solutions on the rebuilt blackboard.
        solutions: u32,
        /// Handoffs on the rebuilt blackboard.
        handoffs: u32,
        /// Messages put back on the bus log.
        messages: u32,
    },
    /// An agent was started (once per agent and pipeline: a restart after a resume or a
    /// transient backend error is not a new spawn).
    AgentSpawned {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The agent.
        agent_id: AgentId,
        /// Its role.
        role: String,
        /// Where it runs (`tokio` in-process, or a worker name).
        runtime: String,
    },
    /// An agent sent a message over the bus.
    AgentMessage {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// Sender.
        from: AgentId,
        /// Recipient (`*` for everyone).
        to: String,
        /// Message text.
        content: String,
    },
    /// A GAMMA mediator was spawned.
    GammaSpawned {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// Why.
        reason: GammaReason,
        /// The GAMMA agent's id.
        agent_id: AgentId,
    },
    /// A proposal was written to the blackboard.
    ProposalCreated {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The proposal.
        proposal_id: ProposalId,
        /// Its author.
        author: AgentId,
        /// Its title.
        title: String,
        /// Its text (kept so the blackboard can be rebuilt from the ledger).
        content: String,
    },
    /// A vote was recorded.
    VoteCast {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The proposal voted on.
        proposal_id: ProposalId,
        /// The voter.
        voter: AgentId,
        /// Approve or reject.
        approve: bool,
        /// Approvals so far.
        approvals: u32,
        /// Rejections so far.
        rejections: u32,
        /// The voter's score.
        score: f64,
        /// The voter's rationale.
        rationale: String,
        /// The quorum the vote was cast at.
        quorum: u32,
    },
    /// A proposal reached consensus.
    ConsensusReached {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The winning proposal.
        proposal_id: ProposalId,
        /// Approving votes.
        votes: u32,
    },
    /// An LLM call finished (successfully or not). Never contains prompt text.
    LlmCall {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The calling agent.
        agent_id: AgentId,
        /// The model actually used (as reported by the provider).
        model: String,
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Completion tokens.
        completion_tokens: u32,
        /// Cost in USD when the provider reports it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        /// Wall-clock latency in milliseconds.
        latency_ms: u64,
        /// Error kind when the call failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The answer format used (`json_schema`, `json_object`, `text`): the one asked for,
        /// or the one the client fell back to when the provider refused it. Absent in events
        /// written before formats were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_format: Option<ResponseFormatKind>,
        /// The format asked for, when the provider refused it and the client fell back to
        /// `response_format`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format_fallback_from: Option<ResponseFormatKind>,
    },
    /// An agent was revoked by its error budget.
    AgentRevoked {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The agent.
        agent_id: AgentId,
        /// Which limit was passed.
        reason: String,
    },
    /// A handoff was written for a revoked or failed agent.
    HandoffCreated {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The handoff.
        handoff_id: HandoffId,
        /// The agent that handed off.
        from: AgentId,
        /// Who picked it up, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claimed_by: Option<AgentId>,
    },
    /// A checkpoint was stored.
    CheckpointCreated {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The status captured.
        status: PipelineStatus,
        /// Whether it is the final checkpoint.
        #[serde(rename = "final")]
        is_final: bool,
    },
    /// An error occurred (agent or pipeline level).
    Error {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The agent, when the error is an agent's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<AgentId>,
        /// [`crate::ErrorKind`] name.
        kind: String,
        /// Message (never contains a secret).
        message: String,
    },
    /// Consensus and solution are in and the pipeline waits for a human decision
    /// (`AWAITING_APPROVAL`): what is to be approved.
    ApprovalRequested {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// Revision rounds run before this one (0 for the first outcome).
        revision: u32,
        /// The accepted proposal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proposal_id: Option<ProposalId>,
        /// Its title.
        title: String,
        /// Its text.
        proposal: String,
        /// The solution built from it.
        solution: String,
        /// When the pipeline ends TIMEOUT without a decision (`GOVERNANCE_APPROVAL_TIMEOUT`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// A human decided on a pipeline at `AWAITING_APPROVAL` (the `status_changed` that
    /// follows says what it led to: COMPLETED, a revision round, or FAILED).
    ApprovalDecided {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// The revision the decision is about (as in its `approval_requested`).
        revision: u32,
        /// The proposal decided on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proposal_id: Option<ProposalId>,
        /// Approved (`true`) or rejected.
        approve: bool,
        /// Who decided.
        by: String,
        /// When the decision was made (on the node that took it).
        decided_at: chrono::DateTime<chrono::Utc>,
        /// The reviewer's feedback (ALPHA's reviewer feedback on a rejection).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        feedback: Option<String>,
        /// Identifies the request, so a node that forwarded it can tell whether its decision
        /// is the one that won.
        decision_id: String,
    },
    /// The pipeline is a fork: it starts from the state `source` had at its event `seq` (the
    /// first event of a fork's ledger; the source's events are not copied, this is the link).
    ForkedFrom {
        /// Pipeline (the fork).
        pipeline_id: PipelineId,
        /// The pipeline it was forked from.
        source: PipelineId,
        /// The source's event the fork starts after (inclusive).
        seq: u64,
        /// The source's status at that event, which the fork starts in.
        status: PipelineStatus,
    },
    /// The orchestration finished (any terminal status).
    OrchestrationComplete {
        /// Pipeline.
        pipeline_id: PipelineId,
        /// Final status.
        status: PipelineStatus,
        /// Results (or partial results).
        results: crate::results::PipelineResults,
    },
}

impl EventKind {
    /// The `type` string of this event.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::StatusChanged { .. } => "status_changed",
            Self::OrchestrationStarted { .. } => "orchestration_started",
            Self::Resumed { .. } => "resumed",
            Self::CoordinationRebuilt { .. } => "coordination_rebuilt",
            Self::AgentSpawned { .. } => "agent_spawned",
            Self::AgentMessage { .. } => "agent_message",
            Self::GammaSpawned { .. } => "gamma_spawned",
            Self::ProposalCreated { .. } => "proposal_created",
            Self::VoteCast { .. } => "vote_cast",
            Self::ConsensusReached { .. } => "consensus_reached",
            Self::LlmCall { .. } => "llm_call",
            Self::AgentRevoked { .. } => "agent_revoked",
            Self::HandoffCreated { .. } => "handoff_created",
            Self::CheckpointCreated { .. } => "checkpoint_created",
            Self::Error { .. } => "error",
            Self::OrchestrationComplete { .. } => "orchestration_complete",
            Self::ApprovalRequested { .. } => "approval_requested",
            Self::ApprovalDecided { .. } => "approval_decided",
            Self::ForkedFrom { .. } => "forked_from",
        }
    }

    /// The pipeline this event belongs to.
    #[must_use]
    pub fn pipeline_id(&self) -> &PipelineId {
        match self {
            Self::StatusChanged { pipeline_id, .. }
            | Self::OrchestrationStarted { pipeline_id, .. }
            | Self::Resumed { pipeline_id, .. }
            | Self::CoordinationRebuilt { pipeline_id, .. }
            | Self::AgentSpawned { pipeline_id, .. }
            | Self::AgentMessage { pipeline_id, .. }
            | Self::GammaSpawned { pipeline_id, .. }
            | Self::ProposalCreated { pipeline_id, .. }
            | Self::VoteCast { pipeline_id, .. }
            | Self::ConsensusReached { pipeline_id, .. }
            | Self::LlmCall { pipeline_id, .. }
            | Self::AgentRevoked { pipeline_id, .. }
            | Self::HandoffCreated { pipeline_id, .. }
            | Self::CheckpointCreated { pipeline_id, .. }
            | Self::Error { pipeline_id, .. }
            | Self::OrchestrationComplete { pipeline_id, .. }
            | Self::ApprovalRequested { pipeline_id, .. }
            | Self::ApprovalDecided { pipeline_id, .. }
            | Self::ForkedFrom { pipeline_id, .. } => pipeline_id,
        }
    }

    /// The agent this event concerns, if any.
    #[must_use]
    pub fn agent_id(&self) -> Option<&AgentId> {
        match self {
            Self::AgentSpawned { agent_id, .. }
            | Self::GammaSpawned { agent_id, .. }
            | Self::LlmCall { agent_id, .. }
            | Self::AgentRevoked { agent_id, .. } => Some(agent_id),
            Self::AgentMessage { from, .. } | Self::HandoffCreated { from, .. } => Some(from),
            Self::ProposalCreated { author, .. } => Some(author),
            Self::VoteCast { voter, .. } => Some(voter),
            Self::Error { agent_id, .. } => agent_id.as_ref(),
            _ => None,
        }
    }
}

/// One event with its per-pipeline sequence number and timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-pipeline, gap-free sequence number starting at 1.
    pub seq: u64,
    /// When it happened (RFC 3339, UTC).
    pub ts: chrono::DateTime<chrono::Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The pipeline of this event.
    #[must_use]
    pub fn pipeline_id(&self) -> &PipelineId {
        self.kind.pipeline_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_documented_shape() {
        let ev = Event {
            seq: 7,
            ts: chrono::DateTime::parse_from_rfc3339("2026-01-24T10:00:00Z")
                .unwrap()
                .into(),
            kind: EventKind::GammaSpawned {
                pipeline_id: PipelineId::new("p1").unwrap(),
                reason: GammaReason::Complexity,
                agent_id: AgentId::new("GAMMA").unwrap(),
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "gamma_spawned", "seq": 7, "ts": "2026-01-24T10:00:00Z",
                "data": {"pipeline_id": "p1", "reason": "COMPLEXITY", "agent_id": "GAMMA"}})
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.kind.type_name(), "gamma_spawned");
    }
}
