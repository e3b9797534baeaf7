//! # governance-http
//!
//! The HTTP face of a governance deployment: an axum [`Router`](axum::Router) with the seed's
//! pipeline endpoints, live events over WebSocket and Server-Sent Events, Prometheus metrics,
//! an OpenAPI document and a dashboard — ready for an open network (bearer token, limits,
//! timeouts, Origin check, one JSON error shape, graceful shutdown).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use governance_http::{AppState, HttpSettings};
//! let gov = governance_core::Governance::builder().build().expect("engine");
//! let state = AppState::new(gov, HttpSettings::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
//! governance_http::serve(listener, state, ctrl_c, std::time::Duration::from_secs(10)).await
//! # }
//! ```
//!
//! ## Endpoints
//! See `/openapi.json` (served by the router, written in [`openapi`]) and `/docs`.
//!
//! ## Errors
//! Every error is `{"error": {"code": "...", "message": "..."}}`; [`error::status_for`] maps
//! [`governance_core::ErrorKind`] to statuses. A client mistake is never a 5xx: malformed JSON
//! is 400, a wrong content type 415, a too large body 413, an invalid id 400, an unknown one 404.
//!
//! ## Live events
//! `/ws` and `/api/events` carry events in the design's shape
//! `{"type", "seq", "ts", "data": {"pipeline_id", ...}}`; see [`live`] for replay (`since`),
//! deduplication and what a slow client gets.

pub mod auth;
mod deadline;
pub mod error;
pub mod live;
mod metrics;
pub mod openapi;
mod router;
mod routes;
mod state;
mod track;

pub use auth::check_bind;
pub use error::ApiError;
pub use router::{router, serve};
pub use state::{
    AppState, DEFAULT_BODY_LIMIT, DEFAULT_NODE_ID, DEFAULT_PROBE_TIMEOUT, DEFAULT_READ_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, HttpSettings, MAX_PAGE,
};
