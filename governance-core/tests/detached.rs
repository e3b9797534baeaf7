//! An agent context for a worker process (`AgentContext::detached`) counts what the role and
//! the pipeline had already used before the work reached it: a call past either budget is
//! refused before it is sent.

use std::sync::Arc;

use governance_core::{
    AgentContext, ChatMessage, Config, DetachedContext, ErrorKind, LedgerStore, LocalLlm,
    MemoryBlackboard, MemoryBus, MemoryStore, PipelineId, Purpose,
};

fn ctx(config: Config, agent_used: u64, pipeline_used: u64) -> (AgentContext, Arc<MemoryStore>) {
    let events = Arc::new(MemoryStore::default());
    let p = DetachedContext::new(
        PipelineId::generate(),
        "Design a caching strategy",
        "ALPHA".parse().unwrap(),
        Arc::new(MemoryBlackboard::default()),
        Arc::new(MemoryBus::default()),
        Arc::new(LocalLlm::default()),
        Arc::new(config),
        events.clone(),
    )
    .agent_tokens_used(agent_used)
    .pipeline_used(pipeline_used, 0.0);
    (AgentContext::detached(p), events)
}

fn ask() -> Vec<ChatMessage> {
    vec![ChatMessage::user("research the objective")]
}

#[tokio::test]
async fn a_fresh_detached_context_calls_the_model_and_reports_it() {
    let (ctx, events) = ctx(Config::default(), 0, 0);
    ctx.llm(Purpose::Propose, ask()).await.unwrap();
    assert!(ctx.tokens_used() > 0);
    let reported = events.read(ctx.pipeline_id(), 0, 100).await.unwrap();
    assert!(reported.iter().any(|e| e.kind.type_name() == "llm_call"));
}

#[tokio::test]
async fn usage_before_the_handover_counts_against_the_pipeline_budget() {
    let mut config = Config::default();
    config.budgets.max_tokens_per_pipeline = 1_000;
    let (ctx, events) = ctx(config, 0, 990);
    let err = ctx.llm(Purpose::Propose, ask()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExceeded, "{err}");
    assert_eq!(ctx.tokens_used(), 0, "nothing was sent");
    let reported = events.read(ctx.pipeline_id(), 0, 100).await.unwrap();
    assert!(!reported.iter().any(|e| e.kind.type_name() == "llm_call"));
}

#[tokio::test]
async fn usage_before_the_handover_counts_against_the_agent_budget() {
    let mut config = Config::default();
    config.budgets.max_tokens_per_agent = 500;
    let (ctx, _) = ctx(config, 490, 490);
    assert_eq!(ctx.tokens_used(), 490);
    let err = ctx.llm(Purpose::Propose, ask()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExceeded, "{err}");
    assert_eq!(ctx.tokens_used(), 490, "nothing was sent");
    // that 490 of 500 is "too little left", not "used up", is checked where the owner's
    // `RemoteLink::budget_exhausted` lives (`agent::remote` unit tests)
}
