//! The [`Blackboard`] conformance suite.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::blackboard::{Blackboard, BlackboardSnapshot, ProposalStatus, Solution};
use crate::error::ErrorKind;
use crate::ids::{AgentId, HandoffId};

use super::blackboard_fixtures::{Bb, cast, handoff, pid, proposal, vote};
use super::blackboard_races::{
    concurrent_claims, concurrent_distinct_voters, concurrent_same_voter, raced_proposals,
};
use super::blackboard_required::required_voters;
use super::blackboard_snapshot::snapshot_restore_clear;
use super::{agent, fresh, now_ms};

/// Runs every check of the [`Blackboard`] contract against `bb`; panics naming the failed check.
///
/// Checks: empty pipelines and `NotFound` for unknown ids; `create_proposal` idempotence and
/// `Conflict` for another author; the consensus rule (ACCEPTED, SUPERSEDED, REJECTED, duplicate
/// voters, votes on decided proposals); 16 concurrent distinct voters (exact counts, exactly one
/// consensus); 16 concurrent votes by the same voter (exactly one recorded); two proposals raced
/// to quorum (exactly one consensus, the other SUPERSEDED); required voters and mediators of
/// the [`ConsensusRule`](crate::ConsensusRule) (quorum without the required voter is no
/// consensus, its approval is, its rejection blocks, a mediator stands in, many racing voters
/// decide exactly one consensus); solutions, partials, handoffs and
/// 16 racing claimers (exactly one wins); snapshot/restore/clear; isolation between pipelines.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn blackboard_suite(bb: Arc<dyn Blackboard>) {
    bb.ping().await.expect("[blackboard::ping] ping failed");
    empty_pipeline(&bb).await;
    create_proposal_is_idempotent(&bb).await;
    consensus_rule(&bb).await;
    concurrent_distinct_voters(&bb).await;
    concurrent_same_voter(&bb).await;
    for round in 0..5 {
        raced_proposals(&bb, round).await;
    }
    required_voters(&bb).await;
    solutions_and_partials(&bb).await;
    handoffs(&bb).await;
    concurrent_claims(&bb).await;
    snapshot_restore_clear(&bb).await;
    pipelines_are_isolated(&bb).await;
}

async fn empty_pipeline(bb: &Bb) {
    const C: &str = "[blackboard::empty_pipeline]";
    let p = fresh();
    let snap = bb
        .snapshot(&p)
        .await
        .expect("[blackboard::empty_pipeline] snapshot");
    assert_eq!(
        snap,
        BlackboardSnapshot::default(),
        "{C} snapshot of a new pipeline is not empty"
    );
    assert!(
        bb.proposals(&p)
            .await
            .expect("[blackboard::empty_pipeline] proposals")
            .is_empty(),
        "{C} proposals not empty"
    );
    assert!(
        bb.handoffs(&p)
            .await
            .expect("[blackboard::empty_pipeline] handoffs")
            .is_empty(),
        "{C} handoffs not empty"
    );
    assert_eq!(
        bb.consensus(&p)
            .await
            .expect("[blackboard::empty_pipeline] consensus"),
        None,
        "{C} consensus on a new pipeline"
    );
    let e = bb
        .proposal(&p, &pid("nope"))
        .await
        .expect_err("[blackboard::empty_pipeline] proposal(unknown) must fail");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{C} proposal(unknown): {e}");
    let e = bb
        .vote(
            &p,
            &pid("nope"),
            vote("BETA", true),
            &crate::ConsensusRule::new(crate::Quorum::LONE),
        )
        .await
        .expect_err("[blackboard::empty_pipeline] vote(unknown) must fail");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{C} vote(unknown): {e}");
    let h = HandoffId::new("nope").expect("testkit: handoff id literal");
    let e = bb
        .claim_handoff(&p, &h, &agent("GAMMA"))
        .await
        .expect_err("[blackboard::empty_pipeline] claim_handoff(unknown) must fail");
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "{C} claim_handoff(unknown): {e}"
    );
}

async fn create_proposal_is_idempotent(bb: &Bb) {
    const C: &str = "[blackboard::create_proposal]";
    let p = fresh();
    let first = proposal("p1", "ALPHA", "first");
    let stored = bb
        .create_proposal(&p, first.clone())
        .await
        .expect("[blackboard::create_proposal] create");
    assert_eq!(
        stored, first,
        "{C} create_proposal must return the stored proposal"
    );
    assert_eq!(
        bb.proposal(&p, &first.id)
            .await
            .expect("[blackboard::create_proposal] get"),
        first,
        "{C} proposal() differs from what was created"
    );

    let retry = proposal("p1", "ALPHA", "retried with another title");
    let again = bb
        .create_proposal(&p, retry)
        .await
        .expect("[blackboard::create_proposal] same id + same author must be idempotent");
    assert_eq!(
        again, first,
        "{C} an idempotent create must return the originally stored proposal"
    );

    let e = bb
        .create_proposal(&p, proposal("p1", "BETA", "hijack"))
        .await
        .expect_err("[blackboard::create_proposal] same id + other author must fail");
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "{C} same id + other author: {e}"
    );

    let second = proposal("p2", "ALPHA", "second");
    bb.create_proposal(&p, second.clone())
        .await
        .expect("[blackboard::create_proposal] create p2");
    let all = bb
        .proposals(&p)
        .await
        .expect("[blackboard::create_proposal] proposals");
    assert_eq!(
        all,
        vec![first, second],
        "{C} proposals() must hold each proposal once, in creation order"
    );
}

