//! The client behind governance-core's circuit breaker: five consecutive 503s open it, the
//! sixth call is refused without reaching the server, and after the cool-down a success closes it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use common::{PATH, client, completion, request};
use governance_core::{
    BreakerConfig, BreakerLlm, BreakerState, CircuitBreaker, ErrorKind, LlmClient,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn five_consecutive_503s_open_the_breaker_and_a_success_after_the_cooldown_closes_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"error": {"code": 503, "message": "No instances available"}}),
        ))
        .up_to_n_times(5)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("back")))
        .mount(&server)
        .await;

    // The seed's cool-down on tokio's clock. The calls go over a real socket in real time; then
    // the clock is paused and moved by hand to just before and to the end of the cool-down, so
    // how long the machine takes over the calls cannot matter.
    let cooldown = Duration::from_secs(30);
    let breaker = Arc::new(CircuitBreaker::new({
        let mut conf = BreakerConfig::default();
        conf.failure_threshold = 5;
        conf.cooldown = cooldown;
        conf
    }));
    let llm = BreakerLlm::new(Arc::new(client(&server)), Arc::clone(&breaker));

    for i in 0..4 {
        let e = llm.complete(&request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Llm, "call {i}: {e:?}");
        assert!(e.is_retryable());
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "after {} failures",
            i + 1
        );
    }
    // the breaker opens during the fifth call: between these two instants
    let before_fifth = Instant::now();
    let e = llm.complete(&request()).await.unwrap_err();
    let after_fifth = Instant::now();
    assert_eq!(e.kind(), ErrorKind::Llm, "call 4: {e:?}");
    assert_eq!(breaker.state(), BreakerState::Open);

    let refused = llm.complete(&request()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen, "{refused:?}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        5,
        "the sixth call never reached the server"
    );

    tokio::time::pause();
    // just before the cool-down can have passed: still open, calls refused
    let almost = before_fifth + cooldown - Duration::from_millis(1);
    tokio::time::advance(almost.saturating_duration_since(Instant::now())).await;
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "the cool-down is not over"
    );
    let refused = llm.complete(&request()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen, "{refused:?}");
    // once it has certainly passed: half-open
    tokio::time::advance((after_fifth + cooldown).saturating_duration_since(Instant::now())).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    tokio::time::resume();

    let ok = llm.complete(&request()).await.unwrap();
    assert_eq!(ok.content, "back");
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
}

#[tokio::test]
async fn empty_model_output_does_not_count_toward_the_breaker() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("")))
        .mount(&server)
        .await;
    let breaker = Arc::new(CircuitBreaker::new({
        let mut conf = BreakerConfig::default();
        conf.failure_threshold = 5;
        conf.cooldown = Duration::from_secs(60);
        conf
    }));
    let llm = BreakerLlm::new(Arc::new(client(&server)), Arc::clone(&breaker));
    for _ in 0..6 {
        let e = llm.complete(&request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MalformedOutput);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}
