//! The governed LLM call as a stack of layers: an embedder's layer sees every call with its
//! context and can refuse one (never sent, recorded as an `error` event), the stack runs in
//! the documented order, and no order can leave out a built-in stage.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use governance_core::{
    Agent, AgentContext, AgentId, AgentOutcome, ChatMessage, Config, DeltaSink, Error, ErrorKind,
    Event, EventKind, Fault, FaultKind, Governance, LlmCall, LlmClient, LlmLayer, LlmRequest,
    LlmResponse, LlmStage, LocalLlm, LocalLlmConfig, MemoryStore, Next, PipelineId, PipelineStatus,
    Purpose, Result, RetryPolicy, SpawnRequest,
};
use parking_lot::Mutex;

/// What a layer or the client saw of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    pipeline: PipelineId,
    agent: AgentId,
    role: String,
    purpose: Purpose,
    model: String,
}

/// The upstream client: the local LLM, with a log of every request that reached it.
#[derive(Debug)]
struct Upstream {
    inner: LocalLlm,
    seen: Mutex<Vec<(PipelineId, AgentId, Purpose)>>,
}

impl Upstream {
    fn new(config: LocalLlmConfig) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalLlm::new(config),
            seen: Mutex::default(),
        })
    }

    fn requests(&self, pipeline: &PipelineId) -> Vec<(AgentId, Purpose)> {
        let seen = self.seen.lock();
        let of_it = seen.iter().filter(|(p, _, _)| p == pipeline);
        of_it.map(|(_, a, p)| (a.clone(), *p)).collect()
    }
}

#[async_trait]
impl LlmClient for Upstream {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_model(&self) -> &str {
        self.inner.default_model()
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        let m = &request.meta;
        let entry = (m.pipeline_id.clone(), m.agent_id.clone(), m.purpose);
        self.seen.lock().push(entry);
        self.inner.complete(request).await
    }

    async fn complete_streaming(
        &self,
        request: &LlmRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<LlmResponse> {
        let _ = on_delta;
        self.complete(request).await
    }
}

/// A layer that logs what it sees (and, in `trace`, when it enters and leaves) and refuses
/// the calls `refuse` matches.
#[derive(Debug)]
struct Watch {
    name: &'static str,
    seen: Mutex<Vec<Seen>>,
    trace: Arc<Mutex<Vec<String>>>,
    refuse: fn(&LlmCall<'_>) -> bool,
}

impl Watch {
    fn new(name: &'static str, trace: &Arc<Mutex<Vec<String>>>) -> Arc<Self> {
        Self::refusing(name, trace, |_| false)
    }

    fn refusing(
        name: &'static str,
        trace: &Arc<Mutex<Vec<String>>>,
        refuse: fn(&LlmCall<'_>) -> bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            seen: Mutex::default(),
            trace: trace.clone(),
            refuse,
        })
    }

