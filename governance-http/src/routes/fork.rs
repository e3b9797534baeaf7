//! `POST /api/pipeline/{id}/fork`: a new pipeline from the state the pipeline had at one of
//! its events (`at_seq`) or where it first entered a status (`at_status`), with optional
//! overrides; the source is not changed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use governance_core::{ForkOverrides, ForkPoint, ForkRequest, PipelineStatus};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::pipelines::{role_settings, timeout, whole_seconds};
use crate::error::{ApiError, ApiJson, PathId};
use crate::state::AppState;

/// Body of `POST /api/pipeline/{id}/fork`: exactly one of `at_seq` and `at_status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkBody {
    /// Fork after the source's event with this seq (1 or more).
    #[serde(default, deserialize_with = "whole_u64")]
    pub at_seq: Option<u64>,
    /// Fork after the event where the source first entered this status (e.g. `REPORT`).
    #[serde(default)]
    pub at_status: Option<String>,
    /// A new objective (only at a point before the report is written).
    #[serde(default)]
    pub objective: Option<String>,
    /// Orchestration timeout in seconds (a JSON number with no fraction).
    #[serde(default, deserialize_with = "whole_seconds")]
    pub timeout: Option<u64>,
    /// Per-role settings over the source's (as spawn's `roles`).
    #[serde(default)]
    pub roles: Option<BTreeMap<String, Map<String, Value>>>,
}

/// A whole number 0..=u64::MAX (`3` or `3.0`); a fraction or a negative is refused (400).
fn whole_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f) if f.fract() == 0.0 && (0.0..=9.0e15).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "at_seq must be a whole number of 1 or more, got {n}"
        ))),
    }
}

/// `POST /api/pipeline/{id}/fork`: 201 with `{"pipeline_id", "status", "forked_from":
/// {"pipeline_id", "seq"}}`; 400 naming the field; 404 unknown source or fork point; 409 a
/// state that cannot be forked (terminal, AWAITING_APPROVAL).
pub async fn fork(
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<ForkBody>,
) -> Result<impl IntoResponse, ApiError> {
    let at = match (body.at_seq, body.at_status.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "at_seq and at_status: give exactly one of them, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "at_seq or at_status is required (exactly one of them)",
            ));
        }
        (Some(n), None) => ForkPoint::Seq(n),
        (None, Some(s)) => ForkPoint::Status(s.parse::<PipelineStatus>().map_err(|_| {
            ApiError::bad_request(format!(
                "at_status: unknown status {s:?} (one of {})",
                PipelineStatus::ALL.map(|s| s.as_str()).join(", ")
            ))
        })?),
    };
    let max = state.settings().max_objective_len;
    if let Some(o) = &body.objective
        && o.chars().count() > max
    {
        return Err(ApiError::bad_request(format!(
            "objective is longer than {max} characters"
        )));
    }
    let overrides = ForkOverrides {
        objective: body.objective,
        timeout: timeout(body.timeout),
        roles: role_settings(body.roles.unwrap_or_default())?,
    };
    let forked = state.gov().fork(&id, ForkRequest { at, overrides }).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "pipeline_id": forked.pipeline_id,
            "status": forked.status,
            "forked_from": {"pipeline_id": forked.source, "seq": forked.seq},
        })),
    ))
}
