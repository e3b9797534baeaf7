//! What the outage tests share: an HTTP server on a real socket (the engine in this process)
//! and a bounded wait.
#![allow(dead_code)]

use std::time::Duration;

use governance_core::Governance;
use governance_http::{AppState, HttpSettings};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct Server {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    pub async fn start(gov: Governance, backends: Vec<(String, String)>) -> Self {
        let settings = {
            let mut conf = HttpSettings::default();
            conf.backends = backends;
            conf
        };
        let state = AppState::new(gov, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(governance_http::serve(
            listener,
            state,
            async move { s.cancelled().await },
            Duration::from_secs(1),
        ));
        Self {
            base: format!("http://{addr}"),
            // bounded so a hang fails the test instead of stalling it; never hit when the
            // server answers as it must (fast)
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            stop,
        }
    }

    /// GET `path`: status and JSON body. Panics when no answer comes within the client's
    /// timeout (a hang).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} did not answer within 5 s: {e}"));
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn spawn(&self) -> (u16, Value) {
        self.spawn_in("local").await
    }

    pub async fn spawn_in(&self, mode: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/api/spawn", self.base))
            .json(&serde_json::json!({"objective": "Design a caching strategy", "auto_continue": true, "mode": mode}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/spawn did not answer within 5 s: {e}"));
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }
}

/// Polls `cond` until it holds; fails only when it never does within `limit` (a hang).
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match cond().await {
            Ok(()) => return,
            Err(why) => why,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not so after {limit:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_ready(server: &Server) {
    wait_until(Duration::from_secs(30), "/readyz is ready", || async {
        let (code, body) = server.get("/readyz").await;
        if code == 200 {
            Ok(())
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await;
}
