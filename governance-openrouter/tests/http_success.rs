//! A successful call: what is sent (key, attribution, fallbacks, usage accounting) and what is
//! recorded (content, usage, cost, model used, finish reason, latency).

mod common;

use common::{KEY, PATH, client, completion, config, request};
use governance_core::{FinishReason, LlmClient};
use governance_openrouter::OpenRouterClient;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn records_content_usage_cost_and_the_model_that_answered() {
    let server = MockServer::start().await;
    let mut body = completion("ALPHA proposes X.");
    body["model"] = "openai/gpt-4o".into();
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let r = client(&server).complete(&request()).await.unwrap();
    assert_eq!(r.content, "ALPHA proposes X.");
    assert_eq!(
        r.model, "openai/gpt-4o",
        "the model that answered, not the one asked for"
    );
    assert_eq!(r.usage.prompt_tokens, 12);
    assert_eq!(r.usage.completion_tokens, 5);
    assert_eq!(r.usage.cost_usd, Some(0.000_111));
    assert_eq!(r.finish_reason, FinishReason::Stop);
    assert!(r.latency > std::time::Duration::ZERO);
}

#[tokio::test]
async fn sends_the_key_attribution_headers_fallbacks_and_asks_for_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("http-referer", "https://governance.example"))
        .and(header("x-title", "governance tests"))
        .and(body_partial_json(serde_json::json!({
            "model": "anthropic/claude-sonnet-4",
            "models": ["anthropic/claude-sonnet-4", "openai/gpt-4o", "google/gemini-2.5-pro"],
            "usage": {"include": true},
            "stream": false,
            "max_tokens": 256,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": "You are ALPHA."}, {"role": "user", "content": "Propose a plan."}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.http_referer = Some("https://governance.example".into());
    cfg.app_title = Some("governance tests".into());
    cfg.fallback_models = vec!["openai/gpt-4o".into(), "google/gemini-2.5-pro".into()];
    let mut req = request();
    req.response_format = governance_core::ResponseFormat::JsonObject;
    let r = OpenRouterClient::new(cfg)
        .unwrap()
        .complete(&req)
        .await
        .unwrap();
    assert_eq!(r.content, "ok");
}

#[tokio::test]
async fn the_request_model_overrides_the_default_and_no_models_list_without_fallbacks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .mount(&server)
        .await;
    let mut req = request();
    req.model = Some("meta-llama/llama-3.3-70b-instruct".into());
    client(&server).complete(&req).await.unwrap();
    let sent: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["model"], "meta-llama/llama-3.3-70b-instruct");
    assert!(sent.get("models").is_none(), "{sent}");
    assert!(sent.get("response_format").is_none(), "{sent}");
}

#[tokio::test]
async fn parses_a_recorded_openrouter_response() {
    let fixture = include_str!("fixtures/openrouter_chat_completion.json");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(fixture, "application/json"))
        .mount(&server)
        .await;
    let r = client(&server).complete(&request()).await.unwrap();
    assert!(
        r.content.starts_with("```json\n{\"proposals\""),
        "{}",
        r.content
    );
    assert_eq!(r.model, "anthropic/claude-sonnet-4");
    assert_eq!(
        r.finish_reason,
        FinishReason::Length,
        "truncated by max_tokens"
    );
    assert_eq!(r.usage.prompt_tokens, 1843);
    assert_eq!(r.usage.completion_tokens, 256);
    assert_eq!(r.usage.total_tokens(), 2099);
    assert_eq!(r.usage.cost_usd, Some(0.009_369));
}

#[tokio::test]
async fn missing_usage_is_estimated_without_cost() {
    let server = MockServer::start().await;
    let mut body = completion("twelve chars");
    body.as_object_mut().unwrap().remove("usage");
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let r = client(&server).complete(&request()).await.unwrap();
    assert_eq!(r.usage.completion_tokens, 3);
    assert_eq!(r.usage.prompt_tokens, request().estimated_prompt_tokens());
    assert_eq!(r.usage.cost_usd, None);
}

#[test]
fn debug_of_client_and_config_never_shows_the_key() {
    let cfg = governance_openrouter::OpenRouterConfig::new(secrecy::SecretString::from(KEY));
    let c = OpenRouterClient::new(cfg.clone()).unwrap();
    for text in [format!("{cfg:?}"), format!("{c:?}"), format!("{c:#?}")] {
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("REDACTED"), "{text}");
    }
}
