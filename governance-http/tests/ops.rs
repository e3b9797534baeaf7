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
        settings: Some(HttpSettings {
            metrics_public: true,
            ..HttpSettings::default()
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
