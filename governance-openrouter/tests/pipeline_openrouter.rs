//! Whole pipelines in `openrouter` mode against a mock OpenRouter that answers by role, the way
//! real models do: JSON in markdown fences, an evaluation in prose, usage with cost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{KEY, PATH, config};
use governance_core::{
    Config, Event, EventKind, Governance, PipelineRecord, PipelineStatus, SpawnRequest,
    TokenBudgetConfig,
};
use governance_openrouter::OpenRouterClient;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The model the mock says answered (OpenRouter reports the dated model).
const ANSWERING_MODEL: &str = "anthropic/claude-sonnet-4-20250514";
const PROMPT_TOKENS: u64 = 400;
const COMPLETION_TOKENS: u64 = 60;
const OBJECTIVE: &str = "Design a caching strategy for the catalogue service";
const TITLE: &str = "Cache-aside with per-entity TTLs";

fn body(content: &str, cost: f64) -> serde_json::Value {
    serde_json::json!({
        "id": "gen-1761998482-Zb7VbQkM2f4kYQp3xN8d",
        "provider": "Anthropic",
        "model": ANSWERING_MODEL,
        "object": "chat.completion",
        "created": 1_761_998_482,
        "choices": [{
            "logprobs": null,
            "index": 0,
            "finish_reason": "stop",
            "native_finish_reason": "end_turn",
            "message": {"role": "assistant", "content": content, "refusal": null, "reasoning": null}
        }],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "cost": cost,
            "is_byok": false,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        }
    })
}

/// (a line only that role's prompt has, the model's answer)
fn answers() -> Vec<(&'static str, String)> {
    vec![
        (
            "Your role: REPORTER",
            "```json\n{\"summary\": \"Read-heavy catalogue; stale reads tolerable for minutes.\", \
             \"findings\": [\"95% reads\", \"p99 latency matters\"], \"complexity\": 0.35}\n```"
                .to_owned(),
        ),
        (
            "Your role: ALPHA",
            format!(
                "{{\"title\": \"{TITLE}\", \"content\": \"Cache entities in Redis with \
                 cache-aside reads, TTLs per entity type and invalidation on writes.\"}}"
            ),
        ),
        (
            "Evaluate the proposal",
            "I approve this proposal: cache-aside with TTLs fits a read-heavy catalogue and the \
             invalidation on writes bounds staleness."
                .to_owned(),
        ),
        (
            "Build the final solution",
            "Here is the solution:\n```json\n{\"solution\": \"1. Add a Redis cache-aside layer. \
             2. TTLs per entity type. 3. Invalidate on writes. 4. Measure hit rate.\"}\n```"
                .to_owned(),
        ),
    ]
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

fn engine(server: &MockServer, budgets: TokenBudgetConfig) -> Governance {
    engine_with(OpenRouterClient::new(config(server)).unwrap(), budgets)
}

fn engine_with(client: OpenRouterClient, budgets: TokenBudgetConfig) -> Governance {
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

async fn run(gov: &Governance) -> (PipelineRecord, Vec<Event>) {
    let id = gov.spawn(SpawnRequest::new(OBJECTIVE)).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    gov.shutdown(Duration::from_secs(10)).await;
    let events = gov.events(&id, 0, usize::MAX).await.unwrap();
    (rec, events)
}

/// (model, error) of every `llm_call` event.
fn llm_calls(events: &[Event]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LlmCall { model, error, .. } => Some((model.clone(), error.clone())),
            _ => None,
        })
        .collect()
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

/// The chat-completion requests among them (not the model list).
async fn chat_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == PATH)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_in_openrouter_mode_completes_and_accounts_usage_and_cost() {
    let server = MockServer::start().await;
    mount_answers(&server, 0.0021).await;
    let gov = engine(&server, TokenBudgetConfig::default());
    let (rec, events) = run(&gov).await;

    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");
    assert_eq!(rec.mode, "openrouter");
    let sent = requests(&server).await as u64;
    assert!(sent >= 4, "report, proposal, evaluation, solution: {sent}");
    assert_eq!(rec.usage.calls, sent);
    assert_eq!(rec.usage.prompt_tokens, PROMPT_TOKENS * sent);
    assert_eq!(rec.usage.completion_tokens, COMPLETION_TOKENS * sent);
    #[allow(clippy::cast_precision_loss)]
    let cost = 0.0021 * sent as f64;
    assert!((rec.usage.cost_usd - cost).abs() < 1e-9, "{:?}", rec.usage);
    let calls = llm_calls(&events);
    assert_eq!(calls.len() as u64, sent);
    assert!(
        calls
            .iter()
            .all(|(m, e)| m == ANSWERING_MODEL && e.is_none()),
        "{calls:?}"
    );
    let snap = gov.blackboard_snapshot(&rec.id).await.unwrap();
    let cons = snap.consensus.expect("consensus");
    let accepted = snap.proposals.iter().find(|p| p.id == cons.proposal_id);
    assert_eq!(accepted.map(|p| p.title.as_str()), Some(TITLE));
    assert!(
        rec.results
            .as_ref()
            .unwrap()
            .solution
            .as_ref()
            .is_some_and(|s| s.contains("cache-aside")),
        "{:?}",
        rec.results
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_ends_orchestration_error_and_leaks_nowhere() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            serde_json::json!({"error": {"code": 401, "message": "No auth credentials found"}}),
        ))
        .mount(&server)
        .await;
    let gov = engine(&server, TokenBudgetConfig::default());
    let (rec, events) = run(&gov).await;

    assert_eq!(rec.status, PipelineStatus::OrchestrationError, "{rec:#?}");
    let failure = rec.failure.clone().unwrap_or_default();
    assert!(failure.contains("refused the credentials"), "{failure}");
    assert_eq!(requests(&server).await, 1, "a 401 is never retried");
    let checkpoint = gov.checkpoints().latest(&rec.id).await.unwrap();
    for (what, text) in [
        ("record", serde_json::to_string(&rec).unwrap()),
        ("events", serde_json::to_string(&events).unwrap()),
        ("checkpoint", serde_json::to_string(&checkpoint).unwrap()),
        ("debug", format!("{gov:?} {rec:?} {events:?}")),
    ] {
        assert!(!text.contains(KEY), "the API key leaked into the {what}");
        assert!(
            !text.contains("THIS-KEY-MUST-NEVER-LEAK"),
            "part of the key leaked into the {what}"
        );
    }
    assert!(serde_json::to_string(&events).unwrap().contains("401"));
}