async fn consensus_rule(bb: &Bb) {
    const C: &str = "[blackboard::consensus_rule]";
    let ck = "consensus_rule";
    let p = fresh();
    for id in ["p1", "p2", "p3"] {
        bb.create_proposal(&p, proposal(id, "ALPHA", id))
            .await
            .expect("[blackboard::consensus_rule] create");
    }
    let o = cast(bb, &p, "p1", vote("A", true), 2, ck).await;
    assert!(
        o.recorded && o.approvals == 1 && o.rejections == 0,
        "{C} first approval: {o:?}"
    );
    assert_eq!(
        (o.status, &o.consensus),
        (ProposalStatus::Open, &None),
        "{C} one approval of two must stay OPEN"
    );

    let o = cast(bb, &p, "p1", vote("A", false), 2, ck).await;
    assert!(
        !o.recorded,
        "{C} a second vote by the same voter must return recorded:false: {o:?}"
    );
    assert_eq!(
        (o.approvals, o.rejections, o.status),
        (1, 0, ProposalStatus::Open),
        "{C} a duplicate vote must change nothing"
    );
    assert!(
        o.consensus.is_none(),
        "{C} a duplicate vote returned a consensus"
    );

    let o = cast(bb, &p, "p1", vote("B", true), 2, ck).await;
    assert!(o.recorded && o.approvals == 2, "{C} quorum approval: {o:?}");
    assert_eq!(
        o.status,
        ProposalStatus::Accepted,
        "{C} quorum approvals must make the first proposal ACCEPTED"
    );
    let cons = o
        .consensus
        .expect("[blackboard::consensus_rule] the deciding vote must return the consensus");
    assert_eq!(
        (cons.proposal_id.as_str(), cons.votes),
        ("p1", 2),
        "{C} consensus content: {cons:?}"
    );
    let voters: BTreeSet<_> = cons.voters.iter().map(AgentId::as_str).collect();
    assert_eq!(voters, BTreeSet::from(["A", "B"]), "{C} consensus voters");
    let stored = bb
        .consensus(&p)
        .await
        .expect("[blackboard::consensus_rule] consensus()");
    assert_eq!(
        stored.as_ref(),
        Some(&cons),
        "{C} consensus() must return what the deciding vote returned"
    );

    cast(bb, &p, "p2", vote("A", true), 2, ck).await;
    let o = cast(bb, &p, "p2", vote("B", true), 2, ck).await;
    assert_eq!(
        o.status,
        ProposalStatus::Superseded,
        "{C} quorum after an earlier consensus must be SUPERSEDED"
    );
    assert!(
        o.consensus.is_none(),
        "{C} a superseded proposal returned a consensus"
    );

    cast(bb, &p, "p3", vote("A", false), 2, ck).await;
    let o = cast(bb, &p, "p3", vote("B", false), 2, ck).await;
    assert_eq!(
        (o.status, o.rejections),
        (ProposalStatus::Rejected, 2),
        "{C} quorum rejections must make it REJECTED"
    );
    let o = cast(bb, &p, "p3", vote("C", true), 2, ck).await;
    assert!(
        o.recorded && o.approvals == 1,
        "{C} votes on a decided proposal are still recorded: {o:?}"
    );
    assert_eq!(
        o.status,
        ProposalStatus::Rejected,
        "{C} a vote must not change a decided proposal"
    );

    let o = cast(bb, &p, "p1", vote("C", true), 2, ck).await;
    assert!(
        o.recorded
            && o.approvals == 3
            && o.status == ProposalStatus::Accepted
            && o.consensus.is_none(),
        "{C} vote after acceptance: {o:?}"
    );
    let after = bb
        .consensus(&p)
        .await
        .expect("[blackboard::consensus_rule] consensus()");
    assert_eq!(
        after,
        Some(cons),
        "{C} the consensus must not change after it is decided"
    );

    let p1 = bb
        .proposal(&p, &pid("p1"))
        .await
        .expect("[blackboard::consensus_rule] get p1");
    let order: Vec<_> = p1.votes.iter().map(|v| v.voter.as_str()).collect();
    assert_eq!(
        order,
        ["A", "B", "C"],
        "{C} votes must be stored once per voter, in recorded order"
    );
    assert_eq!(
        p1.votes[0],
        vote("A", true),
        "{C} a stored vote differs from the vote cast"
    );
    let snap = bb
        .snapshot(&p)
        .await
        .expect("[blackboard::consensus_rule] snapshot");
    assert_eq!(snap.unresolved(), 0, "{C} all three proposals are decided");
}

