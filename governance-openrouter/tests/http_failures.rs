//! Every failure OpenRouter can produce becomes the right typed error (one attempt per call).

mod common;

use std::time::Duration;

use common::{KEY, PATH, client, completion, config, request};
use governance_core::{Error, ErrorKind, LlmClient};
use governance_openrouter::OpenRouterClient;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn fail_with(template: ResponseTemplate) -> (Error, MockServer) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    let err = client(&server).complete(&request()).await.unwrap_err();
    assert!(!format!("{err:?}").contains(KEY), "key leaked into {err:?}");
    (err, server)
}

fn or_error(code: u16, message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"code": code, "message": message}})
}

fn llm(e: &Error) -> &governance_core::LlmFailure {
    match e {
        Error::Llm(f) => f,
        other => panic!("expected Error::Llm, got {other:?}"),
    }
}

#[tokio::test]
async fn status_401_is_unauthorized_and_not_retryable() {
    let (e, server) = fail_with(
        ResponseTemplate::new(401).set_body_json(or_error(401, "No auth credentials found")),
    )
    .await;
    assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("OPENROUTER_API_KEY"), "{e}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "one attempt only"
    );
}

#[tokio::test]
async fn client_errors_are_not_retryable_and_say_what_they_mean() {
    for (status, meaning) in [
        (400, "bad request"),
        (402, "out of credits"),
        (403, "moderation"),
        (404, "unknown model"),
    ] {
        let (e, _s) = fail_with(
            ResponseTemplate::new(status).set_body_json(or_error(status, "provider said no")),
        )
        .await;
        let f = llm(&e);
        assert_eq!(f.status, Some(status));
        assert_eq!(
            f.provider_code.as_deref(),
            Some(status.to_string().as_str())
        );
        assert!(!f.retryable, "{status}");
        assert!(f.message.contains(meaning), "{status}: {}", f.message);
        assert!(f.message.contains("provider said no"), "{}", f.message);
    }
}

#[tokio::test]
async fn moderation_metadata_that_may_echo_the_prompt_stays_out_of_the_message() {
    let body = serde_json::json!({"error": {"code": 403, "message": "Your input was flagged",
        "metadata": {"reasons": ["harassment"], "flagged_input": "Propose a plan.", "provider_name": "OpenAI", "model_slug": "x"}}});
    let (e, _s) = fail_with(ResponseTemplate::new(403).set_body_json(body)).await;
    let msg = e.to_string();
    assert!(msg.contains("harassment"), "{msg}");
    assert!(!msg.contains("Propose a plan."), "{msg}");
}

#[tokio::test]
async fn status_429_keeps_retry_after_in_seconds() {
    let (e, _s) = fail_with(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "7")
            .set_body_json(or_error(429, "Rate limit exceeded")),
    )
    .await;
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(llm(&e).status, Some(429));
}

#[tokio::test]
async fn status_429_reads_retry_after_as_an_http_date() {
    let when = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
    let when = when.replace("+0000", "GMT");
    let (e, _s) =
        fail_with(ResponseTemplate::new(429).insert_header("Retry-After", when.as_str())).await;
    let wait = e.retry_after().expect("a date is read");
    assert!(
        wait > Duration::from_secs(60) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
}

#[tokio::test]
async fn status_429_without_retry_after_leaves_the_backoff_to_the_caller() {
    let (e, _s) = fail_with(ResponseTemplate::new(429)).await;
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), None);
}

#[tokio::test]
async fn status_408_and_5xx_are_retryable() {
    for status in [408, 500, 502, 503, 504] {
        let (e, _s) =
            fail_with(ResponseTemplate::new(status).set_body_string("<html>upstream down</html>"))
                .await;
        let f = llm(&e);
        assert_eq!(f.status, Some(status));
        assert!(f.retryable, "{status}");
        assert!(
            f.message.contains("upstream down"),
            "non-JSON bodies keep a snippet: {}",
            f.message
        );
    }
}

#[tokio::test]
async fn a_200_with_an_error_body_takes_its_code_as_the_status() {
    let (e, _s) = fail_with(
        ResponseTemplate::new(200).set_body_json(or_error(502, "Provider returned error")),
    )
    .await;
    let f = llm(&e);
    assert_eq!(f.status, Some(502));
    assert!(f.retryable);
    let (e, _s) =
        fail_with(ResponseTemplate::new(200).set_body_json(or_error(402, "Insufficient credits")))
            .await;
    assert_eq!(llm(&e).status, Some(402));
    assert!(!e.is_retryable());
    let (e, _s) =
        fail_with(ResponseTemplate::new(200).set_body_json(or_error(401, "User not found."))).await;
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn a_200_with_a_non_numeric_error_code_is_a_retryable_provider_failure() {
    let body =
        serde_json::json!({"error": {"code": "server_error", "message": "Provider disconnected"}});
    let (e, _s) = fail_with(ResponseTemplate::new(200).set_body_json(body)).await;
    let f = llm(&e);
    assert_eq!(f.status, None);
    assert_eq!(f.provider_code.as_deref(), Some("server_error"));
    assert!(f.retryable);
}

#[tokio::test]
async fn malformed_json_is_a_retryable_llm_failure() {
    let (e, _s) = fail_with(ResponseTemplate::new(200).set_body_string("this is not json")).await;
    let f = llm(&e);
    assert!(f.retryable);
    assert!(f.message.contains("not valid"), "{}", f.message);
}

#[tokio::test]
async fn truncated_json_is_a_retryable_llm_failure() {
    let full = completion("hello").to_string();
    let cut = &full[..full.len() / 2];
    let (e, _s) = fail_with(ResponseTemplate::new(200).set_body_string(cut)).await;
    let f = llm(&e);
    assert!(f.retryable);
    assert!(f.message.contains("truncated"), "{}", f.message);
}

#[tokio::test]
async fn empty_content_is_malformed_output() {
    for body in [
        completion(""),
        completion("   \n"),
        serde_json::json!({"model": "m", "choices": []}),
        serde_json::json!({"model": "m", "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": null}}]}),
    ] {
        let (e, _s) = fail_with(ResponseTemplate::new(200).set_body_json(body)).await;
        assert_eq!(e.kind(), ErrorKind::MalformedOutput, "{e:?}");
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.request_timeout = Duration::from_millis(200);
    let e = OpenRouterClient::new(cfg)
        .unwrap()
        .complete(&request())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("OPENROUTER_REQUEST_TIMEOUT"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_llm_failure() {
    // a port nobody listens on (wiremock pools its servers, so dropping one keeps it alive)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = governance_openrouter::OpenRouterConfig::new(secrecy::SecretString::from(KEY));
    cfg.base_url = format!("http://127.0.0.1:{port}/api/v1");
    let e = OpenRouterClient::new(cfg)
        .unwrap()
        .complete(&request())
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        matches!(e.kind(), ErrorKind::Llm | ErrorKind::Timeout),
        "{e:?}"
    );
}
