//! Budgets in money against a mock OpenRouter (real sockets) serving both `GET /models` (the
//! prices) and `POST /chat/completions` (answers with `usage.cost`): the provider's cost is
//! what events, records, `/orchestration` and `/metrics` show; a call whose worst case would
//! pass the budget is refused before it is sent; the config file's prices override the
//! catalog; a model of unknown price is refused while a money budget is set.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{PATH, config};
use governance_core::{
    Config, Event, EventKind, Governance, ModelPrice, PipelineRecord, PipelineStatus, SpawnRequest,
    TokenBudgetConfig,
};
use governance_http::{AppState, HttpSettings};
use governance_openrouter::OpenRouterClient;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MODEL: &str = "vendor/priced";
const OBJECTIVE: &str = "Design a caching strategy for the catalogue service";
const TITLE: &str = "Cache-aside with per-entity TTLs";
const MODELS_PATH: &str = "/api/v1/models";

fn body(content: &str, cost: f64) -> serde_json::Value {
    serde_json::json!({
        "id": "gen-1", "provider": "Vendor", "model": MODEL, "object": "chat.completion",
        "created": 1_761_998_482,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 60, "total_tokens": 460, "cost": cost}
    })
}

fn answers() -> Vec<(&'static str, String)> {
    vec![
        (
            "Your role: REPORTER",
            "{\"summary\": \"Read-heavy catalogue.\", \"findings\": [\"95% reads\"], \
             \"complexity\": 0.35}"
                .to_owned(),
        ),
        (
            "Your role: ALPHA",
            format!(
                "{{\"title\": \"{TITLE}\", \"content\": \"Cache entities in Redis with \
                 cache-aside reads and TTLs per entity type.\"}}"
            ),
        ),
        (
            "Evaluate the proposal",
            "I approve this proposal: cache-aside with TTLs fits a read-heavy catalogue."
                .to_owned(),
        ),
        (
            "Build the final solution",
            "{\"solution\": \"1. Redis cache-aside. 2. TTLs per entity type.\"}".to_owned(),
        ),
    ]
}

/// The catalog: `MODEL` at `completion` USD per completion token (prompt: a tenth of it).
async fn mount_models(server: &MockServer, completion: f64) {
    Mock::given(method("GET"))
        .and(path(MODELS_PATH))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": [
                {"id": MODEL, "name": "Priced", "pricing": {
                    "prompt": format!("{}", completion / 10.0),
                    "completion": format!("{completion}"),
                    "request": "0", "image": "0"}},
                {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}}
            ]})),
        )
        .mount(server)
        .await;
}

async fn mount_answers(server: &MockServer, cost: f64) {
    for (line, content) in answers() {
        Mock::given(method("POST"))
            .and(path(PATH))
            .and(body_string_contains(line))
            .respond_with(ResponseTemplate::new(200).set_body_json(body(&content, cost)))
            .mount(server)
            .await;
    }
}

async fn client(server: &MockServer, model: &str) -> OpenRouterClient {
    let mut c = config(server);
    c.model = model.to_owned();
    c.models_refresh = Duration::ZERO;
    let client = OpenRouterClient::new(c).unwrap();
    client.start_model_prices().await;
    client
}

fn engine(client: OpenRouterClient, budgets: TokenBudgetConfig) -> Governance {
    Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf.budgets = budgets;
            conf
        })
        .llm("openrouter", Arc::new(client))
        .default_mode("openrouter")
        .build()
        .unwrap()
}

fn budgets(pipeline_usd: Option<f64>, agent_usd: Option<f64>) -> TokenBudgetConfig {
    let mut b = TokenBudgetConfig::default();
    b.max_cost_per_pipeline_usd = pipeline_usd;
    b.max_cost_per_agent_usd = agent_usd;
    b
}

async fn run(gov: &Governance) -> (PipelineRecord, Vec<Event>) {
    let id = gov.spawn(SpawnRequest::new(OBJECTIVE)).await.unwrap();
    let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id))
        .await
        .expect("the pipeline ends")
        .unwrap();
    let events = gov.events(&id, 0, usize::MAX).await.unwrap();
    (rec, events)
}

/// The chat-completion requests the mock received.
async fn chat_requests(server: &MockServer) -> Vec<serde_json::Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == PATH)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn llm_costs(events: &[Event]) -> Vec<Option<f64>> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LlmCall { cost_usd, .. } => Some(*cost_usd),
            _ => None,
        })
        .collect()
}