async fn solutions_and_partials(bb: &Bb) {
    const C: &str = "[blackboard::solutions_and_partials]";
    let p = fresh();
    let s1 = Solution {
        agent: agent("BETA"),
        proposal_id: Some(pid("p1")),
        content: "one".into(),
        created_at: now_ms(),
    };
    let s2 = Solution {
        agent: agent("GAMMA"),
        proposal_id: None,
        content: "two".into(),
        created_at: now_ms(),
    };
    bb.add_solution(&p, s1.clone())
        .await
        .expect("[blackboard::solutions_and_partials] add s1");
    bb.add_solution(&p, s2.clone())
        .await
        .expect("[blackboard::solutions_and_partials] add s2");
    bb.put_partial(&p, "ALPHA/draft", serde_json::json!({"n": 1}))
        .await
        .expect("[blackboard::solutions_and_partials] put 1");
    bb.put_partial(&p, "ALPHA/draft", serde_json::json!({"n": 2, "s": "last"}))
        .await
        .expect("[blackboard::solutions_and_partials] put 2");
    bb.put_partial(&p, "BETA/eval", serde_json::json!([1, 2, 3]))
        .await
        .expect("[blackboard::solutions_and_partials] put 3");
    let snap = bb
        .snapshot(&p)
        .await
        .expect("[blackboard::solutions_and_partials] snapshot");
    assert_eq!(
        snap.solutions,
        vec![s1, s2],
        "{C} solutions in the order written"
    );
    assert_eq!(snap.partials.len(), 2, "{C} partials by key");
    assert_eq!(
        snap.partials.get("ALPHA/draft"),
        Some(&serde_json::json!({"n": 2, "s": "last"})),
        "{C} last write wins per key"
    );
    assert_eq!(
        snap.partials.get("BETA/eval"),
        Some(&serde_json::json!([1, 2, 3])),
        "{C} partial value"
    );
}

async fn handoffs(bb: &Bb) {
    const C: &str = "[blackboard::handoffs]";
    let p = fresh();
    let h = handoff("h1", "ALPHA");
    bb.create_handoff(&p, h.clone())
        .await
        .expect("[blackboard::handoffs] create");
    bb.create_handoff(&p, h.clone())
        .await
        .expect("[blackboard::handoffs] create again must be idempotent");
    assert_eq!(
        bb.handoffs(&p).await.expect("[blackboard::handoffs] list"),
        vec![h.clone()],
        "{C} one handoff after an idempotent create"
    );
    assert!(
        bb.claim_handoff(&p, &h.id, &agent("BETA"))
            .await
            .expect("[blackboard::handoffs] claim"),
        "{C} first claim must win"
    );
    assert!(
        bb.claim_handoff(&p, &h.id, &agent("BETA"))
            .await
            .expect("[blackboard::handoffs] reclaim"),
        "{C} claiming again as the same claimer returns true"
    );
    assert!(
        !bb.claim_handoff(&p, &h.id, &agent("GAMMA"))
            .await
            .expect("[blackboard::handoffs] other claim"),
        "{C} another claimer must get false"
    );
    bb.create_handoff(&p, h.clone())
        .await
        .expect("[blackboard::handoffs] create after claim");
    let list = bb.handoffs(&p).await.expect("[blackboard::handoffs] list");
    assert_eq!(list.len(), 1, "{C} handoffs after re-create");
    assert_eq!(
        list[0].claimed_by.as_ref().map(AgentId::as_str),
        Some("BETA"),
        "{C} re-creating must not reset the claim"
    );
    let h2 = handoff("h2", "BETA");
    bb.create_handoff(&p, h2.clone())
        .await
        .expect("[blackboard::handoffs] create h2");
    let ids: Vec<_> = bb
        .handoffs(&p)
        .await
        .expect("[blackboard::handoffs] list")
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, vec![h.id, h2.id], "{C} handoffs in the order written");
}

async fn pipelines_are_isolated(bb: &Bb) {
    const C: &str = "[blackboard::pipelines_are_isolated]";
    let (a, b) = (fresh(), fresh());
    bb.create_proposal(&a, proposal("same", "ALPHA", "a"))
        .await
        .expect("[blackboard::pipelines_are_isolated] create a");
    bb.create_proposal(&b, proposal("same", "BETA", "b"))
        .await
        .expect("[blackboard::pipelines_are_isolated] same id in another pipeline is no conflict");
    let o = cast(bb, &a, "same", vote("X", true), 1, "pipelines_are_isolated").await;
    assert!(o.consensus.is_some(), "{C} consensus in a");
    let o = cast(bb, &b, "same", vote("X", true), 1, "pipelines_are_isolated").await;
    assert!(
        o.recorded && o.consensus.is_some(),
        "{C} b has its own votes and consensus: {o:?}"
    );
    bb.clear(&a)
        .await
        .expect("[blackboard::pipelines_are_isolated] clear a");
    assert_eq!(
        bb.proposals(&b)
            .await
            .expect("[blackboard::pipelines_are_isolated] proposals b")
            .len(),
        1,
        "{C} clearing a must not touch b"
    );
}
