//! A real server on 127.0.0.1:0 for the HTTP tests.
#![allow(dead_code)]

pub mod browser;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use governance_core::{Config, Governance, LocalLlm, LocalLlmConfig, PipelineId, PipelineStatus};
use governance_http::{AppState, HttpSettings};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub gov: Governance,
    pub state: AppState,
    pub stop: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
    pub client: reqwest::Client,
}

/// Options for [`start_with`].
#[derive(Default)]
pub struct Opts {
    pub token: Option<&'static str>,
    pub latency_ms: u64,
    pub event_capacity: Option<usize>,
    pub settings: Option<HttpSettings>,
    /// Custom roles of the engine.
    pub roles: Vec<Arc<dyn governance_core::Agent>>,
    /// The engine's per-role settings.
    pub role_settings: governance_core::RoleSettingsMap,
}

pub async fn start() -> Server {
    start_with(Opts::default()).await
}

pub async fn start_with(o: Opts) -> Server {
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(o.latency_ms);
        conf
    });
    let mut b = Governance::builder()
        .config(Config::default())
        .llm("local", Arc::new(llm));
    if let Some(n) = o.event_capacity {
        b = b.event_capacity(n);
    }
    for r in o.roles {
        b = b.role(r);
    }
    b = b.role_settings(o.role_settings);
    let gov = b.build().expect("engine");
    let mut settings = o.settings.unwrap_or_default();
    if let Some(t) = o.token {
        settings.api_token = Some(t.to_owned().into());
    }
    let state = AppState::new(gov.clone(), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(governance_http::serve(
        listener,
        state.clone(),
        async move { s.cancelled().await },
        Duration::from_secs(10),
    ));
    Server {
        addr,
        gov,
        state,
        stop,
        task,
        client: reqwest::Client::new(),
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Spawns through the API and returns the id.
    pub async fn spawn(&self, objective: &str, auto_continue: bool) -> String {
        let (st, body) = self
            .post(
                "/api/spawn",
                &serde_json::json!({"objective": objective, "auto_continue": auto_continue}),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        body["pipeline_id"].as_str().unwrap().to_owned()
    }

    /// Waits (engine side) until the pipeline ends.
    pub async fn wait(&self, id: &str) -> PipelineStatus {
        let id = PipelineId::new(id).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.gov.wait(&id))
            .await
            .expect("pipeline did not settle within 60 s")
            .unwrap()
            .status
    }

    /// Waits (engine side) until the pipeline ends or rests at REPORT.
    pub async fn wait_until_rest(&self, id: &str) -> PipelineStatus {
        let id = PipelineId::new(id).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.gov.wait_until_rest(&id))
            .await
            .expect("pipeline did not settle within 60 s")
            .unwrap()
            .status
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Asserts the JSON error shape and returns the code.
pub fn error_code(body: &Value) -> String {
    let e = &body["error"];
    assert!(e["message"].is_string(), "not the error shape: {body}");
    e["code"].as_str().expect("error.code").to_owned()
}
