//! [`Governance::approve`]: a human's decision on a pipeline waiting at `AWAITING_APPROVAL`,
//! carried out here when this engine runs the pipeline, else handed to its owner
//! ([`Command::Approve`]) and read back from the shared ledger.

use std::time::Duration;

use super::driver;
use super::facade::Governance;
use super::requests::ApprovalDecision;
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::ids::PipelineId;
use crate::ownership::Command;
use crate::state_machine::PipelineStatus;

/// How long a node that forwarded a decision waits to see it in the ledger.
const FORWARD_WAIT: Duration = Duration::from_secs(60);

impl Governance {
    /// Decides on a pipeline waiting at `AWAITING_APPROVAL`: approve → COMPLETED; reject → the
    /// feedback reaches ALPHA as reviewer feedback and a revision round runs (ORCHESTRATING),
    /// or, once `GOVERNANCE_MAX_REVISIONS` rounds were rejected, FAILED with the reason.
    /// The decision is an `approval_decided` event (who, when, feedback) committed with the
    /// status it leads to. Of decisions racing on one wait exactly one wins. Returns the
    /// status the decision led to.
    ///
    /// # Example
    /// ```
    /// use governance_core::{ApprovalDecision, Governance, PipelineStatus, SpawnRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> governance_core::Result<()> {
    /// let gov = Governance::builder().build()?;
    /// let mut req = SpawnRequest::new("Plan a database migration");
    /// req.require_approval = Some(true);
    /// let id = gov.spawn(req).await?;
    /// assert_eq!(gov.wait_until_rest(&id).await?.status, PipelineStatus::AwaitingApproval);
    ///
    /// let status = gov.approve(&id, ApprovalDecision::approve("alice")).await?;
    /// assert_eq!(status, PipelineStatus::Completed);
    /// // a second decision on the same wait is refused
    /// let late = gov.approve(&id, ApprovalDecision::approve("bob")).await.unwrap_err();
    /// assert_eq!(late.kind(), governance_core::ErrorKind::Conflict);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field (`by`, `feedback`); [`Error::NotFound`];
    /// [`Error::Conflict`] when it is not waiting, another decision won, or (cluster mode)
    /// its owner cannot be reached; [`Error::Timeout`] when a forwarded decision was not
    /// carried out within a minute; backend errors (nothing written: it still waits).
    pub async fn approve(
        &self,
        id: &PipelineId,
        decision: ApprovalDecision,
    ) -> Result<PipelineStatus> {
        let decision_id = uuid::Uuid::new_v4().simple().to_string();
        self.approve_forwarded(id, decision, decision_id).await
    }

    /// [`approve`](Self::approve) with the request's id chosen by the caller: what an
    /// [`Ownership`](crate::Ownership) implementation calls on the owning node for a
    /// forwarded [`Command::Approve`].
    ///
    /// # Errors
    /// As [`approve`](Self::approve).
    pub async fn approve_forwarded(
        &self,
        id: &PipelineId,
        decision: ApprovalDecision,
        decision_id: String,
    ) -> Result<PipelineStatus> {
        decision.validate()?;
        let engine = &self.engine;
        let live = engine.live.lock().get(id).cloned();
        if let Some(live) = live {
            let r = driver::decide(engine, live.clone(), decision, decision_id).await;
            if r.is_err() && live.stop.is_cancelled() && !live.is_driven() {
                // a stop came while this decision held the pipeline: carry the stop out
                if let Err(e) = driver::stop_resting(engine, &live).await {
                    tracing::warn!(pipeline_id = %id, error = %e, "could not stop the pipeline");
                }
            }
            return r;
        }
        let rec = self.get(id).await?;
        if rec.status != PipelineStatus::AwaitingApproval {
            return Err(Error::Conflict(format!(
                "pipeline {id} is not awaiting approval (status {})",
                rec.status
            )));
        }
        if let Some(n) = decision.revision.filter(|n| *n != rec.revisions) {
            return Err(Error::Conflict(format!(
                "pipeline {id} awaits approval of revision {}, not {n}",
                rec.revisions
            )));
        }
        // waiting on another node (cluster mode): ask its owner, then read the outcome
        let command = Command::Approve {
            decision,
            decision_id: decision_id.clone(),
        };
        if !engine.ownership.forward(id, &command).await? {
            return Err(Error::Conflict(format!(
                "pipeline {id} is not running in this process (node {})",
                engine.ownership.node_id()
            )));
        }
        self.decided_elsewhere(id, rec.last_seq, rec.revisions, &decision_id)
            .await
    }

    /// Reads the shared ledger after `after` until the wait of `revision` is decided (or
    /// ended otherwise); `Ok(status)` when `decision_id`'s decision is the one that won.
    async fn decided_elsewhere(
        &self,
        id: &PipelineId,
        after: u64,
        revision: u32,
        decision_id: &str,
    ) -> Result<PipelineStatus> {
        let deadline = tokio::time::Instant::now() + FORWARD_WAIT;
        let mut after = after;
        let mut won: Option<bool> = None;
        loop {
            for ev in self.events(id, after, 1000).await? {
                after = ev.seq;
                match ev.kind {
                    EventKind::ApprovalDecided {
                        revision: r,
                        decision_id: d,
                        ..
                    } if r == revision && won.is_none() => won = Some(d == decision_id),
                    EventKind::StatusChanged { status, .. }
                        if status != PipelineStatus::AwaitingApproval =>
                    {
                        return match won {
                            Some(true) => Ok(status),
                            _ => Err(Error::Conflict(format!(
                                "pipeline {id} is not awaiting approval any more (status \
                                 {status}): another decision, a stop or its deadline came first"
                            ))),
                        };
                    }
                    _ => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "the decision was handed to the node owning pipeline {id}, which has not \
                     carried it out within {} s",
                    FORWARD_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
