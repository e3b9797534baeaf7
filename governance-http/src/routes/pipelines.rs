//! The seed's pipeline endpoints: spawn, report, continue, orchestration status, stop, logs,
//! list and get.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use governance_core::{
    ContinueRequest, PipelineFilter, PipelineRecord, PipelineStatus, ProposalStatus, RoleSettings,
    RoleSettingsMap, SpawnRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiJson, ApiQuery, PathId, parse_id};
use crate::state::{AppState, MAX_PAGE};

/// Body of `POST /api/spawn`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnBody {
    /// What the pipeline should achieve.
    pub objective: String,
    /// Continue into orchestration after the report (default: `AUTO_ORCHESTRATE`).
    #[serde(default)]
    pub auto_continue: Option<bool>,
    /// `local` or `openrouter` (default: the server's mode).
    #[serde(default)]
    pub mode: Option<String>,
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout in seconds (a JSON number with no fraction: `30` or `30.0`).
    #[serde(default, deserialize_with = "whole_seconds")]
    pub timeout: Option<u64>,
    /// Rest at `AWAITING_APPROVAL` after consensus and solution until
    /// `POST /api/pipeline/{id}/approve` (default: `GOVERNANCE_REQUIRE_APPROVAL`).
    #[serde(default)]
    pub require_approval: Option<bool>,
    /// Per-role settings for this pipeline (`{"BETA": {"model": "…"}}`), over the server's;
    /// each role's settings a JSON object (read by [`role_settings`]).
    #[serde(default)]
    pub roles: Option<BTreeMap<String, Map<String, Value>>>,
}

/// Body of `POST /api/pipeline/continue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueBody {
    /// The pipeline resting at REPORT.
    pub pipeline_id: String,
    /// `local` or `openrouter` (default: the pipeline's mode).
    #[serde(default)]
    pub mode: Option<String>,
    /// Model name.
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout in seconds (a JSON number with no fraction: `30` or `30.0`).
    #[serde(default, deserialize_with = "whole_seconds")]
    pub timeout: Option<u64>,
}

/// `?pipeline_id=` query.
#[derive(Debug, Deserialize)]
pub struct IdQuery {
    /// Pipeline id.
    pub pipeline_id: String,
}

/// `GET /api/pipeline/logs` query.
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// Pipeline id.
    pub pipeline_id: String,
    /// Only events with `seq` greater than this (default 0).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /api/pipelines` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Comma-separated statuses (`RUNNING,REPORT`); all when absent.
    #[serde(default)]
    pub status: Option<String>,
    /// Page size (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
}

/// One row of `GET /api/pipelines`.
#[derive(Debug, Serialize)]
pub struct PipelineSummary<'a> {
    pipeline_id: &'a str,
    objective: &'a str,
    status: PipelineStatus,
    history: &'a [(PipelineStatus, chrono::DateTime<chrono::Utc>)],
    auto_continue: bool,
    mode: &'a str,
    model: &'a str,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    agents: usize,
    gamma: Option<&'a str>,
    tokens: u64,
    cost_usd: f64,
    failure: Option<&'a str>,
}

impl<'a> PipelineSummary<'a> {
    fn of(r: &'a PipelineRecord) -> Self {
        Self {
            pipeline_id: r.id.as_str(),
            objective: &r.objective,
            status: r.status,
            history: &r.history,
            auto_continue: r.auto_continue,
            mode: &r.mode,
            model: &r.model,
            created_at: r.created_at,
            updated_at: r.updated_at,
            agents: r.agents.len(),
            gamma: r.gamma.as_ref().map(|g| g.reason.as_str()),
            tokens: r.usage.total_tokens(),
            cost_usd: r.usage.cost_usd,
            failure: r.failure.as_deref(),
        }
    }
}

/// A whole number of seconds: JSON (and the document's `integer`) does not tell `30` from
/// `30.0`, so both are accepted; a fraction or a negative number is refused (400).
pub(crate) fn whole_seconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f) if f.fract() == 0.0 && (0.0..=86_400.0).contains(&f) => Ok(Some(f as u64)),
        // out of range: the engine answers "between 1 second and 24 hours"
        Some(f) if f.fract() == 0.0 && f > 86_400.0 => Ok(Some(u64::MAX)),
        _ => Err(serde::de::Error::custom(format!(
            "timeout must be a whole number of seconds, got {n}"
        ))),
    }
}

pub(crate) fn timeout(secs: Option<u64>) -> Option<Duration> {
    secs.map(Duration::from_secs)
}

/// A model name is printable ASCII without spaces, 1–200 characters
/// ([`crate::openapi::MODEL_PATTERN`]): it is stored in every record and sent to the provider.
fn check_model(model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if m.is_empty() || m.len() > 200 || !m.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(ApiError::bad_request(
                "model must be 1-200 printable ASCII characters without spaces",
            ))
        }
        _ => Ok(()),
    }
}

/// Each role's settings from its JSON object (serde would also read a struct from an array:
/// only an object is accepted, as the document says); 400 naming `roles.<ROLE>`.
pub(crate) fn role_settings(
    raw: BTreeMap<String, Map<String, Value>>,
) -> Result<RoleSettingsMap, ApiError> {
    raw.into_iter()
        .map(|(role, fields)| {
            serde_json::from_value::<RoleSettings>(Value::Object(fields))
                .map(|s| (role.clone(), s))
                .map_err(|e| ApiError::bad_request(format!("roles.{role}: {e}")))
        })
        .collect()
}

