//! Prometheus metrics: counters derived from the live event stream by a background task, and
//! gauges (pipelines by status, circuit breakers) read when `/metrics` is scraped, and
//! `governance_node_info{node="<id>"} 1` naming the node (see [`crate::HttpSettings::node_id`]),
//! and HTTP requests by route template, method and status (`governance_http_requests_total`,
//! `governance_http_request_duration_seconds`). Every family has `# HELP` and `# TYPE`;
//! every `*_total` is a counter.
//!
//! The recorder is local to one [`crate::AppState`] (never installed globally), so several
//! routers in one process (tests, embedding services) keep separate numbers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governance_core::{BreakerState, CircuitBreaker, Event, EventKind, Governance, PipelineStatus};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const COST_TOTAL: &str = "governance_llm_cost_usd_total";

/// The metrics of one router.
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    breakers: Vec<(String, Arc<CircuitBreaker>)>,
    /// This node's id, the `node` label of `governance_node_info`.
    node_id: String,
    /// USD spent on LLM calls, as `f64` bits (a float counter, which `metrics` lacks).
    cost_usd: Arc<AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Builds the recorder and starts the task that follows `governance`'s events.
    pub fn start(
        governance: &Governance,
        breakers: Vec<(String, Arc<CircuitBreaker>)>,
        node_id: String,
        shutdown: CancellationToken,
    ) -> Self {
        let recorder = with_buckets(PrometheusBuilder::new()).map_or_else(
            |_| PrometheusBuilder::new().build_recorder(),
            PrometheusBuilder::build_recorder,
        );
        metrics::with_local_recorder(&recorder, describe);
        let handle = recorder.handle();
        let recorder = Arc::new(recorder);
        let cost_usd = Arc::new(AtomicU64::new(0f64.to_bits()));
        let mut rx = governance.subscribe();
        let (rec, cost) = (recorder.clone(), cost_usd.clone());
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = shutdown.cancelled() => break,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) => {
                        add_cost(&ev, &cost);
                        metrics::with_local_recorder(&*rec, || record(&ev));
                    }
                    Err(RecvError::Lagged(n)) => metrics::with_local_recorder(&*rec, || {
                        metrics::counter!("governance_metrics_events_missed_total").increment(n);
                    }),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Self {
            recorder,
            handle,
            breakers,
            node_id,
            cost_usd,
        }
    }

    /// Counts one HTTP request: `route` is the matched path template (`/api/pipeline/{id}`,
    /// never the raw path, whose ids would make a label without bound), or `unmatched`.
    pub fn record_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::counter!("governance_http_requests_total", &labels).increment(1);
            metrics::histogram!("governance_http_request_duration_seconds", &labels)
                .record(seconds);
        });
    }

    /// Renders the Prometheus text exposition, refreshing the gauges first.
    pub async fn render(&self, governance: &Governance) -> governance_core::Result<String> {
        let counts = governance.count_by_status().await?;
        // read from the breakers themselves, not inferred from events: a pipeline refused by
        // the breaker its mode shares with others never sees its own breaker open
        let refused: Vec<&str> = self
            .breakers
            .iter()
            .filter(|(_, b)| b.state() != BreakerState::Closed)
            .map(|(mode, _)| mode.as_str())
            .collect();
        let open = governance.breaker_blocked_count(&refused).await;
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::gauge!("governance_node_info", "node" => self.node_id.clone()).set(1.0);
            for status in PipelineStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("governance_pipelines", "status" => status.as_str()).set(n as f64);
            }
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!("governance_pipelines_live").set(governance.live_count() as f64);
                metrics::gauge!("governance_circuit_breaker_open_pipelines").set(open as f64);
            }
            for (mode, breaker) in &self.breakers {
                metrics::gauge!("governance_circuit_breaker_state", "mode" => mode.clone())
                    .set(breaker.state().as_gauge());
            }
        });
        let mut text = self.handle.render();
        render_cost(
            &mut text,
            f64::from_bits(self.cost_usd.load(Ordering::Relaxed)),
        );
        Ok(text)
    }
}

/// The histogram buckets: LLM latency, HTTP request duration.
fn with_buckets(b: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    b.set_buckets_for_metric(
        Matcher::Full("governance_llm_latency_seconds".into()),
        &LATENCY_BUCKETS,
    )?
    .set_buckets_for_metric(
        Matcher::Full("governance_http_request_duration_seconds".into()),
        &HTTP_BUCKETS,
    )
}

