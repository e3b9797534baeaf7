//! Prometheus metrics: counters derived from the live event stream by a background task, and
//! gauges (pipelines by status, circuit breakers) read when `/metrics` is scraped, and
//! `governance_node_info{node="<id>"} 1` naming the node (see [`crate::HttpSettings::node_id`]).
//!
//! The recorder is local to one [`crate::AppState`] (never installed globally), so several
//! routers in one process (tests, embedding services) keep separate numbers.

use std::sync::Arc;

use governance_core::{BreakerState, CircuitBreaker, Event, EventKind, Governance, PipelineStatus};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metrics of one router.
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    breakers: Vec<(String, Arc<CircuitBreaker>)>,
    /// This node's id, the `node` label of `governance_node_info`.
    node_id: String,
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
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("governance_llm_latency_seconds".into()),
                &LATENCY_BUCKETS,
            )
            .map_or_else(
                |_| PrometheusBuilder::new().build_recorder(),
                PrometheusBuilder::build_recorder,
            );
        let handle = recorder.handle();
        let recorder = Arc::new(recorder);
        let mut rx = governance.subscribe();
        let rec = recorder.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = shutdown.cancelled() => break,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) => metrics::with_local_recorder(&*rec, || record(&ev)),
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
        }
    }

    /// Renders the Prometheus text exposition, refreshing the gauges first.
    pub async fn render(&self, governance: &Governance) -> governance_core::Result<String> {
        let counts = governance.registry().count_by_status().await?;
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
        Ok(self.handle.render())
    }
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
            cost_usd,
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
            if let Some(c) = cost_usd {
                metrics::gauge!("governance_llm_cost_usd_total").increment(*c);
            }
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
