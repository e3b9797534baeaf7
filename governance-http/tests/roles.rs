//! `roles` on `POST /api/spawn` over a real socket: per-role settings accepted and shown by
//! `/api/pipeline/{id}/orchestration` (each agent's model, the resolved settings); bad
//! settings refused with 400 naming the field, and nothing spawned. `required` (whose approval
//! consensus needs): accepted and in the consensus; contradictions 400 naming
//! `roles.<ROLE>.required`, also against the server's own settings.

mod common;

use std::sync::Arc;

use common::{Opts, error_code, start, start_with};
use governance_core::{
    Agent, AgentContext, AgentOutcome, Result, RoleSettings, RoleSettingsMap, async_trait,
};
use serde_json::json;

/// Approves every proposal once.
#[derive(Debug)]
struct Critic;

#[async_trait]
impl Agent for Critic {
    fn role(&self) -> &str {
        "CRITIC"
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut inbox = ctx.inbox().await?;
        let mut seen = Vec::new();
        loop {
            if ctx.board().consensus().await?.is_some() {
                return Ok(AgentOutcome::Done);
            }
            for p in ctx.board().proposals().await? {
                if !seen.contains(&p.id) {
                    seen.push(p.id.clone());
                    if ctx.votes_count() {
                        ctx.vote(&p.id, true, 1.0, "fine by me").await?;
                    }
                }
            }
            ctx.wait_messages(&mut inbox).await?;
        }
    }
}

/// A server with CRITIC, whose votes the server's settings do not count.
async fn start_with_critic() -> common::Server {
    start_with(Opts {
        roles: vec![Arc::new(Critic)],
        role_settings: RoleSettingsMap::from([(
            "CRITIC".to_owned(),
            RoleSettings {
                votes: Some(false),
                ..RoleSettings::default()
            },
        )]),
        ..Opts::default()
    })
    .await
}

#[tokio::test]
async fn spawn_with_a_required_role_puts_it_in_the_consensus() {
    let s = start_with_critic().await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Design a caching strategy", "auto_continue": true,
                    "roles": {"CRITIC": {"votes": true, "required": true},
                              "BETA": {"required": true}, "ALPHA": {"required": false}}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait(&id).await.as_str(), "COMPLETED");
    let (st, o) = s.get(&format!("/api/pipeline/{id}/orchestration")).await;
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["roles"]["CRITIC"]["required"], true);
    assert_eq!(
        o["roles"]["CRITIC"]["votes"], true,
        "the request's over the server's"
    );
    let rec = s.gov.get(&id.parse().unwrap()).await.unwrap();
    let voters: Vec<String> = rec
        .results
        .expect("results")
        .consensus
        .expect("consensus")
        .voters
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        voters.contains(&"CRITIC".to_owned()) && voters.contains(&"BETA".to_owned()),
        "both required approvers approved: {voters:?}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn contradictory_required_settings_are_400_naming_the_field() {
    let s = start_with_critic().await;
    let cases = [
        // the server's `votes = false` for CRITIC with the request's `required`
        json!({"CRITIC": {"required": true}}),
        json!({"CRITIC": {"votes": false, "required": true}}),
    ];
    for roles in cases {
        let (st, body) = s
            .post(
                "/api/spawn",
                &json!({"objective": "Design a caching strategy", "roles": roles}),
            )
            .await;
        assert_eq!(st, 400, "{roles}: {body}");
        assert_eq!(error_code(&body), "invalid_input", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("roles.CRITIC.required"), "{roles}: {msg}");
    }
    let (_, list) = s.get("/api/pipelines").await;
    assert_eq!(list["total"], 0, "nothing was spawned: {list}");
    s.shutdown().await;
}

#[tokio::test]
async fn spawn_with_role_settings_shows_each_agents_model() {
    let s = start().await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Design a caching strategy", "auto_continue": true,
                    "roles": {"BETA": {"model": "local/strict-judge", "temperature": 0.0,
                                       "max_tokens": 300, "instructions": "Be strict."},
                              "ALPHA": null_free()}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait(&id).await.as_str(), "COMPLETED");
    let (st, o) = s.get(&format!("/api/pipeline/{id}/orchestration")).await;
    assert_eq!(st, 200, "{o}");
    let model_of = |agent: &str| {
        o["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_id"] == agent)
            .map(|a| a["model"].clone())
    };
    assert_eq!(model_of("BETA"), Some(json!("local/strict-judge")));
    assert_eq!(model_of("ALPHA"), Some(json!("local/deterministic")));
    assert_eq!(o["roles"]["BETA"]["max_tokens"], 300);
    assert_eq!(o["roles"]["BETA"]["instructions"], "Be strict.");
    // (the ledger's `llm_call` events name the model that answered: the local LLM always
    // answers as itself; governance-openrouter/tests/role_models.rs checks them against a
    // mock OpenRouter)
    s.shutdown().await;
}

fn null_free() -> serde_json::Value {
    json!({"temperature": null, "model": null})
}

#[tokio::test]
async fn bad_role_settings_are_400_naming_the_field() {
    let s = start().await;
    let cases = [
        (json!({"NOPE": {"model": "a/b"}}), "roles.NOPE"),
        (json!({"BETA": {"model": ""}}), "roles.BETA.model"),
        (json!({"BETA": {"model": "has space"}}), "roles.BETA.model"),
        (
            json!({"BETA": {"temperature": 2.5}}),
            "roles.BETA.temperature",
        ),
        (
            json!({"BETA": {"temperature": -0.1}}),
            "roles.BETA.temperature",
        ),
        (
            json!({"ALPHA": {"max_tokens": 0}}),
            "roles.ALPHA.max_tokens",
        ),
        (
            json!({"ALPHA": {"max_tokens": 1_000_000}}),
            "roles.ALPHA.max_tokens",
        ),
        (json!({"BETA": {"votes": false}}), "roles.BETA.votes"),
        (json!({"GAMMA": {"required": true}}), "roles.GAMMA.required"),
        (
            json!({"REPORTER": {"required": true}}),
            "roles.REPORTER.required",
        ),
        (json!({"BETA": {"required": "yes"}}), "required"),
        (
            json!({"BETA": {"fallback_models": ["ok/m", ""]}}),
            "roles.BETA.fallback_models",
        ),
        (json!({"BETA": {"modle": "a/b"}}), "modle"),
        (json!({"BETA": {"max_tokens": 1.5}}), "max_tokens"),
        (json!({"REPORTER": [null, null]}), "roles"),
        (json!({"BETA": "fast"}), "roles"),
    ];
    for (roles, field) in cases {
        let (st, body) = s
            .post(
                "/api/spawn",
                &json!({"objective": "Design a caching strategy", "roles": roles}),
            )
            .await;
        assert_eq!(st, 400, "{roles}: {body}");
        assert_eq!(error_code(&body), "invalid_input", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{roles}: {msg} should name {field}");
    }
    let (st, list) = s.get("/api/pipelines").await;
    assert_eq!(st, 200);
    assert_eq!(list["total"], 0, "nothing was spawned: {list}");
    s.shutdown().await;
}
