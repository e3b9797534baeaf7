//! Helpers shared by the integration tests: a request, a client pointed at a mock server.
#![allow(dead_code)]

use std::time::Duration;

use governance_core::{AgentId, ChatMessage, LlmRequest, PipelineId, Purpose, RequestMeta};
use governance_openrouter::{OpenRouterClient, OpenRouterConfig};
use secrecy::SecretString;
use wiremock::MockServer;

/// The fake key every test uses; tests assert it never leaks.
pub const KEY: &str = "sk-or-v1-THIS-KEY-MUST-NEVER-LEAK-0123456789";

pub fn request() -> LlmRequest {
    LlmRequest {
        model: None,
        fallback_models: Vec::new(),
        messages: vec![
            ChatMessage::system("You are ALPHA."),
            ChatMessage::user("Propose a plan."),
        ]
        .into(),
        max_tokens: 256,
        temperature: 0.2,
        response_format: governance_core::ResponseFormat::Text,
        meta: RequestMeta {
            pipeline_id: PipelineId::new("pipe-1").unwrap(),
            agent_id: AgentId::new("alpha").unwrap(),
            purpose: Purpose::Propose,
            attempt: 0,
        },
    }
}

pub fn config(server: &MockServer) -> OpenRouterConfig {
    let mut c = OpenRouterConfig::new(SecretString::from(KEY));
    c.base_url = format!("{}/api/v1", server.uri());
    c.request_timeout = Duration::from_secs(10);
    c.stream_idle_timeout = Duration::from_secs(10);
    c
}

pub fn client(server: &MockServer) -> OpenRouterClient {
    OpenRouterClient::new(config(server)).unwrap()
}

/// A successful chat completion body.
pub fn completion(content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "gen-1",
        "provider": "Anthropic",
        "model": "anthropic/claude-sonnet-4",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "native_finish_reason": "end_turn",
            "message": {"role": "assistant", "content": content}
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": 0.000111}
    })
}

pub const PATH: &str = "/api/v1/chat/completions";