/// `POST /api/spawn`: 201 with `{"pipeline_id", "status", "auto_continue"}`.
pub async fn spawn(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SpawnBody>,
) -> Result<impl IntoResponse, ApiError> {
    // the whole string counts, as the document's `maxLength` says (the engine trims it)
    let max = state.settings().max_objective_len;
    if body.objective.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "objective is longer than {max} characters"
        )));
    }
    check_model(body.model.as_deref())?;
    let roles = role_settings(body.roles.unwrap_or_default())?;
    let gov = state.gov();
    let id = gov
        .spawn(SpawnRequest {
            objective: body.objective,
            auto_continue: body.auto_continue,
            mode: body.mode,
            model: body.model,
            timeout: timeout(body.timeout),
            require_approval: body.require_approval,
            roles,
        })
        .await?;
    let rec = gov.get(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "pipeline_id": id,
            "status": rec.status,
            "auto_continue": rec.auto_continue,
            "mode": rec.mode,
            "require_approval": rec.require_approval,
        })),
    ))
}

/// `GET /api/checkpoint/report?pipeline_id=`: the report and whether it can be continued.
pub async fn report(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&q.pipeline_id)?;
    let rec = state.gov().get(&id).await?;
    Ok(Json(json!({
        "pipeline_id": id,
        "status": rec.status,
        "report": rec.report,
        "ready": rec.report.is_some(),
        "auto_continue": rec.auto_continue,
        "can_continue": rec.status == PipelineStatus::Report,
    })))
}

/// `POST /api/pipeline/continue`: 202 with `{"pipeline_id", "status": "ORCHESTRATING"}`.
pub async fn continue_pipeline(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ContinueBody>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&body.pipeline_id)?;
    check_model(body.model.as_deref())?;
    state
        .gov()
        .continue_pipeline(
            &id,
            ContinueRequest {
                mode: body.mode,
                model: body.model,
                timeout: timeout(body.timeout),
            },
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"pipeline_id": id, "status": PipelineStatus::Orchestrating})),
    ))
}

/// `POST /api/pipeline/{id}/stop`: waits for the pipeline to end, answers its final status.
pub async fn stop(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let status = state.gov().stop(&id).await?;
    Ok(Json(json!({"pipeline_id": id, "status": status})))
}

/// `GET /api/pipeline/{id}`: the full pipeline record.
pub async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<PipelineRecord>, ApiError> {
    Ok(Json(state.gov().get(&id).await?))
}

/// `GET /api/pipeline/{id}/orchestration`: status, agents, GAMMA, blackboard summary, usage,
/// results.
pub async fn orchestration(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let gov = state.gov();
    let rec = gov.get(&id).await?;
    let bb = gov.blackboard_snapshot(&id).await?;
    let proposals: Vec<Value> = bb
        .proposals
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "author": p.author, "title": p.title, "status": p.status,
                "approvals": p.approvals(), "rejections": p.rejections(),
                "votes": p.votes.iter().map(|v| json!({
                    "voter": v.voter, "approve": v.approve, "score": v.score, "rationale": v.rationale,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let open = bb
        .proposals
        .iter()
        .filter(|p| p.status == ProposalStatus::Open)
        .count();
    let votes: usize = bb.proposals.iter().map(|p| p.votes.len()).sum();
    let partial = rec.status.is_terminal() && rec.status != PipelineStatus::Completed;
    Ok(Json(json!({
        "pipeline_id": id,
        "status": rec.status,
        "mode": rec.mode,
        "model": rec.model,
        "timeout_secs": rec.timeout_secs,
        "roles": rec.roles,
        "orchestration_started_at": rec.orchestration_started_at,
        "agents": rec.agents,
        "gamma": rec.gamma,
        "blackboard": {
            "proposals": proposals,
            "summary": {"total": bb.proposals.len(), "open": open, "votes": votes,
                        "solutions": bb.solutions.len(), "handoffs": bb.handoffs.len()},
            "consensus": bb.consensus,
        },
        "usage": rec.usage,
        "results": rec.results,
        "partial": partial,
        "failure": rec.failure,
    })))
}

/// `GET /api/pipeline/logs?pipeline_id=&after=&limit=`: the ledger, paged by `seq`.
pub async fn logs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&q.pipeline_id)?;
    let limit = page(q.limit, 100)?;
    let gov = state.gov();
    gov.get(&id).await?; // 404 for an unknown pipeline rather than an empty page
    let events = gov.events(&id, q.after, limit + 1).await?;
    let has_more = events.len() > limit;
    let events: Vec<_> = events.into_iter().take(limit).collect();
    let next_after = events.last().map_or(q.after, |e| e.seq);
    Ok(Json(json!({
        "pipeline_id": id,
        "events": events,
        "next_after": next_after,
        "has_more": has_more,
    })))
}

/// `GET /api/pipelines?status=&limit=&offset=`: newest first, with totals per status.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page(q.limit, 50)?;
    // exactly the names the API answers with, comma-separated (as the document says)
    let statuses = match q.status.as_deref() {
        None | Some("") => Vec::new(),
        Some(s) => s
            .split(',')
            .map(|x| {
                PipelineStatus::ALL
                    .into_iter()
                    .find(|st| st.as_str() == x)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "unknown status {x:?} (expected comma-separated names such as RUNNING,REPORT)"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let gov = state.gov();
    let records = gov
        .list(&PipelineFilter {
            statuses: statuses.clone(),
            limit,
            offset: q.offset,
            ..PipelineFilter::default()
        })
        .await?;
    let counts = gov.count_by_status().await?;
    let total: u64 = counts
        .iter()
        .filter(|(s, _)| statuses.is_empty() || statuses.contains(s))
        .map(|(_, n)| n)
        .sum();
    let counts: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    let rows: Vec<PipelineSummary<'_>> = records.iter().map(PipelineSummary::of).collect();
    Ok(Json(json!({
        "pipelines": rows,
        "total": total,
        "counts": counts,
        "limit": limit,
        "offset": q.offset,
    })))
}

fn page(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}
