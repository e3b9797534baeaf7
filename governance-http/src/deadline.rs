//! The read deadline: `GET /api/...` waits at most [`HttpSettings::read_timeout`] for the
//! stores, then answers 503 `backend_unavailable` (with `Retry-After`). A store that rides out
//! an outage (the Redis registry of cluster mode retries for its `outage_timeout`) thus never
//! makes a read hang; writes are not cut short (their outcome must not become unknown).
//!
//! [`HttpSettings::read_timeout`]: crate::HttpSettings::read_timeout

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Middleware: bounds a `GET` by the read timeout.
pub(crate) async fn read_deadline(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let bound = state.settings().read_timeout;
    match tokio::time::timeout(bound, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                format!(
                    "the stores did not answer within {} ms (a backend is unreachable or \
                     overloaded); try again later",
                    bound.as_millis()
                ),
            );
            err.retry_after = Some(1);
            err.into_response()
        }
    }
}
