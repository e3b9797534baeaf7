//! Random bytes, random JSON, random ids and random query strings at every endpoint: a client
//! mistake never gets a 5xx.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

const POSTS: [&str; 3] = [
    "/api/spawn",
    "/api/pipeline/continue",
    "/api/pipeline/{}/stop",
];
const GETS: [&str; 9] = [
    "/api/checkpoint/report?pipeline_id={}",
    "/api/pipeline/logs?pipeline_id={}&after={}&limit={}",
    "/api/pipeline/{}",
    "/api/pipeline/{}/orchestration",
    "/api/pipelines?status={}&limit={}&offset={}",
    "/api/events?pipeline_id={}&since={}",
    "/healthz",
    "/readyz",
    "/openapi.json",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("pipeline_id"),
            Just("objective"),
            Just("mode"),
            Just("local")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("objective".to_owned()),
                    Just("auto_continue".to_owned()),
                    Just("pipeline_id".to_owned()),
                    Just("mode".to_owned()),
                    Just("model".to_owned()),
                    Just("timeout".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Json(Value),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
        json_value().prop_map(Body::Json),
    ]
}

/// Fills each `{}` with a random (percent-encoded) fragment.
fn fill(template: &str, parts: &[String]) -> String {
    let mut out = String::new();
    let mut it = parts.iter();
    for (i, piece) in template.split("{}").enumerate() {
        if i > 0 {
            out.push_str(it.next().map_or("x", String::as_str));
        }
        out.push_str(piece);
    }
    out
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,70}",
        "[0-9]{1,25}",
        "-?[0-9]{1,4}",
        Just("COMPLETED,report".to_owned()),
        prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| { b.iter().map(|x| format!("%{x:02X}")).collect::<String>() }),
    ]
}

#[test]
fn random_input_never_gets_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(common::start());
    let client = reqwest::Client::new();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        any::<bool>(),
        0usize..POSTS.len().max(GETS.len()),
        prop::collection::vec(fragment(), 3),
        body(),
        prop_oneof![
            Just("application/json"),
            Just("text/plain"),
            Just("application/json; charset=utf-8"),
            Just("multipart/form-data"),
        ],
    );
    runner
        .run(&strategy, |(post, idx, parts, body, ct)| {
            let (method, template) = if post {
                (reqwest::Method::POST, POSTS[idx % POSTS.len()])
            } else {
                (reqwest::Method::GET, GETS[idx % GETS.len()])
            };
            let url = server.url(&fill(template, &parts));
            let bytes = match &body {
                Body::Bytes(b) => b.clone(),
                Body::Json(v) => serde_json::to_vec(v).unwrap(),
            };
            let status = rt.block_on(async {
                let r = client
                    .request(method.clone(), &url)
                    .header("content-type", ct)
                    .body(bytes)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                if status.is_success() && url.contains("/api/events") {
                    return status; // an open stream; do not read it to the end
                }
                let text = r.text().await.unwrap();
                if status.is_client_error() {
                    let v: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|_| panic!("{method} {url}: not JSON: {text}"));
                    assert!(v["error"]["code"].is_string(), "{method} {url}: {text}");
                }
                status
            });
            prop_assert!(
                !status.is_server_error(),
                "{method} {url} with {body:?} ({ct}) got {status}"
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(server.shutdown());
}
