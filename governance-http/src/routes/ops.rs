//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs` and the
//! dashboard at `/`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

const DASHBOARD: &str = include_str!("../../assets/dashboard.html");
const DOCS: &str = include_str!("../../assets/docs.html");

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: every backend answers (blackboard, bus, ledger; the ledger must also be able
/// to write) and the server is not shutting down; 503 in the error shape (with `checks`)
/// otherwise. Each check gets [`HttpSettings::probe_timeout`](crate::HttpSettings) at most:
/// a backend that does not answer in time is reported as such, never waited out.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let gov = state.gov();
    let bound = state.settings().probe_timeout;
    let probe = |ping| async move {
        tokio::time::timeout(bound, ping).await.unwrap_or_else(|_| {
            Err(governance_core::Error::Timeout(format!(
                "no answer within {} ms",
                bound.as_millis()
            )))
        })
    };
    let (bb, bus, ledger) = tokio::join!(
        probe(gov.blackboard().ping()),
        probe(gov.bus().ping()),
        probe(gov.ledger().ping())
    );
    let waiting = gov.pipelines_waiting_to_write();
    let mut checks = serde_json::Map::new();
    let mut failed = Vec::new();
    for (name, r) in [("blackboard", bb), ("bus", bus), ("ledger", ledger)] {
        match r {
            Ok(()) => {
                checks.insert(name.into(), json!("ok"));
            }
            Err(e) => {
                // name the backend (e.g. `redis:redis://host:6379`) when the server knows it
                let what = match state.settings().backends.iter().find(|(k, _)| k == name) {
                    Some((_, backend)) => format!("{name} ({backend})"),
                    None => name.to_owned(),
                };
                let mut why = e.to_string();
                if name == "ledger" && waiting > 0 {
                    why.push_str(&format!(" ({waiting} running pipelines wait to write)"));
                }
                checks.insert(name.into(), json!(why));
                failed.push(format!("{what}: {why}"));
            }
        }
    }
    if state.shutdown_token().is_cancelled() {
        failed.push("server is shutting down".into());
    }
    let backends: serde_json::Map<String, Value> = state
        .settings()
        .backends
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if failed.is_empty() {
        Json(json!({"status": "ready", "checks": checks, "backends": backends, "modes": gov.modes(), "default_mode": gov.default_mode()}))
            .into_response()
    } else {
        let err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            failed.join("; "),
        );
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": err.code, "message": err.message}, "checks": checks})),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.inner.metrics.render(state.gov()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /openapi.json`: the document for this server's LLM modes, objective limit and roles.
pub async fn openapi(State(state): State<AppState>) -> Json<Value> {
    let gov = state.gov();
    Json(crate::openapi::document(&crate::openapi::ServerShape {
        modes: gov.modes(),
        max_objective_len: state.settings().max_objective_len,
        roles: gov.role_names(),
        max_completion_tokens: gov.config().budgets.max_completion_tokens,
    }))
}

/// `GET /docs`: a small page rendering `/openapi.json` (no external assets).
pub async fn docs() -> Html<&'static str> {
    Html(DOCS)
}

/// `GET /`: the dashboard.
pub async fn dashboard() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:",
            ),
        ],
        Html(DASHBOARD),
    )
        .into_response()
}

/// Fallback: 404 in the JSON error shape.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
