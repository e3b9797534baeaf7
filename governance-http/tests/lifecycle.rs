//! Many pipelines at once, graceful shutdown mid-run, and snapshots of the JSON shapes.

mod common;

use std::collections::HashSet;

use common::{Opts, start, start_with};
use governance_core::PipelineId;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_spawns_get_distinct_ids_and_all_complete() {
    let s = start().await;
    let spawns = (0..100).map(|i| {
        let s = &s;
        async move {
            s.spawn(&format!("Design a caching strategy #{i}"), true)
                .await
        }
    });
    let ids: Vec<String> = futures::future::join_all(spawns).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 100);
    for id in &ids {
        assert_eq!(s.wait(id).await.as_str(), "COMPLETED", "{id}");
    }
    let (_, list) = s.get("/api/pipelines?status=COMPLETED&limit=1000").await;
    assert_eq!(list["total"], 100);
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 100);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_run_suspends_running_pipelines_with_a_checkpoint() {
    let s = start_with(Opts {
        latency_ms: 200,
        ..Opts::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.spawn(&format!("long objective {i}"), true).await);
    }
    let resting = s.spawn("rests at report", false).await;
    s.wait_until_rest(&resting).await;
    let (gov, url) = (s.gov.clone(), s.url("/healthz"));
    s.shutdown().await;
    assert!(gov.is_shutting_down());
    for id in ids.iter().chain(std::iter::once(&resting)) {
        let pid = PipelineId::new(id).unwrap();
        let rec = gov.get(&pid).await.unwrap();
        // Governance::shutdown suspends (not stops): a restarted engine resumes them
        assert!(!rec.status.is_terminal(), "{id} ended {}", rec.status);
        let cp = gov.checkpoints().latest(&pid).await.unwrap().unwrap();
        assert_eq!(
            cp.record.status, rec.status,
            "{id}: no checkpoint of its last status"
        );
        assert!(!cp.is_final);
    }
    assert!(
        reqwest::get(url).await.is_err(),
        "the server still accepts connections after shutdown"
    );
}

/// The JSON's shape: every scalar replaced by its type, arrays by their first element's shape.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(n) if n.is_f64() => json!("number"),
        Value::Number(_) => json!("integer"),
        Value::String(_) => json!("string"),
        Value::Array(a) => json!(a.first().map(shape).into_iter().collect::<Vec<_>>()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

#[tokio::test]
async fn json_shapes_are_stable() {
    let s = start().await;
    let (_, spawned) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Design a caching strategy", "auto_continue": false}),
        )
        .await;
    let id = spawned["pipeline_id"].as_str().unwrap().to_owned();
    insta::assert_json_snapshot!("spawn", spawned, {".pipeline_id" => "[id]", ".status" => "[SPAWNED|RUNNING]"});
    s.wait_until_rest(&id).await;
    let (_, report) = s
        .get(&format!("/api/checkpoint/report?pipeline_id={id}"))
        .await;
    insta::assert_json_snapshot!("report", report, {".pipeline_id" => "[id]"});
    let (_, list) = s.get("/api/pipelines").await;
    insta::assert_json_snapshot!("list", list, {
        ".pipelines[].pipeline_id" => "[id]",
        ".pipelines[].created_at" => "[ts]",
        ".pipelines[].updated_at" => "[ts]",
        ".pipelines[].history[][1]" => "[ts]",
    });
    let (_, cont) = s
        .post(
            "/api/pipeline/continue",
            &json!({"pipeline_id": id, "mode": "local", "timeout": 60}),
        )
        .await;
    insta::assert_json_snapshot!("continue", cont, {".pipeline_id" => "[id]"});
    s.wait(&id).await;
    let (_, orch) = s.get(&format!("/api/pipeline/{id}/orchestration")).await;
    insta::assert_json_snapshot!("orchestration_shape", shape(&orch));
    let (_, record) = s.get(&format!("/api/pipeline/{id}")).await;
    insta::assert_json_snapshot!("record_shape", shape(&record));
    let (_, logs) = s
        .get(&format!("/api/pipeline/logs?pipeline_id={id}&limit=3"))
        .await;
    insta::assert_json_snapshot!("logs_first_page", logs, {
        ".pipeline_id" => "[id]",
        ".events[].ts" => "[ts]",
        ".events[].data.pipeline_id" => "[id]",
    });
    let (_, stop) = s
        .post(&format!("/api/pipeline/{id}/stop"), &json!({}))
        .await;
    insta::assert_json_snapshot!("stop_after_end", stop, {".pipeline_id" => "[id]"});
    let (_, not_found) = s.get("/api/pipeline/unknown").await;
    insta::assert_json_snapshot!("error_not_found", not_found);
    let (_, bad_id) = s.get("/api/pipeline/a:b").await;
    insta::assert_json_snapshot!("error_invalid_id", bad_id);
    let (_, conflict) = s
        .post("/api/pipeline/continue", &json!({"pipeline_id": id}))
        .await;
    insta::assert_json_snapshot!("error_conflict", conflict);
    s.shutdown().await;
}
