//! Every REST endpoint over a real socket: success and failure cases, auth, limits.

mod common;

use common::{Opts, error_code, start, start_with};
use governance_http::HttpSettings;
use serde_json::json;

#[tokio::test]
async fn spawn_answers_201_with_id_and_pipeline_rests_at_report() {
    let s = start().await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Design a caching strategy", "auto_continue": false}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    assert_eq!(body["auto_continue"], false);
    assert_eq!(s.wait_until_rest(&id).await.as_str(), "REPORT");

    let (st, rep) = s
        .get(&format!("/api/checkpoint/report?pipeline_id={id}"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(rep["status"], "REPORT");
    assert_eq!(rep["can_continue"], true);
    assert!(rep["report"]["summary"].is_string(), "{rep}");

    let (st, c) = s
        .post(
            "/api/pipeline/continue",
            &json!({"pipeline_id": id, "mode": "local"}),
        )
        .await;
    assert_eq!(st, 202, "{c}");
    assert_eq!(c["status"], "ORCHESTRATING");
    assert_eq!(s.wait(&id).await.as_str(), "COMPLETED");

    let (st, o) = s.get(&format!("/api/pipeline/{id}/orchestration")).await;
    assert_eq!(st, 200);
    assert_eq!(o["status"], "COMPLETED");
    let roles: Vec<&str> = o["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"ALPHA") && roles.contains(&"BETA"),
        "{roles:?}"
    );
    assert!(o["agents"][0]["tokens_used"].is_u64());
    assert!(o["usage"]["calls"].as_u64().unwrap() > 0);
    assert!(!o["blackboard"]["proposals"].as_array().unwrap().is_empty());
    assert_eq!(o["partial"], false);
    assert!(o["results"].is_object());

    let (st, rep) = s
        .get(&format!("/api/checkpoint/report?pipeline_id={id}"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(rep["can_continue"], false);
    s.shutdown().await;
}

#[tokio::test]
async fn continue_when_not_at_report_is_409() {
    let s = start().await;
    let id = s.spawn("Design a caching strategy", true).await;
    assert_eq!(s.wait(&id).await.as_str(), "COMPLETED");
    let (st, body) = s
        .post(
            "/api/pipeline/continue",
            &json!({"pipeline_id": id, "mode": "local"}),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(error_code(&body), "invalid_transition");
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_mode_is_400_and_unknown_pipeline_404() {
    let s = start().await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "x", "mode": "openrouter"}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_input");
    let (st, body) = s
        .post(
            "/api/pipeline/continue",
            &json!({"pipeline_id": "nope", "mode": "local"}),
        )
        .await;
    assert_eq!(st, 404, "{body}");
    assert_eq!(error_code(&body), "not_found");
    for path in [
        "/api/pipeline/nope",
        "/api/pipeline/nope/orchestration",
        "/api/checkpoint/report?pipeline_id=nope",
        "/api/pipeline/logs?pipeline_id=nope",
    ] {
        let (st, body) = s.get(path).await;
        assert_eq!(st, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (st, body) = s.post("/api/pipeline/nope/stop", &json!({})).await;
    assert_eq!(st, 404, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn invalid_ids_are_400_never_used() {
    let s = start().await;
    for path in [
        "/api/pipeline/a:b",
        "/api/pipeline/..%2F..%2Fetc/orchestration",
        "/api/checkpoint/report?pipeline_id=a%7Bb%7D",
        &format!("/api/pipeline/logs?pipeline_id={}", "x".repeat(65)),
        "/api/checkpoint/report",
    ] {
        let (st, body) = s.get(path).await;
        assert_eq!(st, 400, "{path}: {body}");
        assert_eq!(error_code(&body), "invalid_input");
    }
    let (st, body) = s.post("/api/pipeline/a%20b/stop", &json!({})).await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = s
        .post("/api/pipeline/continue", &json!({"pipeline_id": "a/b"}))
        .await;
    assert_eq!(st, 400, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_415_413_in_the_error_shape() {
    let s = start().await;
    let send = |body: &'static str, ct: &'static str| {
        s.client
            .post(s.url("/api/spawn"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for (body, ct, want, code) in [
        ("{\"objective\":", "application/json", 400, "invalid_input"),
        ("[1,2]", "application/json", 400, "invalid_input"),
        (
            "{\"objective\": 5}",
            "application/json",
            400,
            "invalid_input",
        ),
        (
            "{\"objective\": \"x\", \"bogus\": 1}",
            "application/json",
            400,
            "invalid_input",
        ),
        (
            "{\"objective\": \"x\", \"timeout\": -1}",
            "application/json",
            400,
            "invalid_input",
        ),
        (
            "{\"objective\": \"x\"}",
            "text/plain",
            415,
            "unsupported_media_type",
        ),
    ] {
        let r = send(body, ct).await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), code, "{body}");
    }
    let big = json!({"objective": "x".repeat(100 * 1024)});
    let (st, body) = s.post("/api/spawn", &big).await;
    assert_eq!(st, 413, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    let long = json!({"objective": "y".repeat(4001)});
    let (st, body) = s.post("/api/spawn", &long).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer")
    );
    let (st, body) = s.post("/api/spawn", &json!({"objective": "   "})).await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = s
        .post("/api/spawn", &json!({"objective": "x", "timeout": 0}))
        .await;
    assert_eq!(st, 400, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn objective_limit_is_configurable() {
    let s = start_with(Opts {
        settings: Some({
            let mut conf = HttpSettings::default();
            conf.max_objective_len = 10;
            conf
        }),
        ..Opts::default()
    })
    .await;
    let (st, _) = s
        .post(
            "/api/spawn",
            &json!({"objective": "0123456789", "auto_continue": false}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, body) = s
        .post("/api/spawn", &json!({"objective": "0123456789a"}))
        .await;
    assert_eq!(st, 400, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let s = start().await;
    let (st, body) = s.get("/api/nothing").await;
    assert_eq!(st, 404);
    assert_eq!(error_code(&body), "not_found");
    let (st, body) = s.get("/api/spawn").await;
    assert_eq!(st, 405);
    assert_eq!(error_code(&body), "method_not_allowed");
    s.shutdown().await;
}

#[tokio::test]
async fn bearer_token_is_required_on_api_routes_only() {
    let s = start_with(Opts {
        token: Some("s3cret"),
        ..Opts::default()
    })
    .await;
    let (st, body) = s.get("/api/pipelines").await;
    assert_eq!(st, 401);
    assert_eq!(error_code(&body), "unauthorized");
    for auth in ["Bearer wrong", "Bearer s3cre", "Basic s3cret", "s3cret"] {
        let r = s
            .client
            .get(s.url("/api/pipelines"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{auth}");
    }
    // the query token is for the streaming endpoints only
    let (st, _) = s.get("/api/pipelines?token=s3cret").await;
    assert_eq!(st, 401);
    let r = s
        .client
        .post(s.url("/api/spawn"))
        .bearer_auth("s3cret")
        .json(&json!({"objective": "x", "auto_continue": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = s
        .client
        .get(s.url("/api/pipelines"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for open in ["/", "/healthz", "/readyz", "/openapi.json", "/docs"] {
        let r = s.client.get(s.url(open)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn list_filters_pages_and_counts() {
    let s = start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.spawn(&format!("objective {i}"), false).await);
    }
    for id in &ids {
        s.wait_until_rest(id).await;
    }
    let (st, body) = s.get("/api/pipelines?status=REPORT&limit=2&offset=0").await;
    assert_eq!(st, 200);
    assert_eq!(body["pipelines"].as_array().unwrap().len(), 2);
    assert_eq!(body["total"], 5);
    assert_eq!(body["counts"]["REPORT"], 5);
    let (_, page3) = s.get("/api/pipelines?status=REPORT&limit=2&offset=4").await;
    assert_eq!(page3["pipelines"].as_array().unwrap().len(), 1);
    let (_, none) = s.get("/api/pipelines?status=COMPLETED").await;
    assert_eq!(none["pipelines"].as_array().unwrap().len(), 0);
    let (st, body) = s.get("/api/pipelines?status=BOGUS").await;
    assert_eq!(st, 400, "{body}");
    let (st, _) = s.get("/api/pipelines?limit=0").await;
    assert_eq!(st, 400);
    let (st, _) = s.get("/api/pipelines?limit=abc").await;
    assert_eq!(st, 400);
    let (st, rec) = s.get(&format!("/api/pipeline/{}", ids[0])).await;
    assert_eq!(st, 200);
    assert_eq!(rec["objective"], "objective 0");
    assert_eq!(rec["status"], "REPORT");
    s.shutdown().await;
}

#[tokio::test]
async fn logs_are_paged_by_seq_without_gaps() {
    let s = start().await;
    let id = s.spawn("Design a caching strategy", true).await;
    s.wait(&id).await;
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let (st, page) = s
            .get(&format!(
                "/api/pipeline/logs?pipeline_id={id}&after={after}&limit=7"
            ))
            .await;
        assert_eq!(st, 200);
        for e in page["events"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
            assert_eq!(e["data"]["pipeline_id"], id.as_str());
        }
        after = page["next_after"].as_u64().unwrap();
        if page["has_more"] == false {
            break;
        }
    }
    let want: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, want);
    assert!(seen.len() > 10);
    let (st, _) = s
        .get(&format!("/api/pipeline/logs?pipeline_id={id}&limit=5000"))
        .await;
    assert_eq!(st, 400);
    s.shutdown().await;
}

#[tokio::test]
async fn stop_ends_a_resting_pipeline_stopped_and_is_idempotent() {
    let s = start().await;
    let id = s.spawn("x", false).await;
    s.wait_until_rest(&id).await;
    let (st, body) = s
        .post(&format!("/api/pipeline/{id}/stop"), &json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "STOPPED");
    let (st, body) = s
        .post(&format!("/api/pipeline/{id}/stop"), &json!({}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(body["status"], "STOPPED");
    s.shutdown().await;
}

#[tokio::test]
async fn stop_mid_run_ends_stopped_with_partial_results() {
    let s = start_with(Opts {
        latency_ms: 100,
        ..Opts::default()
    })
    .await;
    let id = s.spawn("Design a caching strategy", true).await;
    // wait until it is orchestrating (or at least running)
    let mut ev = s.gov.subscribe();
    loop {
        let e = ev.recv().await.unwrap();
        if e.pipeline_id().as_str() == id && e.kind.type_name() == "agent_spawned" {
            break;
        }
    }
    let (st, body) = s
        .post(&format!("/api/pipeline/{id}/stop"), &json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "STOPPED");
    let (_, o) = s.get(&format!("/api/pipeline/{id}/orchestration")).await;
    assert_eq!(o["status"], "STOPPED");
    assert_eq!(o["partial"], true);
    s.shutdown().await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let s = start().await;
    let (st, h) = s.get("/healthz").await;
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")));
    let (st, r) = s.get("/readyz").await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["checks"]["blackboard"], "ok");
    assert_eq!(r["checks"]["ledger"], "ok");
    let id = s.spawn("Design a caching strategy", true).await;
    s.wait(&id).await;
    // the metrics task follows the event stream asynchronously: poll until it has caught up
    let mut text = String::new();
    for _ in 0..100 {
        text = s
            .client
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("governance_status_changes_total{status=\"COMPLETED\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for needle in [
        "governance_pipelines{status=\"COMPLETED\"} 1",
        "governance_llm_calls_total{",
        "governance_llm_tokens_total{kind=\"prompt\"}",
        "governance_llm_latency_seconds_bucket",
        "governance_status_changes_total{status=\"COMPLETED\"} 1",
        "governance_circuit_breaker_open_pipelines 0",
        "governance_node_info{node=\"standalone\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_name_the_configured_node() {
    let s = start_with(Opts {
        settings: Some(HttpSettings::default().with_node_id("node-a")),
        ..Opts::default()
    })
    .await;
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("governance_node_info{node=\"node-a\"} 1"),
        "{text}"
    );
    assert!(!text.contains("standalone"), "{text}");
    s.shutdown().await;
}

#[tokio::test]
async fn openapi_lists_every_route_of_the_router() {
    let s = start().await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    let src = include_str!("../src/router.rs");
    let mut routes = 0;
    for piece in src.split(".route(").skip(1) {
        let path = piece.trim_start().trim_start_matches('"');
        let path = &path[..path.find('"').unwrap()];
        let methods = piece[..piece.find(')').unwrap()].to_owned();
        let entry = &doc["paths"][path];
        assert!(entry.is_object(), "{path} missing from /openapi.json");
        for m in ["get", "post"] {
            if methods.contains(&format!("{m}(")) {
                assert!(
                    entry[m].is_object(),
                    "{m} {path} missing from /openapi.json"
                );
            }
        }
        routes += 1;
    }
    assert_eq!(
        routes,
        doc["paths"].as_object().unwrap().len(),
        "document lists routes the router lacks"
    );
    let docs = s.client.get(s.url("/docs")).send().await.unwrap();
    assert!(docs.text().await.unwrap().contains("/openapi.json"));
    s.shutdown().await;
}
