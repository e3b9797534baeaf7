//! `governance_circuit_breaker_open_pipelines` over a real socket: a pipeline whose calls a
//! circuit breaker refuses counts while it is refused — its own breaker opened after the
//! provider's 500s, or the breaker `serve` shares among all pipelines of an LLM mode is open —
//! and no longer counts once it has ended.

use std::sync::Arc;
use std::time::Duration;

use governance_core::{
    BreakerConfig, BreakerLlm, BreakerState, CircuitBreaker, Config, Error, Fault, FaultKind,
    Governance, LlmFailure, LocalLlm, LocalLlmConfig, PipelineId, PipelineStatus,
};
use governance_http::{AppState, HttpSettings};

const GAUGE: &str = "governance_circuit_breaker_open_pipelines";

struct Server {
    addr: std::net::SocketAddr,
    gov: Governance,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

const AN_HOUR: BreakerConfig = BreakerConfig::new(5, Duration::from_secs(3600));

/// A server whose local LLM answers 500 to everything (breakers open after 5 failures and stay
/// open for an hour); with `shared`, its client is behind that breaker too, as `serve` wires
/// OpenRouter, and the breaker is reported on `/metrics`.
async fn start(shared: Option<Arc<CircuitBreaker>>) -> Server {
    let llm = Arc::new(LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.faults = vec![Fault::new(None, None, FaultKind::Status(500), u32::MAX)];
        conf
    }));
    let mut settings = HttpSettings::default();
    let client: Arc<dyn governance_core::LlmClient> = match shared {
        Some(b) => {
            settings.breakers = vec![("local".to_owned(), b.clone())];
            Arc::new(BreakerLlm::new(llm, b))
        }
        None => llm,
    };
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.breaker = AN_HOUR;
            conf.orchestration_timeout = Duration::from_secs(7200);
            conf
        })
        .llm("local", client)
        .build()
        .unwrap();
    let state = AppState::new(gov.clone(), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(governance_http::serve(
        listener,
        state,
        async move { s.cancelled().await },
        Duration::from_secs(10),
    ));
    Server {
        addr,
        gov,
        stop,
        task,
        client: reqwest::Client::new(),
    }
}

impl Server {
    async fn spawn(&self) -> PipelineId {
        let r = self
            .client
            .post(format!("http://{}/api/spawn", self.addr))
            .json(&serde_json::json!({"objective": "Design a caching strategy", "auto_continue": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        PipelineId::new(body["pipeline_id"].as_str().unwrap()).unwrap()
    }

    async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The gauge's value, polled until it equals `want` (bounded: fails only on a hang).
    async fn gauge_becomes(&self, want: u64) -> String {
        let needle = format!("{GAUGE} {want}\n");
        let mut text = String::new();
        for _ in 0..400 {
            text = self.metrics().await;
            if text.contains(&needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{GAUGE} never became {want}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_whose_breaker_is_open_counts_in_metrics_until_it_ends() {
    let s = start(None).await;
    let text = s.metrics().await;
    assert!(text.contains(&format!("{GAUGE} 0\n")), "{text}");
    let id = s.spawn().await;

    // the REPORTER's five failed calls open the pipeline's breaker; the cool-down is an hour
    s.gauge_becomes(1).await;
    let rec = s.gov.get(&id).await.unwrap();
    assert!(!rec.status.is_terminal(), "{:?}", rec.status);

    assert_eq!(s.gov.stop(&id).await.unwrap(), PipelineStatus::Stopped);
    s.gauge_becomes(0).await;

    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_refused_by_the_shared_breaker_of_its_mode_counts_in_metrics() {
    // other pipelines' failures opened the breaker `serve` keeps around the mode's client
    let shared = Arc::new(CircuitBreaker::new(AN_HOUR));
    for _ in 0..5 {
        shared.acquire().unwrap();
        shared.record(Err(&Error::Llm(LlmFailure {
            status: Some(500),
            provider_code: None,
            message: "down".into(),
            retryable: true,
            retry_after: None,
        })));
    }
    assert_eq!(shared.state(), BreakerState::Open);
    let s = start(Some(shared)).await;
    let text = s.metrics().await;
    assert!(
        text.contains(&format!("{GAUGE} 0\n")),
        "no pipeline yet: {text}"
    );

    let id = s.spawn().await;
    // the REPORTER's first call is refused by the shared breaker, and waits out its cool-down
    let text = s.gauge_becomes(1).await;
    assert!(
        text.contains("governance_circuit_breaker_state{mode=\"local\"} 2"),
        "{text}"
    );
    assert_eq!(s.gov.stop(&id).await.unwrap(), PipelineStatus::Stopped);
    s.gauge_becomes(0).await;

    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}
