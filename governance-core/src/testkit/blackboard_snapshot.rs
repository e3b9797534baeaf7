//! The [`Blackboard`] conformance suite, continued: snapshot, restore and clear.

use crate::blackboard::{BlackboardSnapshot, ProposalStatus};
use crate::error::ErrorKind;
use crate::ids::HandoffId;

use super::blackboard_fixtures::{Bb, cast, handoff, pid, proposal, vote};
use super::{agent, fresh};

pub(super) async fn snapshot_restore_clear(bb: &Bb) {
    const C: &str = "[blackboard::snapshot_restore_clear]";
    let (p, q) = (fresh(), fresh());
    bb.create_proposal(&p, proposal("p1", "ALPHA", "p1"))
        .await
        .expect("[blackboard::snapshot_restore_clear] create");
    bb.create_proposal(&p, proposal("p2", "ALPHA", "p2"))
        .await
        .expect("[blackboard::snapshot_restore_clear] create");
    cast(
        bb,
        &p,
        "p1",
        vote("BETA", true),
        1,
        "snapshot_restore_clear",
    )
    .await;
    bb.create_handoff(&p, handoff("h1", "ALPHA"))
        .await
        .expect("[blackboard::snapshot_restore_clear] handoff");
    bb.put_partial(&p, "BETA/x", serde_json::json!("y"))
        .await
        .expect("[blackboard::snapshot_restore_clear] partial");
    let snap = bb
        .snapshot(&p)
        .await
        .expect("[blackboard::snapshot_restore_clear] snapshot");
    assert!(
        snap.consensus.is_some() && snap.proposals.len() == 2,
        "{C} snapshot content: {snap:?}"
    );

    bb.restore(&q, snap.clone())
        .await
        .expect("[blackboard::snapshot_restore_clear] restore");
    assert_eq!(
        bb.snapshot(&q)
            .await
            .expect("[blackboard::snapshot_restore_clear] snapshot q"),
        snap,
        "{C} restore then snapshot must round-trip"
    );
    let o = cast(
        bb,
        &q,
        "p2",
        vote("BETA", true),
        1,
        "snapshot_restore_clear",
    )
    .await;
    assert_eq!(
        o.status,
        ProposalStatus::Superseded,
        "{C} a restored consensus still counts"
    );
    let h9 = HandoffId::new("h9").expect("testkit: handoff id literal");
    let e = bb
        .claim_handoff(&q, &h9, &agent("G"))
        .await
        .expect_err("[blackboard::snapshot_restore_clear] claiming an unknown handoff must fail");
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "{C} unknown handoff in a restored pipeline: {e}"
    );

    bb.restore(&q, BlackboardSnapshot::default())
        .await
        .expect("[blackboard::snapshot_restore_clear] restore empty");
    assert_eq!(
        bb.snapshot(&q)
            .await
            .expect("[blackboard::snapshot_restore_clear] snapshot q"),
        BlackboardSnapshot::default(),
        "{C} restore must replace, not merge"
    );

    bb.clear(&p)
        .await
        .expect("[blackboard::snapshot_restore_clear] clear");
    assert_eq!(
        bb.snapshot(&p)
            .await
            .expect("[blackboard::snapshot_restore_clear] snapshot after clear"),
        BlackboardSnapshot::default(),
        "{C} clear must delete everything"
    );
    let e = bb
        .proposal(&p, &pid("p1"))
        .await
        .expect_err("[blackboard::snapshot_restore_clear] proposal after clear must fail");
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "{C} proposal after clear: {e}"
    );
    bb.clear(&p)
        .await
        .expect("[blackboard::snapshot_restore_clear] clearing an empty pipeline is fine");
    bb.create_proposal(&p, proposal("p1", "BETA", "reborn"))
        .await
        .expect("[blackboard::snapshot_restore_clear] a cleared pipeline can be reused");
    let o = cast(
        bb,
        &p,
        "p1",
        vote("ALPHA", true),
        1,
        "snapshot_restore_clear",
    )
    .await;
    assert!(
        o.consensus.is_some(),
        "{C} a cleared pipeline starts without consensus"
    );
}
