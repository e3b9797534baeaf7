//! Operator conventions of the HTTP face, over a real socket: who may read `/metrics`, and what
//! the exposition holds (HELP/TYPE for every family, counters named `_total`, HTTP requests by
//! route and status).

mod common;

use common::{Opts, start_with};
use governance_http::HttpSettings;

async fn metrics_text(s: &common::Server, token: Option<&str>) -> (u16, String) {
    let mut req = s.client.get(s.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_need_the_api_token_unless_declared_public() {
    let s = start_with(Opts {
        token: Some("s3cret"),
        ..Opts::default()
    })
    .await;
    let (st, body) = metrics_text(&s, None).await;
    assert_eq!(st, 401, "{body}");
    assert!(!body.contains("governance_"), "{body}");
    let (st, _) = metrics_text(&s, Some("wrong")).await;
    assert_eq!(st, 401);
    let (st, body) = metrics_text(&s, Some("s3cret")).await;
    assert_eq!(st, 200);
    assert!(body.contains("governance_node_info"), "{body}");
    // the query token is for the streaming endpoints only
    let r = s
        .client
        .get(s.url("/metrics?token=s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.shutdown().await;

    let s = start_with(Opts {
        token: Some("s3cret"),
        settings: Some({
            let mut conf = HttpSettings::default();
            conf.metrics_public = true;
            conf
        }),
        ..Opts::default()
    })
    .await;
    let (st, body) = metrics_text(&s, None).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("governance_node_info"), "{body}");
    // public metrics do not open the API
    let (st, _) = s.get("/api/pipelines").await;
    assert_eq!(st, 401);
    s.shutdown().await;
}

/// `(family, kind)` of every `# TYPE` line, and the families with a `# HELP` line.
fn families(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut types = Vec::new();
    let mut helps = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let name = it.next().unwrap().to_owned();
            types.push((name, it.next().unwrap_or("").to_owned()));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().unwrap().to_owned();
            assert!(
                rest.len() > name.len() + 1,
                "empty help text for {name}: {line:?}"
            );
            helps.push(name);
        }
    }
    (types, helps)
}

#[tokio::test]
async fn metrics_describe_every_family_and_count_http_requests_by_route_and_status() {
    let s = start_with(Opts::default()).await;
    let id = s.spawn("Design a caching strategy", true).await;
    s.wait(&id).await;
    let (st, _) = s.get("/api/pipelines").await;
    assert_eq!(st, 200);
    let (st, _) = s.get(&format!("/api/pipeline/{id}")).await;
    assert_eq!(st, 200);
    let (st, _) = s.get("/api/pipeline/no-such-pipeline").await;
    assert_eq!(st, 404);
    // the event counters follow the event stream asynchronously: poll until they caught up
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics_text(&s, None).await.1;
        if text.contains("governance_status_changes_total{status=\"COMPLETED\"} 1")
            && text.contains("governance_llm_cost_usd_total")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (types, helps) = families(&text);
    assert!(types.len() >= 10, "too few families:\n{text}");
    for (name, kind) in &types {
        assert!(
            helps.contains(name),
            "# TYPE {name} without # HELP in\n{text}"
        );
        if name.ends_with("_total") {
            assert_eq!(kind, "counter", "{name} is named like a counter\n{text}");
        }
    }
    let requests = text
        .lines()
        .filter(|l| l.starts_with("governance_http_requests_total{"))
        .collect::<Vec<_>>();
    let has = |route: &str, status: &str| {
        requests.iter().any(|l| {
            l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
                && l.contains("method=\"GET\"")
        })
    };
    assert!(has("/api/pipelines", "200"), "{requests:#?}");
    assert!(has("/api/pipeline/{id}", "200"), "{requests:#?}");
    assert!(has("/api/pipeline/{id}", "404"), "{requests:#?}");
    assert!(
        requests
            .iter()
            .any(|l| l.contains("route=\"/api/spawn\"") && l.contains("status=\"201\"")),
        "{requests:#?}"
    );
    // the matched template, never the raw path (an id in a label is unbounded cardinality)
    assert!(!text.contains(&id), "a pipeline id in a label:\n{text}");
    assert!(!text.contains("no-such-pipeline"), "{text}");
    assert!(
        text.contains("# TYPE governance_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("governance_http_request_duration_seconds_count{")
                && l.contains("route=\"/api/pipelines\"")
        ),
        "{text}"
    );
    s.shutdown().await;
}