/// The `# HELP` text of every family (the exporter writes `# HELP` only for described ones).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("governance_events_total", "Events emitted, by type.");
    describe_counter!(
        "governance_agent_errors_total",
        "Errors of agents, by kind."
    );
    describe_counter!(
        "governance_circuit_breaker_opens_total",
        "Times a pipeline's circuit breaker opened."
    );
    describe_counter!("governance_agents_revoked_total", "Agents revoked.");
    describe_counter!(
        "governance_gamma_spawns_total",
        "GAMMA mediators spawned, by reason."
    );
    describe_counter!(
        "governance_consensus_total",
        "Pipelines that reached consensus."
    );
    describe_counter!(
        "governance_llm_calls_total",
        "LLM call attempts, by model and outcome (ok, error)."
    );
    describe_counter!(
        "governance_llm_tokens_total",
        "LLM tokens, by kind (prompt, completion)."
    );
    describe_histogram!(
        "governance_llm_latency_seconds",
        "Latency of LLM call attempts in seconds."
    );
    describe_counter!(
        "governance_status_changes_total",
        "Pipeline status changes, by the new status."
    );
    describe_counter!(
        "governance_metrics_events_missed_total",
        "Events the metrics task missed because it fell behind (counters above undercount by this)."
    );
    describe_gauge!(
        "governance_node_info",
        "Always 1; the node label names this node."
    );
    describe_gauge!("governance_pipelines", "Pipelines by status.");
    describe_gauge!(
        "governance_pipelines_live",
        "Pipelines running in this process."
    );
    describe_gauge!(
        "governance_circuit_breaker_open_pipelines",
        "Pipelines whose circuit breaker is open."
    );
    describe_gauge!(
        "governance_circuit_breaker_state",
        "Shared circuit breaker per LLM mode: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        "governance_http_requests_total",
        "HTTP requests, by route (matched path template), method and status."
    );
    describe_histogram!(
        "governance_http_request_duration_seconds",
        "Seconds from request to response head, by route, method and status."
    );
}

/// Adds the cost of an `llm_call` event to the USD total.
fn add_cost(ev: &Event, total: &AtomicU64) {
    if let EventKind::LlmCall {
        cost_usd: Some(c), ..
    } = &ev.kind
        && c.is_finite()
        && *c > 0.0
    {
        let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + c).to_bits())
        });
    }
}

/// Appends the USD total as a float counter.
fn render_cost(text: &mut String, total: f64) {
    use std::fmt::Write as _;
    let _ = write!(
        text,
        "# HELP {COST_TOTAL} USD spent on LLM calls, as reported by the provider.\n\
         # TYPE {COST_TOTAL} counter\n\
         {COST_TOTAL} {total}\n"
    );
}

fn record(ev: &Event) {
    metrics::counter!("governance_events_total", "type" => ev.kind.type_name()).increment(1);
    match &ev.kind {
        EventKind::Error { agent_id, kind, .. } => {
            if agent_id.is_some() {
                metrics::counter!("governance_agent_errors_total", "kind" => kind.clone())
                    .increment(1);
            }
            if kind == "circuit_open" {
                metrics::counter!("governance_circuit_breaker_opens_total").increment(1);
            }
        }
        EventKind::AgentRevoked { .. } => {
            metrics::counter!("governance_agents_revoked_total").increment(1);
        }
        EventKind::GammaSpawned { reason, .. } => {
            metrics::counter!("governance_gamma_spawns_total", "reason" => reason.as_str())
                .increment(1);
        }
        EventKind::ConsensusReached { .. } => {
            metrics::counter!("governance_consensus_total").increment(1);
        }
        EventKind::LlmCall {
            model,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            error,
            ..
        } => {
            let outcome = if error.is_some() { "error" } else { "ok" };
            metrics::counter!("governance_llm_calls_total", "model" => model.clone(), "outcome" => outcome)
                .increment(1);
            metrics::counter!("governance_llm_tokens_total", "kind" => "prompt")
                .increment(u64::from(*prompt_tokens));
            metrics::counter!("governance_llm_tokens_total", "kind" => "completion")
                .increment(u64::from(*completion_tokens));
            #[allow(clippy::cast_precision_loss)]
            metrics::histogram!("governance_llm_latency_seconds")
                .record(*latency_ms as f64 / 1000.0);
        }
        EventKind::StatusChanged { status, .. } => {
            metrics::counter!("governance_status_changes_total", "status" => status.as_str())
                .increment(1);
        }
        _ => {}
    }
}
