//! Whole pipelines against an OpenRouter that is down, over a real socket: every way of failing
//! (500s, a 200 whose body is `{"error": …}`, replies that hang past the request timeout,
//! streams that break off) ends the pipeline FAILED with the cause, after the breaker opened and
//! its half-open trials failed — not at `ORCHESTRATION_TIMEOUT`, which is an hour here while the
//! test waits at most a minute. A 402 ends it at once, saying "out of credits".
//! (Real clock: wiremock answers over a real socket, which a paused clock would race; the
//! cool-down is 100 ms.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PATH, completion, config};
use governance_core::{
    Config, Event, EventKind, Governance, PipelineRecord, PipelineStatus as S, SpawnRequest,
};
use governance_openrouter::OpenRouterClient;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Calls that open the breaker (5) plus the half-open trials allowed (2).
const CALLS_UNTIL_GIVEN_UP: usize = 7;

fn engine(server: &MockServer, stream: bool, request_timeout: Duration) -> Governance {
    let mut c = config(server);
    c.request_timeout = request_timeout;
    c.stream_idle_timeout = request_timeout;
    Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf.orchestration_timeout = Duration::from_secs(3600);
            conf.breaker.failure_threshold = 5;
            conf.breaker.cooldown = Duration::from_millis(100);
            conf.breaker_trials = 2;
            conf.stream_llm = stream;
            conf
        })
        .llm(
            "openrouter",
            Arc::new(OpenRouterClient::new(c).expect("client")),
        )
        .default_mode("openrouter")
        .build()
        .expect("engine")
}

async fn run(gov: &Governance) -> (PipelineRecord, Vec<Event>) {
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id))
        .await
        .expect("the pipeline ended long before its one-hour orchestration timeout")
        .unwrap();
    let events = gov.events(&id, 0, usize::MAX).await.unwrap();
    gov.shutdown(Duration::from_secs(5)).await;
    (rec, events)
}

fn statuses(events: &[Event]) -> Vec<S> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StatusChanged { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

async fn mount(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(response)
        .mount(server)
        .await;
}

/// Asserts the report stage ended FAILED naming `cause` and the open breaker, after exactly
/// the calls that opened the breaker and its trials.
async fn assert_gave_up_in_the_report_stage(server: &MockServer, gov: &Governance, cause: &str) {
    let (rec, events) = run(gov).await;
    assert_eq!(rec.status, S::Failed, "{:?}", rec.failure);
    assert_eq!(statuses(&events), vec![S::Spawned, S::Running, S::Failed]);
    let failure = rec.failure.unwrap_or_default();
    assert!(
        failure.contains("the LLM provider (openrouter) is down")
            && failure.contains(cause)
            && failure.contains("the circuit breaker is open and 2 half-open trials failed"),
        "{failure}"
    );
    assert_eq!(requests(server).await, CALLS_UNTIL_GIVEN_UP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openrouter_answering_500_to_everything_ends_the_pipeline_failed_with_the_cause() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(500).set_body_json(
            serde_json::json!({"error": {"code": 500, "message": "Internal Server Error"}}),
        ),
    )
    .await;
    let gov = engine(&server, false, Duration::from_secs(10));
    assert_gave_up_in_the_report_stage(&server, &gov, "HTTP 500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_whose_body_is_an_error_object_ends_the_pipeline_failed_with_the_cause() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"error": {"code": 502, "message": "Provider returned error"}}),
        ),
    )
    .await;
    let gov = engine(&server, false, Duration::from_secs(10));
    assert_gave_up_in_the_report_stage(&server, &gov, "HTTP 502").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_hang_past_the_request_timeout_end_the_pipeline_failed_with_the_cause() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(completion("too late"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let gov = engine(&server, false, Duration::from_millis(300));
    assert_gave_up_in_the_report_stage(&server, &gov, "timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_break_off_end_the_pipeline_failed_with_the_cause() {
    let server = MockServer::start().await;
    let delta = |text: &str| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "gen-2", "model": "m", "choices": [{"index": 0,
                "delta": {"role": "assistant", "content": text}, "finish_reason": null}]})
        )
    };
    // no finish_reason, no [DONE]: the connection just ends
    mount(
        &server,
        ResponseTemplate::new(200).set_body_raw(
            [delta("{\"summary\": "), delta("\"cut")].concat(),
            "text/event-stream",
        ),
    )
    .await;
    let gov = engine(&server, true, Duration::from_secs(10));
    assert_gave_up_in_the_report_stage(&server, &gov, "[DONE]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrouter_going_down_during_orchestration_ends_it_failed_with_the_cause() {
    let server = MockServer::start().await;
    let report = "{\"summary\": \"Read-heavy catalogue\", \"findings\": [\"95% reads\"], \
                  \"complexity\": 0.3}";
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(body_string_contains("Your role: REPORTER"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(report)))
        .with_priority(1)
        .mount(&server)
        .await;
    mount(
        &server,
        ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"error": {"code": 503, "message": "No instances available"}}),
        ),
    )
    .await;
    let gov = engine(&server, false, Duration::from_secs(10));
    let (rec, events) = run(&gov).await;
    assert_eq!(rec.status, S::Failed, "{:?}", rec.failure);
    assert_eq!(
        statuses(&events),
        vec![
            S::Spawned,
            S::Running,
            S::Report,
            S::Orchestrating,
            S::Failed
        ]
    );
    let failure = rec.failure.unwrap_or_default();
    assert!(
        failure.contains("HTTP 503") && failure.contains("the circuit breaker is open"),
        "{failure}"
    );
    assert_eq!(requests(&server).await, 1 + CALLS_UNTIL_GIVEN_UP);
    assert!(
        !events.iter().any(|e| e.kind.type_name() == "agent_revoked"),
        "no agent is blamed for the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_402_ends_the_pipeline_at_once_saying_out_of_credits() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(402).set_body_json(serde_json::json!({"error": {"code": 402,
            "message": "This request requires more credits, or fewer max_tokens."}})),
    )
    .await;
    let gov = engine(&server, false, Duration::from_secs(10));
    let (rec, _) = run(&gov).await;
    assert_eq!(rec.status, S::Failed, "{:?}", rec.failure);
    let failure = rec.failure.unwrap_or_default();
    assert!(
        failure.contains("out of credits") && failure.contains("402"),
        "{failure}"
    );
    assert!(!failure.contains("repeated"), "{failure}");
    assert_eq!(requests(&server).await, 1, "a 402 is not asked again");
}
