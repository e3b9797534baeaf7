use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::llm::{ChatMessage, RequestMeta};
use crate::local_llm::{Fault, FaultKind, LocalLlm, LocalLlmConfig};
use crate::state_machine::PipelineStatus;
use crate::store::PipelineRecord;
use crate::{Governance, SpawnRequest};

const OBJECTIVE: &str = "Design a caching strategy for the catalogue service";

fn config() -> Config {
    Config {
        agent_poll_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

async fn run(llm: Arc<dyn LlmClient>, req: SpawnRequest) -> (Governance, PipelineRecord) {
    let g = Governance::builder()
        .config(config())
        .llm("local", llm)
        .build()
        .unwrap();
    let id = g.spawn(req).await.unwrap();
    let rec = g.wait(&id).await.unwrap();
    (g, rec)
}

async fn consensus_title(g: &Governance, rec: &PipelineRecord) -> Option<String> {
    let snap = g.blackboard_snapshot(&rec.id).await.unwrap();
    let cons = snap.consensus?;
    snap.proposals
        .into_iter()
        .find(|p| p.id == cons.proposal_id)
        .map(|p| p.title)
}

async fn record(
    local: LocalLlmConfig,
    req: SpawnRequest,
) -> (
    Arc<MemoryExchangeStore>,
    LocalLlm,
    Governance,
    PipelineRecord,
) {
    let store = Arc::new(MemoryExchangeStore::default());
    let local = LocalLlm::new(local);
    let recording = RecordingLlm::new(Arc::new(local.clone()), store.clone());
    let (g, rec) = run(Arc::new(recording), req).await;
    (store, local, g, rec)
}

#[tokio::test(start_paused = true)]
async fn a_recorded_run_replays_offline_to_the_same_end() {
    // BETA rejects the first proposal: two rounds, feedback passed between agents
    let local = LocalLlmConfig {
        disagree_first: 1,
        ..LocalLlmConfig::default()
    };
    let (store, local, g, rec) = record(local, SpawnRequest::new(OBJECTIVE)).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");
    let recorded = store.exchanges(&rec.id).await.unwrap();
    assert_eq!(recorded.len() as u64, local.calls());
    assert_eq!(recorded.len() as u64, rec.usage.calls);
    assert!(
        recorded
            .iter()
            .all(|x| matches!(x.response, ExchangeOutcome::Ok(_)))
    );
    let calls_before = local.calls();

    let replay = Arc::new(
        ReplayLlm::from_store(store.as_ref(), &rec.id)
            .await
            .unwrap(),
    );
    let (g2, rec2) = run(replay.clone(), SpawnRequest::new(OBJECTIVE)).await;
    assert_eq!(rec2.status, rec.status);
    assert_eq!(
        consensus_title(&g2, &rec2).await,
        consensus_title(&g, &rec).await
    );
    assert!(consensus_title(&g2, &rec2).await.is_some());
    assert_eq!(
        local.calls(),
        calls_before,
        "the replay called the real client"
    );
    let stats = replay.stats();
    assert_eq!(stats.served, recorded.len() as u64);
    assert!(
        stats.missing.is_empty() && stats.diverged.is_empty(),
        "{stats:?}"
    );
    assert!(replay.unused().is_empty(), "{:?}", replay.unused());
}

#[tokio::test(start_paused = true)]
async fn failures_are_recorded_and_replayed_with_their_retry_after() {
    let faults = vec![Fault::new(
        Some("REPORTER"),
        Some(Purpose::Report),
        FaultKind::RateLimited(Duration::from_secs(2)),
        1,
    )];
    let local = LocalLlmConfig {
        faults,
        ..LocalLlmConfig::default()
    };
    let (store, _, _, rec) = record(local, SpawnRequest::new(OBJECTIVE)).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{rec:#?}");
    let recorded = store.exchanges(&rec.id).await.unwrap();
    let ExchangeOutcome::Err(first) = &recorded[0].response else {
        panic!("the first call was rate limited: {:?}", recorded[0]);
    };
    assert_eq!(first.retry_after_ms, Some(2000));
    let e = recorded[0].result().unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(e.to_string(), first.message);

    let replay = Arc::new(ReplayLlm::new(recorded).unwrap());
    let (_, rec2) = run(replay.clone(), SpawnRequest::new(OBJECTIVE)).await;
    assert_eq!(rec2.status, PipelineStatus::Completed);
    assert_eq!(rec2.usage.calls, rec.usage.calls);
    assert!(replay.stats().missing.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_call_is_recorded_and_replays_as_no_answer() {
    let faults = vec![Fault::new(
        Some("REPORTER"),
        None,
        FaultKind::Stall,
        u32::MAX,
    )];
    let local = LocalLlmConfig {
        faults,
        ..LocalLlmConfig::default()
    };
    let req = SpawnRequest {
        timeout: Some(Duration::from_secs(1)),
        ..SpawnRequest::new(OBJECTIVE)
    };
    let (store, _, _, rec) = record(local, req.clone()).await;
    assert_eq!(rec.status, PipelineStatus::Timeout, "{rec:#?}");
    tokio::time::sleep(Duration::from_millis(10)).await; // the drop-time write is spawned
    let recorded = store.exchanges(&rec.id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].response, ExchangeOutcome::Abandoned);

    let (_, rec2) = run(Arc::new(ReplayLlm::new(recorded).unwrap()), req).await;
    assert_eq!(rec2.status, PipelineStatus::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_missing_exchange_fails_clearly_and_names_its_key() {
    let (store, _, _, rec) = record(LocalLlmConfig::default(), SpawnRequest::new(OBJECTIVE)).await;
    let mut recorded = store.exchanges(&rec.id).await.unwrap();
    let beta = recorded
        .iter()
        .position(|x| x.agent_id.as_str() == "BETA" && x.purpose == Purpose::Evaluate)
        .expect("BETA evaluated");
    let removed = recorded.remove(beta).key();

    let replay = Arc::new(ReplayLlm::new(recorded).unwrap());
    let (g2, rec2) = run(replay.clone(), SpawnRequest::new(OBJECTIVE)).await;
    assert_ne!(rec2.status, PipelineStatus::Completed, "{rec2:#?}");
    assert!(
        replay.stats().missing.contains(&removed),
        "{:?}",
        replay.stats()
    );
    let events = serde_json::to_string(&g2.events(&rec2.id, 0, usize::MAX).await.unwrap()).unwrap();
    let text = format!("no recorded exchange for {removed}");
    assert!(events.contains(&text), "no event says {text:?}: {events}");
}

fn request(agent: &str, purpose: Purpose, attempt: u32) -> LlmRequest {
    LlmRequest {
        model: Some("m".into()),
        fallback_models: Vec::new(),
        messages: vec![ChatMessage::user("hello")].into(),
        max_tokens: 16,
        temperature: 0.0,
        response_format: crate::llm::ResponseFormat::JsonObject,
        meta: RequestMeta {
            pipeline_id: PipelineId::new("p1").unwrap(),
            agent_id: AgentId::new(agent).unwrap(),
            purpose,
            attempt,
        },
    }
}

#[tokio::test]
async fn replay_is_keyed_by_agent_purpose_and_attempt_and_flags_divergence() {
    let ok = |text: &str| {
        ExchangeOutcome::Ok(LlmResponse {
            content: text.into(),
            model: "m".into(),
            usage: Usage::default(),
            finish_reason: crate::llm::FinishReason::Stop,
            latency: Duration::ZERO,
            format_fallback: None,
        })
    };
    let a0 = LlmExchange::new(
        &request("ALPHA", Purpose::Propose, 0),
        ok("a0"),
        "m",
        Duration::ZERO,
    );
    let b0 = LlmExchange::new(
        &request("BETA", Purpose::Evaluate, 0),
        ok("b0"),
        "m",
        Duration::ZERO,
    );
    let replay = ReplayLlm::new(vec![a0, b0]).unwrap();
    // asked in the other order: interleaving does not matter
    assert_eq!(
        replay
            .complete(&request("BETA", Purpose::Evaluate, 0))
            .await
            .unwrap()
            .content,
        "b0"
    );
    let mut changed = request("ALPHA", Purpose::Propose, 0);
    changed.messages = vec![ChatMessage::user("something else")].into();
    assert_eq!(replay.complete(&changed).await.unwrap().content, "a0");
    let e = replay
        .complete(&request("ALPHA", Purpose::Propose, 1))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("(agent ALPHA, purpose propose, attempt 1)"),
        "{e}"
    );
    assert!(!e.is_retryable());
    let stats = replay.stats();
    assert_eq!(stats.served, 2);
    assert_eq!(stats.diverged.len(), 1);
    assert_eq!(stats.missing.len(), 1);

    let other = LlmExchange::new(
        &request("ALPHA", Purpose::Propose, 0),
        ok("x"),
        "m",
        Duration::ZERO,
    );
    let mut elsewhere = other.clone();
    elsewhere.pipeline_id = PipelineId::new("p2").unwrap();
    assert!(ReplayLlm::new(vec![other, elsewhere]).is_err());
}

#[test]
fn recorded_errors_rebuild_the_same_error() {
    let errors = [
        Error::Llm(LlmFailure {
            status: Some(503),
            provider_code: Some("overloaded".into()),
            message: "try later".into(),
            retryable: true,
            retry_after: Some(Duration::from_millis(1500)),
        }),
        Error::Unauthorized("401 from provider".into()),
        Error::MalformedOutput("empty content".into()),
        Error::Timeout("no answer in 10s".into()),
        Error::CircuitOpen {
            retry_after: Duration::from_secs(3),
        },
        Error::config("OPENROUTER_MODEL", "empty"),
        Error::backend("sqlite", "disk full", true),
    ];
    for e in errors {
        let rec = RecordedError::from(&e);
        let json = serde_json::to_string(&rec).unwrap();
        let back: RecordedError = serde_json::from_str(&json).unwrap();
        let again = back.to_error();
        assert_eq!(again.kind(), e.kind(), "{json}");
        assert_eq!(again.is_retryable(), e.is_retryable(), "{json}");
        assert_eq!(again.retry_after(), e.retry_after(), "{json}");
        assert_eq!(again.signature(), e.signature(), "{json}");
        if e.kind() != ErrorKind::Backend {
            assert_eq!(again.to_string(), e.to_string(), "{json}");
        }
    }
}

/// Exchanges recorded before response formats existed carry `"json": true/false` in their
/// request and no `format_fallback` in their answer: they still load, as JSON mode / text.
#[test]
fn exchanges_recorded_with_the_old_json_flag_still_load() {
    let p = PipelineId::new("p1").unwrap();
    let old_request = |json: bool| {
        serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 16, "temperature": 0.0, "json": json,
            "meta": {"pipeline_id": "p1", "agent_id": "BETA", "purpose": "evaluate", "attempt": 0}
        })
    };
    let envelope = serde_json::json!({
        "v": 1, "purpose": "evaluate", "attempt": 0,
        "response": {"ok": {"content": "{}", "model": "m",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cost_usd": null},
            "finish_reason": "stop", "latency": 5}},
        "model_used": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cost_usd": null},
        "latency_ms": 5, "ts": "2026-01-01T00:00:00Z"
    });
    let x = LlmExchange::from_stored(&p, "BETA", old_request(true), envelope, "sqlite").unwrap();
    let ExchangeOutcome::Ok(resp) = &x.response else {
        panic!("{:?}", x.response)
    };
    assert_eq!(resp.format_fallback, None);
    let req: LlmRequest = serde_json::from_value(x.request).unwrap();
    assert_eq!(req.response_format, crate::llm::ResponseFormat::JsonObject);
    let req: LlmRequest = serde_json::from_value(old_request(false)).unwrap();
    assert_eq!(req.response_format, crate::llm::ResponseFormat::Text);
    // today's requests round-trip with their schema
    let new = request("BETA", Purpose::Evaluate, 0);
    let new = LlmRequest {
        response_format: crate::parse::response_format_for(Purpose::Evaluate),
        ..new
    };
    let back: LlmRequest = serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
    assert_eq!(back, new);
}
