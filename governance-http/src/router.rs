//! [`router`]: every route, its layers, and [`serve`] with graceful shutdown.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, map_response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::require_token;
use crate::deadline::read_deadline;
use crate::error::json_error_bodies;
use crate::routes::{approval, fork, ops, pipelines, streams};
use crate::state::AppState;
use crate::track::{mark_route, track_http};

/// The API router. Mount it as is, or nest it in a larger service.
///
/// REST routes get the request timeout, and `GET /api/*` the shorter read timeout (503 when a
/// store does not answer in time); `/ws` and `/api/events` do not (they end when
/// [`AppState::shutdown_token`] is cancelled). `/api/*`, `/ws` and `/metrics` need the API
/// token when one is configured (`/metrics` not when [`crate::HttpSettings::metrics_public`]);
/// `/`, `/docs`, `/openapi.json`, `/healthz` and `/readyz` do not.
pub fn router(state: AppState) -> Router {
    let timeout = TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        state.settings().request_timeout,
    );
    let api = Router::new()
        .route("/api/spawn", post(pipelines::spawn))
        .route("/api/checkpoint/report", get(pipelines::report))
        .route("/api/pipeline/continue", post(pipelines::continue_pipeline))
        .route("/api/pipeline/logs", get(pipelines::logs))
        .route("/api/pipeline/{id}", get(pipelines::get))
        .route(
            "/api/pipeline/{id}/orchestration",
            get(pipelines::orchestration),
        )
        .route("/api/pipeline/{id}/stop", post(pipelines::stop))
        .route("/api/pipeline/{id}/approve", post(approval::approve))
        .route("/api/pipeline/{id}/fork", post(fork::fork))
        .route("/api/pipelines", get(pipelines::list))
        .layer(from_fn_with_state(state.clone(), read_deadline))
        .layer(timeout);
    let live = Router::new()
        .route("/ws", get(streams::ws))
        .route("/api/events", get(streams::sse));
    let metrics = Router::new()
        .route("/metrics", get(ops::metrics))
        .layer(timeout);
    let (api, public_metrics) = if state.settings().metrics_public {
        (api, Some(metrics))
    } else {
        (api.merge(metrics), None)
    };
    let protected = api
        .merge(live)
        .route_layer(from_fn_with_state(state.clone(), require_token));
    let mut public = Router::new()
        .route("/", get(ops::dashboard))
        .route("/docs", get(ops::docs))
        .route("/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .layer(timeout);
    if let Some(metrics) = public_metrics {
        public = public.merge(metrics);
    }
    let body_limit = state.settings().body_limit;
    let track = from_fn_with_state(state.clone(), track_http);
    protected
        .merge(public)
        .route_layer(from_fn(mark_route))
        .fallback(ops::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::new())
        // outside the panic catcher, so a caught panic's 500 is JSON too
        .layer(map_response(json_error_bodies))
        // outside both: counts every request with the status the client gets
        .layer(track)
        .layer(
            // the path only: `?token=` must never reach a log
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
}

/// Serves `state`'s router on `listener` until `shutdown` resolves, then shuts down
/// gracefully: cancels every WebSocket/SSE stream, stops accepting connections, suspends running
/// pipelines ([`governance_core::Governance::shutdown`]: agents cancelled, a checkpoint in their
/// current status, resumed by the next engine on the same stores) and waits at most `grace`.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let token = state.shutdown_token().clone();
    let gov = state.governance().clone();
    let app = router(state);
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future(),
    );
    tokio::select! {
        r = &mut server => return r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        () = shutdown => token.cancel(),
        () = token.cancelled() => {}
    }
    tracing::info!("shutting down: suspending running pipelines");
    gov.shutdown(grace).await;
    match tokio::time::timeout(grace, &mut server).await {
        Ok(r) => r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        Err(_) => {
            tracing::warn!("connections still open after the grace period; closing them");
            server.abort();
            Ok(())
        }
    }
}
