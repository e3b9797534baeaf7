//! Human approval of a pipeline's outcome: the rest at `AWAITING_APPROVAL` (what is asked,
//! until when), who may decide (exactly one decision per wait), and the fresh blackboard of a
//! revision round after a rejection. The driver (`super::driver`) carries decisions out.
//!
//! A waiting pipeline holds no task and no agent, like one resting at REPORT: its record,
//! checkpoint and ledger say everything, so it survives restarts as it is (a resume leaves
//! it waiting), and its deadline is its `AWAITING_APPROVAL` time in the record's history
//! plus `GOVERNANCE_APPROVAL_TIMEOUT`, the same before and after a restart.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::live::Change;
use super::parts::{Engine, Live};
use super::state::Review;
use crate::blackboard::{BlackboardSnapshot, ProposalStatus};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::ids::ProposalId;
use crate::state_machine::PipelineStatus;
use crate::store::PipelineRecord;

/// Moves a pipeline whose consensus and solution are in to `AWAITING_APPROVAL`, with the
/// `approval_requested` event (proposal, solution, deadline) in the same commit.
pub(super) async fn request(engine: &Engine, live: &Live) -> Result<()> {
    let snap = engine.blackboard.snapshot(live.id()).await?;
    let proposal = snap
        .consensus
        .as_ref()
        .and_then(|c| snap.proposals.iter().find(|p| p.id == c.proposal_id));
    let solution = snap
        .solutions
        .iter()
        .rev()
        .find(|s| proposal.is_none_or(|p| s.proposal_id.as_ref() == Some(&p.id)))
        .or(snap.solutions.last());
    let revision = live.with_record(|r| r.revisions).await;
    let deadline = engine
        .config
        .approval
        .timeout
        .and_then(|t| chrono::Duration::from_std(t).ok())
        .map(|t| Utc::now() + t);
    let event = EventKind::ApprovalRequested {
        pipeline_id: live.id().clone(),
        revision,
        proposal_id: proposal.map(|p| p.id.clone()),
        title: proposal.map(|p| p.title.clone()).unwrap_or_default(),
        proposal: proposal.map(|p| p.content.clone()).unwrap_or_default(),
        solution: solution.map(|s| s.content.clone()).unwrap_or_default(),
        deadline,
    };
    let change = Change {
        leading: vec![event],
        release_driver: true,
        ..Change::default()
    };
    live.set_status_with(engine, PipelineStatus::AwaitingApproval, None, change)
        .await
}

/// The right to decide on a waiting pipeline, held by exactly one caller (a decision, the
/// deadline, a stop): the pipeline's driver claim. Dropping it without a decision gives it
/// back.
pub(super) struct Claim<'a> {
    live: &'a Live,
    keep: bool,
}

impl Claim<'_> {
    /// The decision was carried out: whoever drives the pipeline now lets the claim go.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.live.set_driven(false);
        }
    }
}

/// Claims a pipeline waiting at `AWAITING_APPROVAL` in revision `revision` (any revision when
/// `None`).
///
/// # Errors
/// [`Error::Conflict`] when it is not waiting (any more), or another decision holds it.
pub(super) async fn claim<'a>(live: &'a Live, revision: Option<u32>) -> Result<Claim<'a>> {
    let not_waiting = |rec: &PipelineRecord| {
        Error::Conflict(format!(
            "pipeline {} is not awaiting approval (status {})",
            rec.id, rec.status
        ))
    };
    {
        let rec = live.record.lock().await;
        if rec.status != PipelineStatus::AwaitingApproval || live.stop.is_cancelled() {
            return Err(not_waiting(&rec));
        }
    }
    if !live.claim_driver() {
        return Err(Error::Conflict(format!(
            "pipeline {} is being decided on by another request",
            live.id()
        )));
    }
    let claim = Claim { live, keep: false };
    // a decision that won just before us may have moved it on and let go of its claim
    let rec = live.record.lock().await;
    if rec.status != PipelineStatus::AwaitingApproval {
        return Err(not_waiting(&rec));
    }
    if let Some(n) = revision.filter(|n| *n != rec.revisions) {
        return Err(Error::Conflict(format!(
            "pipeline {} awaits approval of revision {}, not {n}",
            rec.id, rec.revisions
        )));
    }
    drop(rec);
    Ok(claim)
}

