//! Streaming (SSE): comment lines, deltas, usage from the last chunk, errors mid-stream,
//! truncated streams and the idle timeout.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{KEY, PATH, client, config, request};
use governance_core::{Error, ErrorKind, FinishReason, LlmClient};
use governance_openrouter::{OpenRouterClient, OpenRouterConfig};
use tokio::io::AsyncWriteExt;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn chunk(json: &serde_json::Value) -> String {
    format!("data: {json}\n\n")
}

fn delta(text: &str) -> String {
    chunk(
        &serde_json::json!({"id": "gen-2", "model": "anthropic/claude-sonnet-4", "provider": "Anthropic",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]}),
    )
}

async fn serve_sse(body: String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(
            serde_json::json!({"stream": true, "usage": {"include": true}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&server)
        .await;
    server
}

async fn stream(server: &MockServer) -> (Result<governance_core::LlmResponse, Error>, Vec<String>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = Arc::clone(&seen);
        move |d: &str| seen.lock().unwrap().push(d.to_owned())
    };
    let r = client(server).complete_streaming(&request(), &sink).await;
    let seen = seen.lock().unwrap().clone();
    (r, seen)
}

#[tokio::test]
async fn streams_deltas_skips_comments_and_takes_usage_from_the_last_chunk() {
    let body = [
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        delta("Hel"),
        delta("lo, "),
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        delta("world"),
        chunk(&serde_json::json!({"id": "gen-2", "model": "openai/gpt-4o",
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "length"}]})),
        chunk(&serde_json::json!({"id": "gen-2", "model": "openai/gpt-4o", "choices": [],
            "usage": {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43, "cost": 0.0021}})),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let server = serve_sse(body).await;
    let (r, seen) = stream(&server).await;
    let r = r.unwrap();
    assert_eq!(seen, vec!["Hel", "lo, ", "world"]);
    assert_eq!(r.content, "Hello, world");
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(r.model, "openai/gpt-4o");
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (40, 3));
    assert_eq!(r.usage.cost_usd, Some(0.0021));
}

#[tokio::test]
async fn an_error_chunk_mid_stream_is_a_typed_error() {
    let body = [
        delta("partial "),
        chunk(&serde_json::json!({"id": "gen-3", "object": "chat.completion.chunk", "model": "m", "provider": "p",
            "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]})),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let server = serve_sse(body).await;
    let (r, seen) = stream(&server).await;
    let e = r.unwrap_err();
    assert_eq!(seen, vec!["partial "]);
    match &e {
        Error::Llm(f) => {
            assert_eq!(f.provider_code.as_deref(), Some("server_error"));
            assert!(f.retryable);
            assert!(f.message.contains("Provider disconnected"), "{}", f.message);
        }
        other => panic!("expected Llm, got {other:?}"),
    }
}

#[tokio::test]
async fn a_finish_reason_error_without_an_error_object_is_an_error() {
    let body = [
        delta("a"),
        chunk(
            &serde_json::json!({"choices": [{"delta": {"content": ""}, "finish_reason": "error"}]}),
        ),
    ]
    .concat();
    let (r, _) = stream(&serve_sse(body).await).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Llm);
}

#[tokio::test]
async fn an_error_chunk_with_a_numeric_code_takes_it_as_the_status() {
    let body = chunk(&serde_json::json!({"error": {"code": 429, "message": "slow down"}}));
    let (r, _) = stream(&serve_sse(body).await).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, Error::Llm(f) if f.status == Some(429) && f.retryable),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_stream_cut_before_its_end_is_a_retryable_failure() {
    let (r, _) = stream(&serve_sse([delta("Hel"), delta("lo")].concat()).await).await;
    let e = r.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("[DONE]"), "{e}");
}

#[tokio::test]
async fn a_chunk_that_is_not_json_is_a_retryable_failure() {
    let (r, _) =
        stream(&serve_sse([delta("a"), "data: {\"choices\": [\n\n".to_owned()].concat()).await)
            .await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Llm);
    assert!(e.is_retryable());
}

#[tokio::test]
async fn an_empty_stream_is_malformed_output() {
    let body = [
        chunk(
            &serde_json::json!({"choices": [{"delta": {"content": ""}, "finish_reason": "stop"}]}),
        ),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let (r, _) = stream(&serve_sse(body).await).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::MalformedOutput);
}

#[tokio::test]
async fn an_http_error_before_the_stream_starts_is_mapped_like_a_plain_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "3")
                .set_body_json(
                    serde_json::json!({"error": {"code": 429, "message": "Rate limit exceeded"}}),
                ),
        )
        .mount(&server)
        .await;
    let (r, seen) = stream(&server).await;
    let e = r.unwrap_err();
    assert!(seen.is_empty());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
}

/// A server that sends the headers and one chunk, then goes silent (wiremock can only delay a
/// whole response).
async fn stalling_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0_u8; 65536];
        let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
        let piece = delta("first");
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let msg = format!("{head}{:x}\r\n{piece}\r\n", piece.len());
        sock.write_all(msg.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    format!("http://{addr}/api/v1")
}

#[tokio::test]
async fn a_silent_stream_hits_the_idle_timeout() {
    let mut cfg = OpenRouterConfig::new(secrecy::SecretString::from(KEY));
    cfg.base_url = stalling_server().await;
    cfg.stream_idle_timeout = Duration::from_millis(300);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = Arc::clone(&seen);
        move |d: &str| seen.lock().unwrap().push(d.to_owned())
    };
    let e = OpenRouterClient::new(cfg)
        .unwrap()
        .complete_streaming(&request(), &sink)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(
        e.to_string().contains("OPENROUTER_STREAM_IDLE_TIMEOUT"),
        "{e}"
    );
    assert_eq!(*seen.lock().unwrap(), vec!["first"]);
}

#[tokio::test]
async fn headers_that_never_come_are_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.request_timeout = Duration::from_millis(200);
    let e = OpenRouterClient::new(cfg)
        .unwrap()
        .complete_streaming(&request(), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
}
