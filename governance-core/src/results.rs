//! The results (or partial results) of a pipeline, built from its blackboard.
//!
//! [`PipelineResults`] serializes to exactly the JSON the results had when they were a
//! `serde_json::Value`: fields are declared in the sorted order a `Value` object writes its
//! keys in, so ledger entries (whose hash covers the JSON) and HTTP answers are unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blackboard::{BlackboardSnapshot, ProposalStatus};
use crate::ids::{AgentId, HandoffId, ProposalId};
use crate::state_machine::PipelineStatus;

/// What a pipeline produced: the consensus, the solution and the state of the blackboard at
/// its end. For any status but COMPLETED the results are `partial` and carry a
/// `partial_report` summarising what the blackboard holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineResults {
    /// The consensus, if one was reached.
    pub consensus: Option<ResultConsensus>,
    /// An agent's work was handed off (it failed or was revoked) on the way.
    pub degraded: bool,
    /// Handoffs written during the run.
    pub handoffs: Vec<ResultHandoff>,
    /// `true` unless the pipeline COMPLETED.
    pub partial: bool,
    /// For partial results: a report built from what the blackboard holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_report: Option<PartialReport>,
    /// Partial work agents stored under a key (e.g. GAMMA's decomposition).
    pub partials: BTreeMap<String, Value>,
    /// The winning proposal, if there is a consensus.
    pub proposal: Option<WinningProposal>,
    /// Every proposal with its vote counts.
    pub proposals: Vec<ResultProposal>,
    /// The first solution's text.
    pub solution: Option<String>,
    /// How many solutions were written.
    pub solutions: usize,
}

/// The consensus in [`PipelineResults`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResultConsensus {
    /// The winning proposal.
    pub proposal_id: ProposalId,
    /// Who approved it.
    pub voters: Vec<AgentId>,
    /// Approving votes at the moment of the decision.
    pub votes: u32,
}

/// The winning proposal in [`PipelineResults`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WinningProposal {
    /// The proposal text.
    pub content: String,
    /// Its id.
    pub id: ProposalId,
    /// Its title.
    pub title: String,
}

/// One proposal in [`PipelineResults`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResultProposal {
    /// Approving votes.
    pub approvals: u32,
    /// Who wrote it.
    pub author: AgentId,
    /// Its id.
    pub id: ProposalId,
    /// Rejecting votes.
    pub rejections: u32,
    /// Its decision state.
    pub status: ProposalStatus,
    /// Its title.
    pub title: String,
}

/// One handoff in [`PipelineResults`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResultHandoff {
    /// Who took the work over, if anyone did.
    pub claimed_by: Option<AgentId>,
    /// The agent whose work was handed off.
    pub from: AgentId,
    /// Its id.
    pub id: HandoffId,
    /// Why.
    pub reason: String,
}

/// The partial report in [`PipelineResults`]: the JSON of a `Report` with `partial: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PartialReport {
    /// The complexity score of the pipeline's report, 0.0 without one.
    pub complexity: f64,
    /// One line per proposal.
    pub findings: Vec<String>,
    /// Always `true`.
    pub partial: bool,
    /// What the blackboard holds, in a sentence.
    pub summary: String,
}

