//! The racing checks of the [`Blackboard`](crate::Blackboard) conformance suite: concurrent
//! votes, proposals raced to quorum and concurrent handoff claims.

use std::sync::Arc;

use crate::blackboard::ProposalStatus;

use super::blackboard_fixtures::{Bb, cast, handoff, pid, proposal, vote};
use super::{agent, fresh, join_all};

pub(super) async fn concurrent_distinct_voters(bb: &Bb) {
    const C: &str = "[blackboard::concurrent_distinct_voters]";
    for (quorum, expect_status) in [(100, ProposalStatus::Open), (5, ProposalStatus::Accepted)] {
        let p = fresh();
        bb.create_proposal(&p, proposal("race", "ALPHA", "race"))
            .await
            .expect("[blackboard::concurrent_distinct_voters] create");
        let handles = (0..16)
            .map(|i| {
                let (bb, p) = (Arc::clone(bb), p.clone());
                tokio::spawn(async move {
                    cast(
                        &bb,
                        &p,
                        "race",
                        vote(&format!("V{i}"), true),
                        quorum,
                        "concurrent_distinct_voters",
                    )
                    .await
                })
            })
            .collect();
        let outcomes = join_all(handles, C).await;
        assert!(
            outcomes.iter().all(|o| o.recorded),
            "{C} every distinct voter must be recorded"
        );
        let mut seen: Vec<u32> = outcomes.iter().map(|o| o.approvals).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=16).collect::<Vec<_>>(),
            "{C} each vote must see a distinct approval count (quorum {quorum})"
        );
        let winners: Vec<_> = outcomes
            .iter()
            .filter_map(|o| o.consensus.as_ref())
            .collect();
        let stored = bb
            .proposal(&p, &pid("race"))
            .await
            .expect("[blackboard::concurrent_distinct_voters] get");
        assert_eq!(
            stored.approvals(),
            16,
            "{C} approvals after 16 concurrent votes (quorum {quorum})"
        );
        assert_eq!(stored.status, expect_status, "{C} status (quorum {quorum})");
        if quorum == 5 {
            assert_eq!(
                winners.len(),
                1,
                "{C} exactly one vote must return the consensus"
            );
            assert_eq!(
                winners[0].votes, 5,
                "{C} the consensus is decided at exactly quorum approvals"
            );
        } else {
            assert!(winners.is_empty(), "{C} no consensus below quorum");
        }
    }
}

pub(super) async fn concurrent_same_voter(bb: &Bb) {
    const C: &str = "[blackboard::concurrent_same_voter]";
    let p = fresh();
    bb.create_proposal(&p, proposal("dup", "ALPHA", "dup"))
        .await
        .expect("[blackboard::concurrent_same_voter] create");
    let handles = (0..16)
        .map(|i| {
            let (bb, p) = (Arc::clone(bb), p.clone());
            tokio::spawn(async move {
                cast(
                    &bb,
                    &p,
                    "dup",
                    vote("BETA", i % 2 == 0),
                    1,
                    "concurrent_same_voter",
                )
                .await
            })
        })
        .collect();
    let outcomes = join_all(handles, C).await;
    let recorded = outcomes.iter().filter(|o| o.recorded).count();
    assert_eq!(
        recorded, 1,
        "{C} 16 concurrent votes by one voter must record exactly one"
    );
    let consensus = outcomes.iter().filter(|o| o.consensus.is_some()).count();
    let stored = bb
        .proposal(&p, &pid("dup"))
        .await
        .expect("[blackboard::concurrent_same_voter] get");
    assert_eq!(stored.votes.len(), 1, "{C} stored votes");
    let expect = usize::from(stored.votes[0].approve);
    assert_eq!(
        consensus, expect,
        "{C} consensus returned iff the one recorded vote approved"
    );
}

pub(super) async fn raced_proposals(bb: &Bb, round: u32) {
    const C: &str = "[blackboard::raced_proposals]";
    let p = fresh();
    for id in ["pa", "pb"] {
        bb.create_proposal(&p, proposal(id, "ALPHA", id))
            .await
            .expect("[blackboard::raced_proposals] create");
    }
    let handles = (0..16)
        .map(|i| {
            let (bb, p) = (Arc::clone(bb), p.clone());
            let target = if i % 2 == 0 { "pa" } else { "pb" };
            tokio::spawn(async move {
                cast(
                    &bb,
                    &p,
                    target,
                    vote(&format!("V{i}"), true),
                    8,
                    "raced_proposals",
                )
                .await
            })
        })
        .collect();
    let outcomes = join_all(handles, C).await;
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.consensus.clone())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{C} round {round}: exactly one vote must return the consensus, got {winners:?}"
    );
    let winner = winners[0].proposal_id.clone();
    let loser = if winner.as_str() == "pa" {
        pid("pb")
    } else {
        pid("pa")
    };
    let w = bb
        .proposal(&p, &winner)
        .await
        .expect("[blackboard::raced_proposals] get winner");
    let l = bb
        .proposal(&p, &loser)
        .await
        .expect("[blackboard::raced_proposals] get loser");
    assert_eq!(
        w.status,
        ProposalStatus::Accepted,
        "{C} round {round}: winner status"
    );
    assert_eq!(
        l.status,
        ProposalStatus::Superseded,
        "{C} round {round}: the other proposal must be SUPERSEDED"
    );
    assert_eq!(
        (w.approvals(), l.approvals()),
        (8, 8),
        "{C} round {round}: approvals"
    );
    let stored = bb
        .consensus(&p)
        .await
        .expect("[blackboard::raced_proposals] consensus()");
    assert_eq!(
        stored.map(|c| c.proposal_id),
        Some(winner),
        "{C} round {round}: consensus() names the winner"
    );
}

pub(super) async fn concurrent_claims(bb: &Bb) {
    const C: &str = "[blackboard::concurrent_claims]";
    let p = fresh();
    let h = handoff("race", "ALPHA");
    bb.create_handoff(&p, h.clone())
        .await
        .expect("[blackboard::concurrent_claims] create");
    let handles = (0..16)
        .map(|i| {
            let (bb, p, id) = (Arc::clone(bb), p.clone(), h.id.clone());
            tokio::spawn(async move {
                let who = agent(format!("C{i}"));
                let won = bb.claim_handoff(&p, &id, &who).await.unwrap_or_else(|e| {
                    panic!("[blackboard::concurrent_claims] claim failed: {e}")
                });
                (who, won)
            })
        })
        .collect();
    let results = join_all(handles, C).await;
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, won)| *won)
        .map(|(who, _)| who.clone())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{C} exactly one of 16 racing claimers must win, got {winners:?}"
    );
    let stored = bb
        .handoffs(&p)
        .await
        .expect("[blackboard::concurrent_claims] list");
    assert_eq!(
        stored[0].claimed_by.as_ref(),
        Some(&winners[0]),
        "{C} claimed_by names the winner"
    );
}
