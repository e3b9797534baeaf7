//! Per-role settings reach OpenRouter: a whole pipeline in `openrouter` mode against a mock
//! OpenRouter over a real socket, with the engine's settings for ALPHA and the spawn request's
//! for BETA. Each role's upstream requests carry its model, fallbacks, temperature and
//! `max_tokens`, its instructions appended to its system prompt; the `llm_call` events and the
//! agents' records name the model each agent used.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PATH, config};
use governance_core::{
    Config, EventKind, Governance, PipelineStatus, RoleSettings, RoleSettingsMap, SpawnRequest,
};
use governance_openrouter::OpenRouterClient;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ALPHA_MODEL: &str = "openai/gpt-4o-mini";
const BETA_MODEL: &str = "anthropic/claude-sonnet-4";
const DEFAULT_MODEL: &str = "meta-llama/llama-3.1-70b";

/// Answers by the prompt's role line and names the requested model as the one that answered.
struct ByRole;

impl Respond for ByRole {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let text = req.body.clone();
        let text = String::from_utf8_lossy(&text);
        let content = if text.contains("Your role: REPORTER") {
            r#"{"summary": "Read-heavy service.", "findings": ["95% reads"], "complexity": 0.3}"#
        } else if text.contains("Build the final solution") {
            r#"{"solution": "Cache-aside in Redis with TTLs per entity."}"#
        } else if text.contains("Evaluate the proposal") {
            r#"{"approve": true, "score": 0.9, "rationale": "fits a read-heavy service"}"#
        } else {
            r#"{"title": "Cache-aside", "content": "Cache entities in Redis with TTLs."}"#
        };
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "gen-1",
            "provider": "Mock",
            "model": body["model"],
            "object": "chat.completion",
            "created": 1_760_000_000,
            "choices": [{
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content}
            }],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "cost": 0.001}
        }))
    }
}

fn system_prompt(body: &Value) -> &str {
    body["messages"][0]["content"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_asks_with_its_own_model_and_settings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ByRole)
        .mount(&server)
        .await;
    let mut or_config = config(&server);
    or_config.model = DEFAULT_MODEL.into();
    let engine_roles = RoleSettingsMap::from([(
        "ALPHA".to_owned(),
        RoleSettings {
            model: Some(ALPHA_MODEL.into()),
            temperature: Some(0.9),
            ..RoleSettings::default()
        },
    )]);
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf
        })
        .llm(
            "openrouter",
            Arc::new(OpenRouterClient::new(or_config).unwrap()),
        )
        .default_mode("openrouter")
        .role_settings(engine_roles)
        .build()
        .unwrap();

    let mut req = SpawnRequest::new("Design a caching strategy for the catalogue service");
    req.roles.insert(
        "BETA".into(),
        RoleSettings {
            model: Some(BETA_MODEL.into()),
            fallback_models: Some(vec!["openai/gpt-4o".into()]),
            temperature: Some(0.0),
            max_tokens: Some(300),
            instructions: Some("Reject anything without a rollback plan.".into()),
            ..RoleSettings::default()
        },
    );
    let id = gov.spawn(req).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);

    let bodies: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let of = |role: &str| -> Vec<&Value> {
        bodies
            .iter()
            .filter(|b| system_prompt(b).contains(&format!("Your role: {role}")))
            .collect()
    };
    let (beta, alpha, reporter) = (of("BETA"), of("ALPHA"), of("REPORTER"));
    assert!(!beta.is_empty() && !alpha.is_empty() && !reporter.is_empty());
    for b in &beta {
        assert_eq!(b["model"], BETA_MODEL);
        assert_eq!(
            b["models"],
            serde_json::json!([BETA_MODEL, "openai/gpt-4o"])
        );
        assert_eq!(b["temperature"], 0.0);
        assert_eq!(b["max_tokens"], 300);
        assert!(
            system_prompt(b).ends_with("\n\nReject anything without a rollback plan."),
            "{}",
            system_prompt(b)
        );
    }
    for a in &alpha {
        assert_eq!(a["model"], ALPHA_MODEL);
        assert!(a.get("models").is_none(), "no fallbacks set for ALPHA");
        assert!((a["temperature"].as_f64().unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(
            a["max_tokens"],
            Config::default().budgets.max_completion_tokens
        );
        assert!(!system_prompt(a).contains("rollback plan"));
    }
    for r in &reporter {
        assert_eq!(r["model"], DEFAULT_MODEL, "REPORTER has no settings");
        assert!((r["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    }

    // the ledger and the record name the model each agent used
    let events = gov.events(&id, 0, usize::MAX).await.unwrap();
    let models_of = |agent: &str| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::LlmCall {
                    agent_id, model, ..
                } if agent_id.as_str() == agent => Some(model.clone()),
                _ => None,
            })
            .collect()
    };
    assert!(!models_of("BETA").is_empty());
    assert!(models_of("BETA").iter().all(|m| m == BETA_MODEL));
    assert!(models_of("ALPHA").iter().all(|m| m == ALPHA_MODEL));
    let agent_model = |agent: &str| {
        rec.agents
            .iter()
            .find(|a| a.agent_id == agent)
            .and_then(|a| a.model.clone())
    };
    assert_eq!(agent_model("BETA").as_deref(), Some(BETA_MODEL));
    assert_eq!(agent_model("ALPHA").as_deref(), Some(ALPHA_MODEL));
    assert_eq!(agent_model("REPORTER").as_deref(), Some(DEFAULT_MODEL));
    // the resolved settings are the pipeline's, for a resume
    assert_eq!(rec.roles["ALPHA"].model.as_deref(), Some(ALPHA_MODEL));
    assert_eq!(rec.roles["BETA"].max_tokens, Some(300));
    gov.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_spawn_with_bad_role_settings_is_refused_before_anything_is_sent() {
    let server = MockServer::start().await;
    let gov = Governance::builder()
        .llm(
            "openrouter",
            Arc::new(OpenRouterClient::new(config(&server)).unwrap()),
        )
        .default_mode("openrouter")
        .build()
        .unwrap();
    let mut req = SpawnRequest::new("Design a caching strategy");
    req.roles.insert(
        "BETA".into(),
        RoleSettings {
            model: Some(String::new()),
            ..RoleSettings::default()
        },
    );
    let err = gov.spawn(req).await.unwrap_err();
    assert!(err.to_string().contains("roles.BETA.model"), "{err}");
    let mut req = SpawnRequest::new("Design a caching strategy");
    req.roles.insert("CRITIC".into(), RoleSettings::default());
    let err = gov.spawn(req).await.unwrap_err();
    assert!(err.to_string().contains("roles.CRITIC"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
    assert!(gov.list(&Default::default()).await.unwrap().is_empty());
}
