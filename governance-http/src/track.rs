//! HTTP request metrics by route: [`mark_route`] (a route layer, so it runs after routing)
//! hands the matched path template to [`track_http`] (the outer layer), which records the
//! request in [`crate::metrics::Metrics::record_http`] with its status and duration.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Route layer: copies the matched path template into the response's extensions.
pub async fn mark_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}

/// Outer layer: counts every request by route template (`unmatched` for the fallback), method
/// and status, with the time to the response head.
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let started = tokio::time::Instant::now();
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    state.inner.metrics.record_http(
        route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}
