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
    #[serde(default, deserialize_with = "whole_u32")]
    pub revision: Option<u32>,
}

/// A whole number 0..=u32::MAX: JSON (and the document's `integer`) does not tell `3` from
/// `3.0`, so both are accepted; a fraction, a negative or a larger number is refused (400).
fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let u = f as u64;
                u
            })
    });
    whole
        .and_then(|u| u32::try_from(u).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "revision must be a whole number 0-{}, got {n}",
                u32::MAX
            ))
        })
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
