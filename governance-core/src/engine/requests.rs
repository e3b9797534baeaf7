//! What a caller asks of the engine: [`SpawnRequest`], [`ContinueRequest`] and
//! [`ApprovalDecision`], and their bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::role_settings::RoleSettingsMap;

/// The longest objective accepted by default (characters).
pub const DEFAULT_MAX_OBJECTIVE_LEN: usize = 4000;

/// What `spawn` needs.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use governance_core::{Governance, SpawnRequest};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> governance_core::Result<()> {
/// let mut req = SpawnRequest::new("Design a caching strategy");
/// req.mode = Some("local".into());
/// req.timeout = Some(Duration::from_secs(60));
/// let gov = Governance::builder().build()?;
/// gov.spawn(req).await?;
///
/// // an empty objective is the caller's mistake, refused before anything starts
/// let err = gov.spawn(SpawnRequest::new("  ")).await.unwrap_err();
/// assert_eq!(err.kind(), governance_core::ErrorKind::InvalidInput);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// What the pipeline should achieve.
    pub objective: String,
    /// Continue into orchestration after the report (default: `AUTO_ORCHESTRATE`).
    #[serde(default)]
    pub auto_continue: Option<bool>,
    /// LLM mode (`local`, `openrouter`; default: the engine's default mode).
    #[serde(default)]
    pub mode: Option<String>,
    /// Model (default: the default model of the mode's client: `local/deterministic` for the
    /// local LLM, `OPENROUTER_MODEL` for OpenRouter).
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout (default: `ORCHESTRATION_TIMEOUT`).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Rest at `AWAITING_APPROVAL` after consensus and solution until a human decides
    /// ([`Governance::approve`](crate::Governance::approve)); default:
    /// `GOVERNANCE_REQUIRE_APPROVAL`.
    #[serde(default)]
    pub require_approval: Option<bool>,
    /// Per-role settings for this pipeline, laid over the engine's
    /// ([`GovernanceBuilder::role_settings`](crate::GovernanceBuilder::role_settings)) field
    /// by field; validated at spawn (an unknown role or a bad field is
    /// [`Error::InvalidInput`] naming `roles.<ROLE>.<field>`).
    #[serde(default, skip_serializing_if = "RoleSettingsMap::is_empty")]
    pub roles: RoleSettingsMap,
}

impl SpawnRequest {
    /// A request with just an objective.
    #[must_use]
    pub fn new(objective: impl Into<String>) -> Self {
        Self {
            objective: objective.into(),
            ..Self::default()
        }
    }
}

/// What `continue_pipeline` takes (the seed's `POST /api/pipeline/continue`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContinueRequest {
    /// LLM mode for the orchestration.
    #[serde(default)]
    pub mode: Option<String>,
    /// Model (default: the pipeline's model; with a `mode`, that mode's client's default model).
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// The longest reviewer feedback accepted (characters).
pub const MAX_FEEDBACK_LEN: usize = 4000;
/// The longest reviewer name (`by`) accepted (characters).
pub const MAX_REVIEWER_LEN: usize = 128;

/// A human's decision on a pipeline resting at `AWAITING_APPROVAL` (the body of
/// `POST /api/pipeline/{id}/approve`).
///
/// Approving completes the pipeline; rejecting sends `feedback` to ALPHA as reviewer feedback
/// and runs a revision round (at most `GOVERNANCE_MAX_REVISIONS`, then FAILED).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Approve (`true`) or reject.
    pub approve: bool,
    /// What the reviewer wants changed (at most [`MAX_FEEDBACK_LEN`] characters).
    #[serde(default)]
    pub feedback: Option<String>,
    /// Who decides: not blank, at most [`MAX_REVIEWER_LEN`] characters.
    pub by: String,
    /// The revision the reviewer saw (`revision` of its `approval_requested`): a decision for
    /// another one is refused (409), so a decision made on an outcome never lands on the
    /// next round's. `None`: whatever is waiting now.
    #[serde(default)]
    pub revision: Option<u32>,
}

impl ApprovalDecision {
    /// An approval by `by`.
    #[must_use]
    pub fn approve(by: impl Into<String>) -> Self {
        Self {
            approve: true,
            feedback: None,
            by: by.into(),
            revision: None,
        }
    }

    /// A rejection by `by` with `feedback` for the next round.
    #[must_use]
    pub fn reject(by: impl Into<String>, feedback: impl Into<String>) -> Self {
        Self {
            approve: false,
            feedback: Some(feedback.into()),
            by: by.into(),
            revision: None,
        }
    }

    /// Only for the wait of `revision` (see [`revision`](Self::revision)).
    #[must_use]
    pub fn for_revision(mut self, revision: u32) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Checks the bounds.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field (`by`, `feedback`).
    pub fn validate(&self) -> Result<()> {
        if self.by.trim().is_empty() {
            return Err(Error::InvalidInput("by must not be blank".into()));
        }
        if self.by.chars().count() > MAX_REVIEWER_LEN {
            return Err(Error::InvalidInput(format!(
                "by is longer than {MAX_REVIEWER_LEN} characters"
            )));
        }
        if self
            .feedback
            .as_ref()
            .is_some_and(|f| f.chars().count() > MAX_FEEDBACK_LEN)
        {
            return Err(Error::InvalidInput(format!(
                "feedback is longer than {MAX_FEEDBACK_LEN} characters"
            )));
        }
        Ok(())
    }
}

/// An objective a request may give (trimmed): not empty, at most `max` characters.
pub(crate) fn check_objective(objective: &str, max: usize) -> Result<String> {
    let objective = objective.trim();
    if objective.is_empty() {
        return Err(Error::InvalidInput("objective must not be empty".into()));
    }
    if objective.chars().count() > max {
        return Err(Error::InvalidInput(format!(
            "objective is longer than {max} characters"
        )));
    }
    Ok(objective.to_owned())
}

/// A timeout a request may ask for: 1 second to 24 hours.
pub(crate) fn validate_timeout(t: Duration) -> Result<()> {
    if t.is_zero() || t > Duration::from_secs(86_400) {
        return Err(Error::InvalidInput(
            "timeout must be between 1 second and 24 hours".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_names_the_field_it_breaks() {
        assert!(ApprovalDecision::approve("alice").validate().is_ok());
        assert!(
            ApprovalDecision::reject("alice", "more detail")
                .validate()
                .is_ok()
        );
        let blank = ApprovalDecision::approve("  ").validate().unwrap_err();
        assert!(blank.to_string().contains("by"), "{blank}");
        let long = ApprovalDecision::approve("x".repeat(MAX_REVIEWER_LEN + 1))
            .validate()
            .unwrap_err();
        assert!(long.to_string().contains("by"), "{long}");
        let fb = ApprovalDecision::reject("a", "é".repeat(MAX_FEEDBACK_LEN + 1))
            .validate()
            .unwrap_err();
        assert!(fb.to_string().contains("feedback"), "{fb}");
        // the limit counts characters, not bytes
        assert!(
            ApprovalDecision::reject("a", "é".repeat(MAX_FEEDBACK_LEN))
                .validate()
                .is_ok()
        );
    }
}
