//! `roles` on `POST /api/spawn` over a real socket: per-role settings accepted and shown by
//! `/api/pipeline/{id}/orchestration` (each agent's model, the resolved settings); bad
//! settings refused with 400 naming the field, and nothing spawned.

mod common;

use common::{error_code, start};
use serde_json::json;

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
