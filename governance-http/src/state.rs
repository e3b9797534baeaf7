//! [`AppState`]: the engine plus the HTTP settings every handler reads.

use std::sync::Arc;
use std::time::Duration;

use governance_core::{CircuitBreaker, Governance};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Default request body limit: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default timeout of a REST request (not applied to WebSocket/SSE streams).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of each `/readyz` check.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// Default bound of a read endpoint's wait for the stores.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest page the list and log endpoints return.
pub const MAX_PAGE: usize = 1000;

/// HTTP settings. Plain struct with defaults; build one with `HttpSettings::default()` and
/// struct update syntax.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpSettings {
    /// When set, `/api/*`, `/ws`, `/api/events` and `/metrics` (unless
    /// [`Self::metrics_public`]) require `Authorization: Bearer <token>` (or `?token=<token>`
    /// on the two streaming endpoints, for browsers).
    pub api_token: Option<SecretString>,
    /// Extra WebSocket `Origin`s allowed besides the server's own host
    /// (e.g. `https://ops.example.com`).
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes (larger ones get 413).
    pub body_limit: usize,
    /// Longest objective in characters (longer ones get 400).
    pub max_objective_len: usize,
    /// Timeout of a REST request (408 when passed).
    pub request_timeout: Duration,
    /// How long `/readyz` waits for each backend's check (default 800 ms): one that does not
    /// answer in time is reported (503), so the health check answers within a second even
    /// while a backend hangs. Backends ride out outages for their own, longer, bounds.
    pub probe_timeout: Duration,
    /// How long a read endpoint (`GET /api/...`) waits for the stores (default 2 s) before it
    /// answers 503 `backend_unavailable`: reads fail fast while a store (the Redis registry of
    /// cluster mode, say) rides out an outage, instead of hanging.
    pub read_timeout: Duration,
    /// Circuit breakers shared by all pipelines (per LLM mode), reported in `/metrics`.
    pub breakers: Vec<(String, Arc<CircuitBreaker>)>,
    /// Backend names shown by `/readyz` and the dashboard (e.g. `blackboard=memory`).
    pub backends: Vec<(String, String)>,
    /// Id of this node, the `node` label of the `governance_node_info` gauge on `/metrics`
    /// (default [`DEFAULT_NODE_ID`]). Set it with [`HttpSettings::with_node_id`].
    pub node_id: String,
    /// Whether `/metrics` is readable without the API token (default `false`: when
    /// [`Self::api_token`] is set, `/metrics` needs it like `/api/*`). Set it for a Prometheus
    /// that scrapes without credentials on a trusted network.
    pub metrics_public: bool,
}

/// Node id reported on `/metrics` when none is configured.
pub const DEFAULT_NODE_ID: &str = "standalone";

impl HttpSettings {
    /// These settings with `node_id` as the node's id (the `node` label of
    /// `governance_node_info` on `/metrics`).
    #[must_use]
    pub fn with_node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = node_id.into();
        self
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            api_token: None,
            allowed_origins: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            max_objective_len: governance_core::DEFAULT_MAX_OBJECTIVE_LEN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            breakers: Vec::new(),
            backends: Vec::new(),
            node_id: DEFAULT_NODE_ID.to_owned(),
            metrics_public: false,
        }
    }
}

/// Shared state of the router: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub governance: Governance,
    pub settings: HttpSettings,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State for `governance` with `settings`. Starts the background task that turns the live
    /// event stream into metrics, so it must be called inside a tokio runtime.
    #[must_use]
    pub fn new(governance: Governance, settings: HttpSettings) -> Self {
        let shutdown = CancellationToken::new();
        let metrics = Metrics::start(
            &governance,
            settings.breakers.clone(),
            settings.node_id.clone(),
            shutdown.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                governance,
                settings,
                metrics,
                shutdown,
            }),
        }
    }

    /// The engine.
    #[must_use]
    pub fn governance(&self) -> &Governance {
        &self.inner.governance
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &HttpSettings {
        &self.inner.settings
    }

    /// Cancelled when the server shuts down: every WebSocket and SSE stream ends, and the
    /// metrics task stops. [`crate::serve`] cancels it; an embedding service that mounts the
    /// router itself should cancel it when its own shutdown begins.
    #[must_use]
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn gov(&self) -> &Governance {
        &self.inner.governance
    }
}
