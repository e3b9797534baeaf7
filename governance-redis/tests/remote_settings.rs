//! A role played by a worker process asks with its full per-role settings, not only its model:
//! the owner (ALPHA local, BETA a `RemoteRole`) spawns a pipeline whose request sets BETA's
//! model, fallback models, temperature, `max_tokens` and instructions; an in-process `Worker`
//! on the same real redis-server plays BETA with an OpenRouter client against its own mock
//! OpenRouter (wiremock, a real socket). Every request that mock receives is BETA's and
//! carries those settings; the work item the owner queued carries them too.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    Agent, Beta, Config, Governance, MemoryStore, PipelineStatus, RoleSettings, SpawnRequest,
};
use governance_openrouter::{OpenRouterClient, OpenRouterConfig};
use governance_redis::{RemoteRole, Worker};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PATH: &str = "/api/v1/chat/completions";
const BETA_MODEL: &str = "anthropic/claude-sonnet-4";
const INSTRUCTIONS: &str = "Reject anything without a rollback plan.";

/// Answers by what the prompt asks for, naming the requested model as the one that answered.
struct ByPrompt;

impl Respond for ByPrompt {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let text = String::from_utf8_lossy(&req.body);
        let content = if text.contains("Your role: REPORTER") {
            r#"{"summary": "Read-heavy service.", "findings": ["95% reads"], "complexity": 0.3}"#
        } else if text.contains("Build the final solution") {
            r#"{"solution": "Cache-aside in Redis with TTLs per entity."}"#
        } else if text.contains("Evaluate the proposal") {
            r#"{"approve": true, "score": 0.9, "rationale": "fits a read-heavy service"}"#
        } else {
            r#"{"title": "Cache-aside", "content": "Cache entities in Redis with TTLs."}"#
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "gen-1",
            "provider": "Mock",
            "model": body["model"],
            "object": "chat.completion",
            "created": 1_760_000_000,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "cost": 0.001}
        }))
    }
}

async fn mock_openrouter() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ByPrompt)
        .mount(&server)
        .await;
    server
}

fn openrouter(server: &MockServer) -> Arc<OpenRouterClient> {
    let mut c = OpenRouterConfig::new(SecretString::from("sk-or-v1-test-key-0123456789"));
    c.base_url = format!("{}/api/v1", server.uri());
    c.model = "meta-llama/llama-3.1-70b".into();
    c.request_timeout = Duration::from_secs(10);
    c.stream_idle_timeout = Duration::from_secs(10);
    Arc::new(OpenRouterClient::new(c).expect("client builds"))
}

fn config() -> Config {
    let mut conf = Config::default();
    conf.agent_poll_interval = Duration::from_millis(20);
    conf
}

fn system_prompt(body: &Value) -> &str {
    body["messages"][0]["content"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_playing_beta_asks_with_the_pipelines_settings_for_beta() {
    let redis = RedisServer::start();
    let b = backend(&redis).await;
    let (owner_upstream, worker_upstream) = (mock_openrouter().await, mock_openrouter().await);
    let gov = Governance::builder()
        .config(config())
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()))
        .llm("openrouter", openrouter(&owner_upstream))
        .default_mode("openrouter")
        .remote_role(Arc::new(RemoteRole::new(&b, "BETA", true).unwrap()))
        .build()
        .expect("owner builds");
    let roles: Vec<Arc<dyn Agent>> = vec![Arc::new(Beta)];
    let worker = Worker::new(
        &backend(&redis).await,
        "w1",
        roles,
        openrouter(&worker_upstream),
        config(),
        Duration::from_secs(2),
    )
    .expect("worker builds");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(worker.run(cancel.clone()));

    let mut req = SpawnRequest::new("Design a caching strategy for the catalogue service");
    req.roles.insert(
        "BETA".into(),
        RoleSettings {
            model: Some(BETA_MODEL.into()),
            fallback_models: Some(vec!["openai/gpt-4o".into()]),
            temperature: Some(0.0),
            max_tokens: Some(300),
            instructions: Some(INSTRUCTIONS.into()),
            ..RoleSettings::default()
        },
    );
    let id = gov.spawn(req).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    cancel.cancel();
    running.await.unwrap().unwrap();

    let bodies: Vec<Value> = worker_upstream
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(!bodies.is_empty(), "the worker asked its upstream");
    for body in &bodies {
        assert!(
            system_prompt(body).contains("Your role: BETA"),
            "only BETA is played by the worker: {}",
            system_prompt(body)
        );
        assert_eq!(body["model"], BETA_MODEL);
        assert_eq!(body["models"], json!([BETA_MODEL, "openai/gpt-4o"]));
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["max_tokens"], 300);
        assert!(
            system_prompt(body).ends_with(&format!("\n\n{INSTRUCTIONS}")),
            "{}",
            system_prompt(body)
        );
    }
    // the owner asked nothing for BETA: the role is the worker's
    let owner_bodies = owner_upstream.received_requests().await.unwrap();
    assert!(owner_bodies.iter().all(|r| {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        !system_prompt(&body).contains("Your role: BETA")
    }));
    // BETA's approval (required by default) is in the consensus, cast by the worker
    let voters = rec
        .results
        .expect("results")
        .consensus
        .expect("consensus")
        .voters;
    assert!(voters.iter().any(|v| v.as_str() == "BETA"), "{voters:?}");
}

#[test]
fn a_work_item_of_an_older_owner_reads_with_default_settings() {
    let item: governance_redis::WorkItem = serde_json::from_str(
        r#"{"v":2,"pipeline_id":"p-1","role":"BETA","objective":"o","quorum":2,"model":"m"}"#,
    )
    .unwrap();
    assert_eq!(item.settings, RoleSettings::default());
    assert!(item.required.is_empty() && item.mediators.is_empty());
}
