//! The required-voter checks of the [`Blackboard`](crate::Blackboard) conformance suite: the
//! [`ConsensusRule`]'s required voters and mediators, applied atomically.

use std::sync::Arc;

use crate::blackboard::ProposalStatus;
use crate::quorum::{ConsensusRule, Quorum};

use super::blackboard_fixtures::{Bb, cast_rule, pid, proposal, vote};
use super::{agent, fresh, join_all};

const C: &str = "[blackboard::required_voters]";

fn beta_required(quorum: u32) -> ConsensusRule {
    ConsensusRule::new(Quorum::new(quorum).expect("testkit: quorum literal"))
        .with_required(vec![agent("BETA")])
}

/// Every required-voter check, each on its own pipeline.
pub(super) async fn required_voters(bb: &Bb) {
    quorum_without_the_required_voter(bb).await;
    required_rejection_blocks(bb).await;
    mediator_stands_in(bb).await;
    for round in 0..3 {
        racing_voters_with_a_required_one(bb, round).await;
    }
}

/// ALPHA and CRITIC make the quorum: no consensus until BETA approves; then exactly that vote
/// decides it, with every approver in the consensus.
async fn quorum_without_the_required_voter(bb: &Bb) {
    let p = fresh();
    bb.create_proposal(&p, proposal("p1", "ALPHA", "plan"))
        .await
        .expect("[blackboard::required_voters] create");
    let rule = beta_required(2);
    let check = "required_voters";
    let a = cast_rule(bb, &p, "p1", vote("ALPHA", true), &rule, check).await;
    let c = cast_rule(bb, &p, "p1", vote("CRITIC", true), &rule, check).await;
    assert!(
        a.consensus.is_none() && c.consensus.is_none(),
        "{C} quorum without the required voter decided a consensus"
    );
    assert_eq!(c.approvals, 2, "{C} both approvals are recorded");
    assert_eq!(
        c.status,
        ProposalStatus::Open,
        "{C} the proposal stays open without the required voter"
    );
    assert!(
        bb.consensus(&p).await.expect("consensus").is_none(),
        "{C} the board holds no consensus without the required voter"
    );
    let b = cast_rule(bb, &p, "p1", vote("BETA", true), &rule, check).await;
    let cons = b
        .consensus
        .unwrap_or_else(|| panic!("{C} the required voter's approval did not decide"));
    assert_eq!(cons.proposal_id, pid("p1"), "{C} consensus proposal");
    assert_eq!(cons.votes, 3, "{C} approvals at the decision");
    assert_eq!(b.status, ProposalStatus::Accepted, "{C} status");
    assert_eq!(
        bb.consensus(&p).await.expect("consensus"),
        Some(cons),
        "{C} the stored consensus is the one returned"
    );
}

/// BETA rejects: ALPHA and CRITIC approving still decide nothing.
async fn required_rejection_blocks(bb: &Bb) {
    let p = fresh();
    bb.create_proposal(&p, proposal("p1", "ALPHA", "plan"))
        .await
        .expect("[blackboard::required_voters] create");
    let rule = beta_required(2);
    let check = "required_voters";
    let b = cast_rule(bb, &p, "p1", vote("BETA", false), &rule, check).await;
    assert!(
        b.recorded && b.consensus.is_none(),
        "{C} rejection recorded"
    );
    for voter in ["ALPHA", "CRITIC", "AUDITOR"] {
        let o = cast_rule(bb, &p, "p1", vote(voter, true), &rule, check).await;
        assert!(
            o.consensus.is_none(),
            "{C} {voter}'s approval decided a consensus the required voter rejected"
        );
    }
    let stored = bb.proposal(&p, &pid("p1")).await.expect("get");
    assert_eq!(stored.approvals(), 3, "{C} approvals recorded");
    assert_eq!(
        stored.status,
        ProposalStatus::Open,
        "{C} blocked, not decided"
    );
    assert!(bb.consensus(&p).await.expect("consensus").is_none());
}

/// A mediator's approval stands in for the required voter's (even after its rejection).
async fn mediator_stands_in(bb: &Bb) {
    let p = fresh();
    bb.create_proposal(&p, proposal("p1", "ALPHA", "plan"))
        .await
        .expect("[blackboard::required_voters] create");
    let rule = beta_required(2).with_mediators(vec![agent("GAMMA")]);
    let check = "required_voters";
    cast_rule(bb, &p, "p1", vote("BETA", false), &rule, check).await;
    let a = cast_rule(bb, &p, "p1", vote("ALPHA", true), &rule, check).await;
    assert!(a.consensus.is_none(), "{C} ALPHA alone below quorum");
    let g = cast_rule(bb, &p, "p1", vote("GAMMA", true), &rule, check).await;
    assert!(
        g.consensus.is_some(),
        "{C} the mediator's approval did not stand in for the required voter"
    );
}

/// 12 voters race (BETA among them, quorum 3): exactly one vote decides the consensus, and
/// it is not decided before BETA's approval is on the board.
async fn racing_voters_with_a_required_one(bb: &Bb, round: u32) {
    let p = fresh();
    bb.create_proposal(&p, proposal("race", "ALPHA", "race"))
        .await
        .expect("[blackboard::required_voters] create");
    let rule = beta_required(3);
    let handles = (0..12)
        .map(|i| {
            let (bb, p, rule) = (Arc::clone(bb), p.clone(), rule.clone());
            // BETA's place among the racers changes with the round
            let voter = if i == (round * 5) % 12 {
                "BETA".to_owned()
            } else {
                format!("V{i}")
            };
            tokio::spawn(async move {
                cast_rule(
                    &bb,
                    &p,
                    "race",
                    vote(&voter, true),
                    &rule,
                    "required_voters",
                )
                .await
            })
        })
        .collect();
    let outcomes = join_all(handles, C).await;
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.consensus.as_ref())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{C} exactly one consensus (round {round})"
    );
    assert!(
        winners[0].voters.contains(&agent("BETA")),
        "{C} the consensus was decided without the required voter: {:?}",
        winners[0].voters
    );
    assert!(
        winners[0].votes >= 3,
        "{C} the consensus has the quorum: {}",
        winners[0].votes
    );
    let stored = bb.proposal(&p, &pid("race")).await.expect("get");
    assert_eq!(stored.approvals(), 12, "{C} every racer recorded");
    assert_eq!(stored.status, ProposalStatus::Accepted, "{C} status");
}
