//! `POST /api/pipeline/{id}/approve`: a human's decision on a pipeline waiting at
//! `AWAITING_APPROVAL` (approve, or reject with feedback for a revision round).

use axum::Json;
use axum::extract::State;
use governance_core::ApprovalDecision;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiJson, PathId};
use crate::state::AppState;

/// Body of `POST /api/pipeline/{id}/approve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Approve (`true`: COMPLETED) or reject (`false`: a revision round, or FAILED past
    /// `GOVERNANCE_MAX_REVISIONS`).
    pub approve: bool,
    /// What the reviewer wants changed (reaches ALPHA on a rejection); at most
    /// [`governance_core::MAX_FEEDBACK_LEN`] characters.
    #[serde(default)]
    pub feedback: Option<String>,
    /// Who decides: not blank, at most [`governance_core::MAX_REVIEWER_LEN`] characters.
    pub by: String,
    /// The revision decided on (`revision` of the `approval_requested` the reviewer saw);
    /// another one waiting is a 409. Absent or null: whatever waits now.
    #[serde(default)]
    pub revision: Option<u32>,
}

/// `POST /api/pipeline/{id}/approve`: 200 with `{"pipeline_id", "status"}`, the status the
/// decision led to (COMPLETED, ORCHESTRATING for a revision round, FAILED); 409 when the
/// pipeline is not waiting or another decision won.
pub async fn approve(
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<Value>, ApiError> {
    let decision = ApprovalDecision {
        approve: body.approve,
        feedback: body.feedback,
        by: body.by,
        revision: body.revision,
    };
    // the caller's mistake is a 400 before anything is looked up
    decision.validate()?;
    let status = state.gov().approve(&id, decision).await?;
    Ok(Json(json!({"pipeline_id": id, "status": status})))
}