/// When the wait that began at `since` ends (`None`: no timeout).
pub(super) fn deadline(since: DateTime<Utc>, timeout: Option<Duration>) -> Option<DateTime<Utc>> {
    let t = chrono::Duration::from_std(timeout?).ok()?;
    since.checked_add_signed(t)
}

/// How long from `now` until `deadline` (zero when it has passed).
pub(super) fn remaining(deadline: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (deadline - now).to_std().unwrap_or(Duration::ZERO)
}

/// When the record's current wait for approval began (its last history entry).
pub(super) fn waiting_since(rec: &PipelineRecord) -> Option<DateTime<Utc>> {
    rec.history
        .iter()
        .rev()
        .find(|(s, _)| *s == PipelineStatus::AwaitingApproval)
        .map(|(_, t)| *t)
}

/// The blackboard a revision round starts from: every proposal of the rejected round stays
/// (SUPERSEDED: its ids are taken, its text is history) but none is open or decided; no
/// consensus, no solution, no handoff.
pub(super) fn revision_board(snap: &BlackboardSnapshot) -> BlackboardSnapshot {
    let mut board = snap.clone();
    for p in &mut board.proposals {
        p.status = ProposalStatus::Superseded;
    }
    board.consensus = None;
    board.solutions.clear();
    board.handoffs.clear();
    board
}

/// The rejected consensus proposal's review for `state` (title read off the blackboard).
pub(super) fn review_of(
    snap: &BlackboardSnapshot,
    proposal_id: Option<ProposalId>,
    by: &str,
    feedback: Option<String>,
) -> Review {
    let title = proposal_id
        .as_ref()
        .and_then(|id| snap.proposals.iter().find(|p| &p.id == id))
        .map(|p| p.title.clone())
        .unwrap_or_default();
    Review {
        proposal_id,
        title,
        by: by.to_owned(),
        feedback,
    }
}

/// At the start of an orchestration round: when the blackboard still holds a consensus a
/// reviewer rejected (the revision's fresh board is in the checkpoint, but a blackboard that
/// outlived a crash, or was just decided on, may not show it yet), puts the revision board in
/// place and clears the bus log of the rejected round. Idempotent.
pub(super) async fn start_revision_round(engine: &Engine, live: &Live) -> Result<()> {
    let id = live.id();
    let snap = engine.blackboard.snapshot(id).await?;
    if snap
        .consensus
        .as_ref()
        .is_some_and(|c| live.state.was_rejected(&c.proposal_id))
    {
        // the bus first: if we die in between, the consensus is still there to find
        engine.bus.clear(id).await?;
        engine.blackboard.restore(id, revision_board(&snap)).await?;
        live.state.start_revision();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blackboard::{Consensus, Proposal, Solution};
    use crate::ids::AgentId;

    #[test]
    fn the_deadline_is_counted_from_the_request_not_from_now() {
        let since = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let d = deadline(since, Some(Duration::from_secs(600))).unwrap();
        assert_eq!(d, since + chrono::Duration::seconds(600));
        // a restart 9 minutes in has one minute left; one after the deadline has none
        assert_eq!(
            remaining(d, since + chrono::Duration::seconds(540)),
            Duration::from_secs(60)
        );
        assert_eq!(
            remaining(d, since + chrono::Duration::seconds(700)),
            Duration::ZERO
        );
        assert_eq!(deadline(since, None), None);
    }

    #[test]
    fn a_revision_board_keeps_the_history_but_nothing_open_or_decided() {
        let a = AgentId::new("ALPHA").unwrap();
        let p1 = ProposalId::new("ALPHA-1").unwrap();
        let snap = BlackboardSnapshot {
            proposals: vec![
                Proposal::new(p1.clone(), a.clone(), "t1", "c1"),
                Proposal::new(ProposalId::new("ALPHA-2").unwrap(), a.clone(), "t2", "c2"),
            ],
            consensus: Some(Consensus {
                proposal_id: p1.clone(),
                votes: 2,
                voters: vec![a.clone()],
                decided_at: Utc::now(),
            }),
            solutions: vec![Solution {
                agent: a,
                proposal_id: Some(p1),
                content: "s".into(),
                created_at: Utc::now(),
            }],
            ..BlackboardSnapshot::default()
        };
        let board = revision_board(&snap);
        assert_eq!(board.proposals.len(), 2);
        assert!(
            board
                .proposals
                .iter()
                .all(|p| p.status == ProposalStatus::Superseded)
        );
        assert!(board.consensus.is_none() && board.solutions.is_empty());
        assert_eq!(board.unresolved(), 0);
    }
}