/// Answers the first request 429 with `Retry-After`, then like [`mount_answers`], and notes
/// the instant each request arrived.
struct RateLimitedOnce {
    retry_after_secs: u64,
    arrived: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl wiremock::Respond for RateLimitedOnce {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let first = {
            let mut arrived = self.arrived.lock().unwrap();
            arrived.push(std::time::Instant::now());
            arrived.len() == 1
        };
        if first {
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", self.retry_after_secs.to_string())
                .set_body_json(
                    serde_json::json!({"error": {"code": 429, "message": "Rate limit exceeded"}}),
                );
        }
        let prompt = String::from_utf8_lossy(&request.body);
        match answers()
            .into_iter()
            .find(|(line, _)| prompt.contains(line))
        {
            Some((_, content)) => ResponseTemplate::new(200).set_body_json(body(&content, 0.0021)),
            None => ResponseTemplate::new(404),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_with_retry_after_is_waited_out_and_the_pipeline_completes() {
    // real clock: wiremock answers over a real socket, which a paused clock would race. The
    // wait is checked from below only (the retry must not come early), which no load can break.
    // Retry-After (2 s) is well above the backoff used without it (250 ms ± 25 %).
    let retry_after = Duration::from_secs(2);
    let server = MockServer::start().await;
    let arrived = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(RateLimitedOnce {
            retry_after_secs: retry_after.as_secs(),
            arrived: Arc::clone(&arrived),
        })
        .mount(&server)
        .await;
    let gov = engine(&server, TokenBudgetConfig::default());
    let (rec, events) = run(&gov).await;

    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");
    let calls = llm_calls(&events);
    assert_eq!(calls[0].1.as_deref(), Some("llm"), "{calls:?}");
    assert!(calls[1..].iter().all(|(_, e)| e.is_none()), "{calls:?}");
    assert_eq!(requests(&server).await, calls.len());
    assert_eq!(rec.usage.calls, calls.len() as u64);
    // the 429 was the report's call (the only call at that stage); its retry came only after
    // Retry-After had passed
    let arrived = arrived.lock().unwrap().clone();
    assert!(arrived.len() >= 2, "{arrived:?}");
    let waited = arrived[1].duration_since(arrived[0]);
    assert!(
        waited >= retry_after,
        "the retry came {waited:?} after the 429, before Retry-After ({retry_after:?}) passed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_the_cost_budget_ends_the_pipeline_and_sends_nothing_more() {
    let server = MockServer::start().await;
    mount_answers(&server, 0.004).await;
    // a price list far below what the provider then bills: each call's worst case (≈ $0.000001)
    // fits, the report (0.004) leaves room, the proposal (0.008) passes 0.006 once settled to
    // the provider's figure; nothing is sent after it
    Mock::given(method("GET"))
        .and(path("/api/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": [
            {"id": "anthropic/claude-sonnet-4",
             "pricing": {"prompt": "0.000000001", "completion": "0.000000001"}}]})),
        )
        .mount(&server)
        .await;
    let budgets = {
        let mut conf = TokenBudgetConfig::default();
        conf.max_cost_per_pipeline_usd = Some(0.006);
        conf
    };
    let client = OpenRouterClient::new(config(&server)).unwrap();
    client.start_model_prices().await;
    let gov = engine_with(client, budgets);
    let (rec, events) = run(&gov).await;

    assert_eq!(rec.status, PipelineStatus::Failed, "{rec:#?}");
    let failure = rec.failure.clone().unwrap_or_default();
    assert!(failure.contains("budget"), "{failure}");
    assert_eq!(
        chat_requests(&server).await,
        2,
        "a request was sent after the budget was passed"
    );
    assert_eq!(llm_calls(&events).len(), 2);
    assert!((rec.usage.cost_usd - 0.008).abs() < 1e-9, "{:?}", rec.usage);
    assert!(rec.results.is_some(), "partial results are kept");
}
