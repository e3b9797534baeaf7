//! The client behind governance-core's circuit breaker: five consecutive 503s open it, the
//! sixth call is refused without reaching the server, and after the cool-down a success closes it.

mod common;

use std::sync::Arc;
use std::time::Duration;

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

    let cooldown = Duration::from_millis(300);
    let breaker = Arc::new(CircuitBreaker::new(BreakerConfig {
        failure_threshold: 5,
        cooldown,
    }));
    let llm = BreakerLlm::new(Arc::new(client(&server)), Arc::clone(&breaker));

    for i in 0..5 {
        let e = llm.complete(&request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Llm, "call {i}: {e:?}");
        assert!(e.is_retryable());
    }
    assert_eq!(breaker.state(), BreakerState::Open);

    let refused = llm.complete(&request()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen, "{refused:?}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        5,
        "the sixth call never reached the server"
    );

    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
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
    let breaker = Arc::new(CircuitBreaker::new(BreakerConfig {
        failure_threshold: 5,
        cooldown: Duration::from_secs(60),
    }));
    let llm = BreakerLlm::new(Arc::new(client(&server)), Arc::clone(&breaker));
    for _ in 0..6 {
        let e = llm.complete(&request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MalformedOutput);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}