/// `(kind, message)` of every `error` event.
fn errors(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error { kind, message, .. } => Some((kind.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

/// Everything the ledger and the record say about why work stopped: `error` events' messages,
/// the pipeline's failure, the agents' reasons.
fn why(rec: &PipelineRecord, events: &[Event]) -> String {
    let mut out: Vec<String> = errors(events)
        .into_iter()
        .map(|(k, m)| format!("{k}: {m}"))
        .collect();
    out.extend(rec.failure.clone());
    out.extend(rec.agents.iter().filter_map(|a| a.reason.clone()));
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_cost_is_settled_and_shown_in_events_records_orchestration_and_metrics() {
    let server = MockServer::start().await;
    mount_models(&server, 0.000_002).await;
    mount_answers(&server, 0.0021).await;
    let gov = engine(client(&server, MODEL).await, budgets(Some(1.0), Some(0.5)));
    let state = AppState::new(gov.clone(), HttpSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(governance_http::serve(
        listener,
        state,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));
    let http = reqwest::Client::new();
    let spawned: serde_json::Value = http
        .post(format!("http://{addr}/api/spawn"))
        .json(&serde_json::json!({"objective": OBJECTIVE}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = governance_core::PipelineId::new(spawned["pipeline_id"].as_str().unwrap()).unwrap();
    let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");

    let sent = chat_requests(&server).await;
    assert!(sent.len() >= 4, "report, proposal, evaluation, solution");
    for b in &sent {
        assert_eq!(
            b["usage"]["include"], true,
            "usage accounting asked for: {b}"
        );
    }
    let events = gov.events(&id, 0, usize::MAX).await.unwrap();
    let costs = llm_costs(&events);
    assert_eq!(costs.len(), sent.len());
    assert!(costs.iter().all(|c| *c == Some(0.0021)), "{costs:?}");
    #[allow(clippy::cast_precision_loss)]
    let total = 0.0021 * sent.len() as f64;

    let orch: serde_json::Value = http
        .get(format!("http://{addr}/api/pipeline/{id}/orchestration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = orch["usage"]["cost_usd"].as_f64().unwrap();
    assert!((shown - total).abs() < 1e-9, "{orch}");
    let agents_total: f64 = orch["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["cost_usd"].as_f64().unwrap_or(0.0))
        .sum();
    // the reporter's call is the pipeline's, not an agent's: ALPHA and BETA hold the rest
    assert!(agents_total > 0.0 && agents_total <= total + 1e-9, "{orch}");
    let alpha = orch["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "ALPHA")
        .expect("ALPHA's record");
    assert!(
        (alpha["cost_usd"].as_f64().unwrap() - 0.0021).abs() < 1e-12,
        "ALPHA made one call: {alpha}"
    );

    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("governance_llm_cost_usd_total"))
        .expect("the cost counter");
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - total).abs() < 1e-9, "{line} vs {total}");
    let _ = stop_tx.send(());
    gov.shutdown(Duration::from_secs(5)).await;
    let _ = serve.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_worst_case_would_pass_the_budget_is_refused_and_never_sent() {
    let server = MockServer::start().await;
    // worst case of a call: ~1024 completion tokens × $0.001 ≈ $1.03; each call costs $0.60
    mount_models(&server, 0.001).await;
    mount_answers(&server, 0.6).await;
    let gov = engine(client(&server, MODEL).await, budgets(Some(1.5), None));
    let (rec, events) = run(&gov).await;
    gov.shutdown(Duration::from_secs(5)).await;

    // the first call ($1.03 reserved, $0.60 settled) fits; the next would reach $1.63 > $1.50
    let sent = chat_requests(&server).await;
    assert_eq!(sent.len(), 1, "the refused call never reached OpenRouter");
    assert_eq!(llm_costs(&events), vec![Some(0.6)]);
    assert!((rec.usage.cost_usd - 0.6).abs() < 1e-12, "{:?}", rec.usage);
    // refused like a token budget refuses: the agent fails with the reason, in the ledger
    let failed: Vec<_> = errors(&events)
        .into_iter()
        .filter(|(k, m)| k == "agent_failed" && m.contains("max_cost_per_pipeline_usd"))
        .collect();
    assert!(!failed.is_empty(), "{:?}", errors(&events));
    assert!(
        failed.iter().all(|(_, m)| m.contains("budget exceeded")),
        "{failed:?}"
    );
    // ALPHA and BETA both fail on it: the pipeline ends FAILED, its failure names the limit
    assert_eq!(rec.status, PipelineStatus::Failed, "{rec:#?}");
    let failure = rec.failure.clone().unwrap_or_default();
    assert!(
        failure.contains("failed") && failure.contains("max_cost_per_pipeline_usd"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_budget_refuses_before_the_call_too() {
    let server = MockServer::start().await;
    mount_models(&server, 0.000_2).await;
    mount_answers(&server, 0.15).await;
    // one call of an agent: ≈ $0.21 worst case fits $0.30; its second (0.15 + 0.21) does not
    let gov = engine(client(&server, MODEL).await, budgets(None, Some(0.3)));
    let (rec, events) = run(&gov).await;
    gov.shutdown(Duration::from_secs(5)).await;
    let refused: Vec<_> = errors(&events)
        .into_iter()
        .filter(|(k, m)| k == "agent_failed" && m.contains("max_cost_per_agent_usd"))
        .collect();
    assert!(!refused.is_empty(), "{:?}", errors(&events));
    for a in &rec.agents {
        assert!(a.cost_usd <= 0.3 + 1e-12, "{a:?}");
    }
    // every call that was sent is in the ledger with the provider's cost
    let sent = chat_requests(&server).await;
    assert_eq!(llm_costs(&events).len(), sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_price_table_overrides_the_catalog() {
    let server = MockServer::start().await;
    // the catalog's price fits the budget easily...
    mount_models(&server, 0.000_001).await;
    mount_answers(&server, 0.0001).await;
    let c = client(&server, MODEL).await;
    // ...the config file's ($100 per million completion tokens: ~$0.10 a call) does not
    c.set_prices(HashMap::from([(
        MODEL.to_owned(),
        ModelPrice::from_usd_per_million(10.0, 100.0),
    )]));
    assert_eq!(
        c.model_price(MODEL),
        Some(ModelPrice::from_usd_per_million(10.0, 100.0))
    );
    let gov = engine(c, budgets(Some(0.05), None));
    let (rec, events) = run(&gov).await;
    gov.shutdown(Duration::from_secs(5)).await;
    assert!(chat_requests(&server).await.is_empty(), "nothing sent");
    assert!(llm_costs(&events).is_empty());
    // the report stage's first call is refused: the pipeline fails, saying why
    assert_eq!(rec.status, PipelineStatus::Failed, "{rec:#?}");
    let why = why(&rec, &events);
    assert!(
        why.contains("report stage failed") && why.contains("max_cost_per_pipeline_usd"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_price_with_a_money_budget_is_refused_without_a_call() {
    let server = MockServer::start().await;
    mount_models(&server, 0.000_001).await;
    mount_answers(&server, 0.0001).await;
    let gov = engine(
        client(&server, "vendor/unlisted").await,
        budgets(Some(10.0), None),
    );
    let (rec, events) = run(&gov).await;
    gov.shutdown(Duration::from_secs(5)).await;
    assert!(chat_requests(&server).await.is_empty(), "nothing sent");
    // the report stage's first call is refused: the pipeline fails, saying why
    assert_eq!(rec.status, PipelineStatus::Failed, "{rec:#?}");
    let why = why(&rec, &events);
    assert!(
        why.contains("report stage failed")
            && why.contains("\"vendor/unlisted\"")
            && why.contains("[prices.\"vendor/unlisted\"]"),
        "{why}"
    );

    // without a money budget the same model is called
    let server = MockServer::start().await;
    mount_models(&server, 0.000_001).await;
    mount_answers(&server, 0.0001).await;
    let gov = engine(
        client(&server, "vendor/unlisted").await,
        budgets(None, None),
    );
    let (rec, _) = run(&gov).await;
    gov.shutdown(Duration::from_secs(5)).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");
    assert!(!chat_requests(&server).await.is_empty());
}

#[tokio::test]
async fn a_failed_model_list_keeps_the_prices_known_so_far() {
    let server = MockServer::start().await;
    mount_models(&server, 0.000_002).await;
    let c = client(&server, MODEL).await;
    let known = c.model_price(MODEL).expect("loaded at start");
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(MODELS_PATH))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .mount(&server)
        .await;
    assert!(c.refresh_models().await.is_err());
    assert_eq!(c.model_price(MODEL), Some(known));
}
