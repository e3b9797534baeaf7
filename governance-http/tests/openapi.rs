//! `/openapi.json` says what the handlers do: each bound in the document is checked here at its
//! edges over a real socket (schemathesis, in `examples/tests/schemathesis.rs`, explores the
//! rest).

mod common;

use common::{Opts, start, start_with};
use governance_http::HttpSettings;
use serde_json::{Value, json};

#[tokio::test]
async fn the_document_is_built_for_this_server() {
    let s = start_with(Opts {
        settings: Some({
            let mut conf = HttpSettings::default();
            conf.max_objective_len = 50;
            conf
        }),
        ..Opts::default()
    })
    .await;
    let (_, doc) = s.get("/openapi.json").await;
    let (_, ready) = s.get("/readyz").await;
    let spawn = &doc["components"]["schemas"]["SpawnRequest"]["properties"];
    assert_eq!(spawn["objective"]["maxLength"], 50);
    let mut modes: Vec<Value> = ready["modes"].as_array().unwrap().clone();
    modes.push(Value::Null);
    assert_eq!(spawn["mode"]["enum"], Value::Array(modes));
    // the live streams are documented as what they are
    let events = &doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"];
    assert!(events["text/event-stream"].is_object(), "{events}");
    let ws = &doc["paths"]["/ws"]["get"]["responses"];
    assert!(ws["101"].is_object() && ws["426"].is_object(), "{ws}");
    // a stateful tester reaches the operations on a pipeline from spawn's answer
    let links = &doc["paths"]["/api/spawn"]["post"]["responses"]["201"]["links"];
    for op in [
        "getPipeline",
        "orchestration",
        "stop",
        "report",
        "logs",
        "continue",
    ] {
        assert_eq!(links[op]["operationId"], op, "{links}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn spawn_accepts_exactly_what_the_schema_allows() {
    let s = start_with(Opts {
        settings: Some({
            let mut conf = HttpSettings::default();
            conf.max_objective_len = 50;
            conf
        }),
        ..Opts::default()
    })
    .await;
    let base = || json!({"objective": "Design a caching strategy", "auto_continue": false});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let cases = [
        // valid by the schema: accepted
        (with("timeout", json!(30)), 201),
        (with("timeout", json!(30.0)), 201), // an `integer` in JSON Schema
        (with("timeout", Value::Null), 201), // optional fields take null: the default
        (with("mode", Value::Null), 201),
        (with("model", Value::Null), 201),
        (with("auto_continue", Value::Null), 201),
        (with("model", json!("openai/gpt-4o-mini:free")), 201),
        (with("objective", json!("x".repeat(50))), 201),
        // invalid by the schema: refused
        (with("timeout", json!(1.5)), 400),
        (with("timeout", json!(0)), 400),
        (with("timeout", json!(86_401)), 400),
        (with("timeout", json!(-1)), 400),
        (with("model", json!("")), 400),
        (with("model", json!("a model")), 400),
        (with("model", json!("m".repeat(201))), 400),
        (with("objective", json!(" \t\u{3000}")), 400),
        // maxLength counts the whole string, blanks included
        (
            with("objective", json!(format!("x{}", " ".repeat(50)))),
            400,
        ),
        (with("mode", json!("openrouter")), 400), // not a mode of this server
    ];
    for (body, want) in cases {
        let (st, answer) = s.post("/api/spawn", &body).await;
        assert_eq!(st, want, "{body} -> {answer}");
    }
    let id = s.spawn("Design a caching strategy", false).await;
    s.wait_until_rest(&id).await;
    let (st, answer) = s
        .post(
            "/api/pipeline/continue",
            &json!({"pipeline_id": id, "model": "has space"}),
        )
        .await;
    assert_eq!(st, 400, "{answer}");
    let (st, answer) = s
        .post(
            "/api/pipeline/continue",
            &json!({"pipeline_id": id, "timeout": 60.0, "model": null, "mode": null}),
        )
        .await;
    assert_eq!(st, 202, "{answer}");
    s.shutdown().await;
}

#[tokio::test]
async fn list_takes_exactly_the_documented_status_names() {
    let s = start().await;
    for (q, want) in [
        ("status=REPORT,COMPLETED", 200),
        ("status=", 200),
        ("status=report", 400),
        ("status=REPORT,", 400),
        ("status=%20REPORT", 400),
        ("limit=1000", 200),
        ("limit=1001", 400),
        ("limit=0", 400),
    ] {
        let (st, body) = s.get(&format!("/api/pipelines?{q}")).await;
        assert_eq!(st, want, "{q}: {body}");
    }
    s.shutdown().await;
}