/// Builds the results. For any status but COMPLETED the results are partial and carry a
/// partial report summarising what the blackboard holds.
#[must_use]
pub(crate) fn build(
    s: &BlackboardSnapshot,
    status: PipelineStatus,
    degraded: bool,
    complexity: f64,
) -> PipelineResults {
    let winner = s
        .consensus
        .as_ref()
        .and_then(|c| s.proposals.iter().find(|p| p.id == c.proposal_id));
    let partial = status != PipelineStatus::Completed;
    let partial_report = partial.then(|| {
            let open = s
                .proposals
                .iter()
                .filter(|p| p.status == ProposalStatus::Open)
                .count();
            let votes: usize = s.proposals.iter().map(|p| p.votes.len()).sum();
            let best = s
                .proposals
                .iter()
                .max_by_key(|p| p.approvals())
                .map(|p| p.title.clone());
            PartialReport {
                summary: format!(
                    "Partial report ({status}): {} proposals ({open} open), {votes} votes, consensus: {}, {} solutions{}.",
                    s.proposals.len(),
                    s.consensus
                        .as_ref()
                        .map_or("none".to_owned(), |c| c.proposal_id.to_string()),
                    s.solutions.len(),
                    best.map_or(String::new(), |b| format!("; most approved: {b}")),
                ),
                findings: s
                    .proposals
                    .iter()
                    .map(|p| format!("{} [{:?}] {}", p.id, p.status, p.title))
                    .collect(),
                complexity,
                partial: true,
            }
    });
    PipelineResults {
        consensus: s.consensus.as_ref().map(|c| ResultConsensus {
            proposal_id: c.proposal_id.clone(),
            voters: c.voters.clone(),
            votes: c.votes,
        }),
        degraded,
        handoffs: s
            .handoffs
            .iter()
            .map(|h| ResultHandoff {
                claimed_by: h.claimed_by.clone(),
                from: h.from.clone(),
                id: h.id.clone(),
                reason: h.reason.clone(),
            })
            .collect(),
        partial,
        partial_report,
        partials: s.partials.clone(),
        proposal: winner.map(|p| WinningProposal {
            content: p.content.clone(),
            id: p.id.clone(),
            title: p.title.clone(),
        }),
        proposals: s
            .proposals
            .iter()
            .map(|p| ResultProposal {
                approvals: p.approvals(),
                author: p.author.clone(),
                id: p.id.clone(),
                rejections: p.rejections(),
                status: p.status,
                title: p.title.clone(),
            })
            .collect(),
        solution: s.solutions.first().map(|x| x.content.clone()),
        solutions: s.solutions.len(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::blackboard::{Consensus, Handoff, Proposal, Solution, Vote};

    fn snapshot() -> BlackboardSnapshot {
        let alpha = AgentId::new("ALPHA").unwrap();
        let beta = AgentId::new("BETA").unwrap();
        let mut p = Proposal::new(
            ProposalId::new("ALPHA-1").unwrap(),
            alpha.clone(),
            "Edge cache",
            "Cache at the edge.",
        );
        p.votes.push(Vote {
            voter: beta.clone(),
            approve: true,
            score: 0.75,
            rationale: "sound".into(),
        });
        p.status = ProposalStatus::Accepted;
        BlackboardSnapshot {
            consensus: Some(Consensus {
                proposal_id: p.id.clone(),
                votes: 1,
                voters: vec![beta.clone()],
                decided_at: Utc::now(),
            }),
            proposals: vec![p.clone()],
            solutions: vec![Solution {
                agent: beta.clone(),
                proposal_id: Some(p.id.clone()),
                content: "Use a CDN.".into(),
                created_at: Utc::now(),
            }],
            handoffs: vec![Handoff {
                id: HandoffId::new("h-1").unwrap(),
                from: alpha,
                role: "ALPHA".into(),
                reason: "revoked".into(),
                pending: vec![],
                claimed_by: Some(beta),
                created_at: Utc::now(),
            }],
            partials: std::iter::once((
                "GAMMA/plan".to_owned(),
                serde_json::json!({"b": 1, "a": [2]}),
            ))
            .collect(),
        }
    }

    /// The ledger hashes the results' JSON: the typed results must write exactly what the
    /// `serde_json::Value` they replace wrote (keys sorted at every level).
    #[test]
    fn typed_results_write_the_same_json_as_the_value_they_replace() {
        for status in [PipelineStatus::Completed, PipelineStatus::Timeout] {
            let r = build(&snapshot(), status, true, 0.5);
            let typed = serde_json::to_string(&r).unwrap();
            let as_value = serde_json::to_string(&serde_json::to_value(&r).unwrap()).unwrap();
            assert_eq!(typed, as_value, "{status}");
            let back: PipelineResults = serde_json::from_str(&typed).unwrap();
            assert_eq!(back, r);
            assert_eq!(
                r.partial_report.is_some(),
                status != PipelineStatus::Completed
            );
            assert_eq!(typed.contains("\"partial_report\""), r.partial);
        }
        let done = build(&snapshot(), PipelineStatus::Completed, false, 0.0);
        assert_eq!(
            done.proposal.as_ref().map(|p| p.content.as_str()),
            Some("Cache at the edge.")
        );
        assert_eq!(done.proposals[0].approvals, 1);
        assert_eq!(done.solution.as_deref(), Some("Use a CDN."));
    }

    /// Results stored before they were typed (an old ledger entry, an old registry row) still
    /// read, and write back byte for byte.
    #[test]
    fn results_stored_as_json_before_read_and_write_back_unchanged() {
        let old = r#"{"consensus":{"proposal_id":"ALPHA-1","voters":["BETA"],"votes":1},"degraded":false,"handoffs":[{"claimed_by":null,"from":"ALPHA","id":"h-1","reason":"revoked"}],"partial":true,"partial_report":{"complexity":0.5,"findings":["ALPHA-1 [Open] T"],"partial":true,"summary":"Partial report"},"partials":{},"proposal":{"content":"c","id":"ALPHA-1","title":"T"},"proposals":[{"approvals":1,"author":"ALPHA","id":"ALPHA-1","rejections":0,"status":"OPEN","title":"T"}],"solution":null,"solutions":0}"#;
        let r: PipelineResults = serde_json::from_str(old).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), old);
    }
}
