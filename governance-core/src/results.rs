//! The results (or partial results) of a pipeline, built from its blackboard.

use serde_json::{Value, json};

use crate::blackboard::{BlackboardSnapshot, ProposalStatus};
use crate::state_machine::PipelineStatus;
use crate::store::Report;

/// Builds the results JSON. For any status but COMPLETED the results are partial and carry a
/// partial report summarising what the blackboard holds.
#[must_use]
pub fn build(
    s: &BlackboardSnapshot,
    status: PipelineStatus,
    degraded: bool,
    report: Option<&Report>,
) -> Value {
    let proposals: Vec<Value> = s
        .proposals
        .iter()
        .map(|p| json!({"id": p.id, "author": p.author, "title": p.title, "status": p.status, "approvals": p.approvals(), "rejections": p.rejections()}))
        .collect();
    let winner = s
        .consensus
        .as_ref()
        .and_then(|c| s.proposals.iter().find(|p| p.id == c.proposal_id));
    let partial = status != PipelineStatus::Completed;
    let mut v = json!({
        "partial": partial,
        "degraded": degraded,
        "consensus": s.consensus.as_ref().map(|c| json!({"proposal_id": c.proposal_id, "votes": c.votes, "voters": c.voters})),
        "proposal": winner.map(|p| json!({"id": p.id, "title": p.title, "content": p.content})),
        "solution": s.solutions.first().map(|x| x.content.clone()),
        "solutions": s.solutions.len(),
        "proposals": proposals,
        "handoffs": s.handoffs.iter().map(|h| json!({"id": h.id, "from": h.from, "claimed_by": h.claimed_by, "reason": h.reason})).collect::<Vec<_>>(),
        "partials": s.partials,
    });
    if partial {
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
        let partial_report = Report {
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
            complexity: report.map_or(0.0, |r| r.complexity),
            partial: true,
        };
        v["partial_report"] = serde_json::to_value(partial_report).unwrap_or(Value::Null);
    }
    v
}
