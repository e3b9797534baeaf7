//! Fixtures shared by the blackboard checks ([`super::blackboard`], [`super::blackboard_races`]).

use std::sync::Arc;

use crate::blackboard::{Blackboard, Handoff, Proposal, Vote, VoteOutcome};
use crate::ids::{HandoffId, PipelineId, ProposalId};

use super::{agent, now_ms};

/// The blackboard under test.
pub(super) type Bb = Arc<dyn Blackboard>;

pub(super) fn proposal(id: &str, author: &str, title: &str) -> Proposal {
    let mut p = Proposal::new(
        ProposalId::new(id).expect("testkit: proposal id literal"),
        agent(author),
        title,
        format!("content of {id}"),
    );
    p.created_at = now_ms();
    p
}

pub(super) fn vote(voter: &str, approve: bool) -> Vote {
    Vote {
        voter: agent(voter),
        approve,
        score: if approve { 0.75 } else { 0.25 },
        rationale: format!("{voter} says {approve}"),
    }
}

pub(super) fn handoff(id: &str, from: &str) -> Handoff {
    Handoff {
        id: HandoffId::new(id).expect("testkit: handoff id literal"),
        from: agent(from),
        role: "research".into(),
        reason: "max_total_errors".into(),
        pending: vec!["finish proposal p1".into(), "answer BETA".into()],
        claimed_by: None,
        created_at: now_ms(),
    }
}

pub(super) fn pid(id: &str) -> ProposalId {
    ProposalId::new(id).expect("testkit: proposal id literal")
}

pub(super) async fn cast(
    bb: &Bb,
    p: &PipelineId,
    prop: &str,
    v: Vote,
    quorum: u32,
    check: &str,
) -> VoteOutcome {
    let quorum = crate::Quorum::new(quorum).expect("testkit: a quorum of at least 1");
    cast_rule(bb, p, prop, v, &crate::ConsensusRule::new(quorum), check).await
}

pub(super) async fn cast_rule(
    bb: &Bb,
    p: &PipelineId,
    prop: &str,
    v: Vote,
    rule: &crate::ConsensusRule,
    check: &str,
) -> VoteOutcome {
    bb.vote(p, &pid(prop), v, rule)
        .await
        .unwrap_or_else(|e| panic!("[blackboard::{check}] vote on {prop} failed: {e}"))
}