    fn seen_in(&self, pipeline: &PipelineId) -> Vec<Seen> {
        let seen = self.seen.lock();
        seen.iter()
            .filter(|s| &s.pipeline == pipeline)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl LlmLayer for Watch {
    async fn call(
        &self,
        call: &LlmCall<'_>,
        request: LlmRequest,
        next: Next<'_>,
    ) -> Result<LlmResponse> {
        self.seen.lock().push(Seen {
            pipeline: call.pipeline_id().clone(),
            agent: call.agent_id().clone(),
            role: call.role().to_owned(),
            purpose: call.purpose(),
            model: call.model().to_owned(),
        });
        if (self.refuse)(call) {
            self.trace.lock().push(format!("{} refused", self.name));
            return Err(Error::InvalidInput(format!(
                "{} may not ask for {:?}",
                call.agent_id(),
                call.purpose()
            )));
        }
        self.trace.lock().push(format!("{} in", self.name));
        let result = next.run(call, request).await;
        self.trace.lock().push(format!("{} out", self.name));
        result
    }
}

/// A custom role that asks the model once, through its context.
#[derive(Debug)]
struct Asker;

#[async_trait]
impl Agent for Asker {
    fn role(&self) -> &str {
        "ASKER"
    }

    fn votes(&self) -> bool {
        false
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        ctx.llm(Purpose::Other, vec![ChatMessage::user("anything to add?")])
            .await?;
        Ok(AgentOutcome::Done)
    }
}

fn llm_calls(events: &[Event]) -> Vec<(AgentId, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LlmCall {
                agent_id, error, ..
            } => Some((agent_id.clone(), error.clone())),
            _ => None,
        })
        .collect()
}

async fn finish(
    gov: &Governance,
    id: &PipelineId,
) -> (governance_core::PipelineRecord, Vec<Event>) {
    let rec = gov.wait(id).await.expect("wait");
    let events = gov.events(id, 0, 100_000).await.expect("events");
    assert_gap_free(&events);
    (rec, events)
}

#[tokio::test(start_paused = true)]
async fn a_custom_layer_sees_every_call_with_its_context() {
    let trace = Arc::default();
    let watch = Watch::new("watch", &trace);
    let upstream = Upstream::new(LocalLlmConfig::default());
    let gov = Governance::builder()
        .llm("local", upstream.clone())
        .role(Arc::new(Asker))
        .llm_layer(watch.clone())
        .build()
        .unwrap();
    // several pipelines at once: each call is seen with its own pipeline
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut req = SpawnRequest::new(format!("Design a caching strategy #{i}"));
        req.model = Some(format!("model-{i}"));
        ids.push(gov.spawn(req).await.unwrap());
    }
    for (i, id) in ids.iter().enumerate() {
        let (rec, events) = finish(&gov, id).await;
        assert_eq!(rec.status, PipelineStatus::Completed, "{events:#?}");
        let seen = watch.seen_in(id);
        let sent = upstream.requests(id);
        let recorded = llm_calls(&events);
        // every call the layer saw was sent and recorded, and nothing else was
        assert!(!seen.is_empty());
        assert_eq!(seen.len(), sent.len());
        assert_eq!(seen.len(), recorded.len());
        let seen_pairs: Vec<_> = seen.iter().map(|s| (s.agent.clone(), s.purpose)).collect();
        assert_eq!(seen_pairs, sent, "same calls, same order");
        for s in &seen {
            assert_eq!(s.model, format!("model-{i}"));
            assert_eq!(
                s.role,
                s.agent.as_str(),
                "built-in roles and ASKER are their ids"
            );
        }
        let purposes: Vec<_> = seen.iter().map(|s| (s.agent.as_str(), s.purpose)).collect();
        for want in [
            ("REPORTER", Purpose::Report),
            ("ALPHA", Purpose::Propose),
            ("BETA", Purpose::Evaluate),
            ("ASKER", Purpose::Other),
        ] {
            assert!(purposes.contains(&want), "{want:?} in {purposes:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_never_reaches_the_client_and_is_an_error_event() {
    let trace = Arc::default();
    let watch = Watch::refusing("veto", &trace, |call| call.agent_id().as_str() == "ASKER");
    let upstream = Upstream::new(LocalLlmConfig::default());
    let store = Arc::new(MemoryStore::default());
    let gov = Governance::builder()
        .llm("local", upstream.clone())
        .store(store)
        .role(Arc::new(Asker))
        .llm_layer(watch.clone())
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let (rec, events) = finish(&gov, &id).await;
    // the others went on without the asker
    assert_eq!(rec.status, PipelineStatus::Completed, "{events:#?}");
    let asker: AgentId = "ASKER".parse().unwrap();
    assert!(
        watch.seen_in(&id).iter().any(|s| s.agent == asker),
        "the layer saw the asker's call"
    );
    assert!(
        upstream.requests(&id).iter().all(|(a, _)| a != &asker),
        "the refused call never reached the client"
    );
    assert!(llm_calls(&events).iter().all(|(a, _)| a != &asker));
    let refusals: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error {
                agent_id: Some(a),
                kind,
                message,
                ..
            } if a == &asker && kind == "llm_refused" => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 1, "{events:#?}");
    assert!(
        refusals[0].contains("may not ask for Other"),
        "{}",
        refusals[0]
    );
    let record = rec.agents.iter().find(|a| a.agent_id == "ASKER").unwrap();
    assert_eq!(record.tokens_used, 0, "a refused call spends no budget");
}

#[tokio::test(start_paused = true)]
async fn the_stack_runs_in_the_documented_order() {
    // ALPHA's first request fails with a retryable 503: Retry tries again
    let config = {
        let mut conf = LocalLlmConfig::default();
        conf.faults = vec![Fault::new(Some("ALPHA"), None, FaultKind::Status(503), 1)];
        conf
    };
    let upstream = Upstream::new(config);
    let trace: Arc<Mutex<Vec<String>>> = Arc::default();
    let top = Watch::new("top", &trace);
    let middle = Watch::new("middle", &trace);
    let bottom = Watch::new("bottom", &trace);
    let gov = Governance::builder()
        .llm("local", upstream.clone())
        .llm_stack(vec![
            LlmStage::Layer(top.clone()),
            LlmStage::Retry,
            LlmStage::TokenBudget,
            LlmStage::Layer(middle.clone()),
            LlmStage::CircuitBreaker,
            LlmStage::Events,
        ])
        .llm_layer(bottom.clone())
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let (rec, events) = finish(&gov, &id).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{events:#?}");
    let alpha: AgentId = "ALPHA".parse().unwrap();
    let count = |w: &Watch| w.seen_in(&id).iter().filter(|s| s.agent == alpha).count();
    let sent = upstream
        .requests(&id)
        .iter()
        .filter(|(a, _)| a == &alpha)
        .count();
    // above Retry: once per call; below it: once per try
    assert_eq!(count(&bottom), sent);
    assert_eq!(count(&middle), sent);
    assert_eq!(
        count(&top),
        sent - 1,
        "the failed try was retried below `top`"
    );
    let failed = llm_calls(&events)
        .into_iter()
        .filter(|(a, e)| a == &alpha && e.is_some())
        .count();
    assert_eq!(failed, 1, "the failed try is an llm_call event of its own");
    // each call enters top, middle, bottom and leaves in reverse
    let trace = trace.lock();
    let first: Vec<&str> = trace.iter().take(6).map(String::as_str).collect();
    assert_eq!(
        first,
        [
            "top in",
            "middle in",
            "bottom in",
            "bottom out",
            "middle out",
            "top out"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_the_budget_refuses_never_reaches_a_layer_below_it() {
    let mut config = Config::default();
    config.budgets.max_tokens_per_agent = 10; // less than any request reserves
    let trace = Arc::default();
    let watch = Watch::new("watch", &trace);
    let upstream = Upstream::new(LocalLlmConfig::default());
    let gov = Governance::builder()
        .config(config)
        .llm("local", upstream.clone())
        .llm_layer(watch.clone())
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let (rec, events) = finish(&gov, &id).await;
    assert!(rec.status.is_terminal());
    assert!(watch.seen_in(&id).is_empty(), "{:?}", watch.seen_in(&id));
    assert!(upstream.requests(&id).is_empty());
    assert!(llm_calls(&events).is_empty());
    assert!(
        events
            .iter()
            .all(|e| !matches!(&e.kind, EventKind::Error { kind, .. } if kind == "llm_refused")),
        "a budget refusal is not a layer's refusal"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_keeps_the_call_from_the_layers_below_it() {
    // every request of the pipeline fails: the breaker opens after 5 and stays open
    let config = {
        let mut conf = LocalLlmConfig::default();
        conf.faults = vec![Fault::new(None, None, FaultKind::Status(503), u32::MAX)];
        conf
    };
    let upstream = Upstream::new(config);
    let trace = Arc::default();
    let watch = Watch::new("watch", &trace);
    let gov = Governance::builder()
        .llm("local", upstream.clone())
        .llm_layer(watch.clone())
        .llm_retry(RetryPolicy::llm_call(2))
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let (rec, events) = finish(&gov, &id).await;
    assert!(rec.status.is_terminal(), "{events:#?}");
    // the layer below the breaker saw exactly the requests that were sent
    assert_eq!(watch.seen_in(&id).len(), upstream.requests(&id).len());
    assert_eq!(watch.seen_in(&id).len(), llm_calls(&events).len());
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Error { kind, .. } if kind == "circuit_open")),
        "{events:#?}"
    );
}

#[test]
fn an_order_must_name_every_built_in_stage_once() {
    let build = |order: Vec<LlmStage>| Governance::builder().llm_stack(order).build();
    let err = build(vec![
        LlmStage::Retry,
        LlmStage::Events,
        LlmStage::CircuitBreaker,
    ])
    .expect_err("no token budget: refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("exactly once"), "{err}");
    let mut twice = LlmStage::default_order();
    twice.push(LlmStage::TokenBudget);
    assert_eq!(build(twice).expect_err("twice").kind(), ErrorKind::Config);
    let mut reordered = LlmStage::default_order();
    reordered.reverse();
    assert!(build(reordered).is_ok(), "any order of all four is allowed");
}
