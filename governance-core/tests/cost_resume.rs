//! Money spent before a crash counts after the resume: the spent amount is rebuilt from the
//! `cost_usd` of the pipeline's `llm_call` events (the system of record), so a resumed
//! pipeline cannot spend its budget a second time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use governance_core::{
    Cost, CostLedger, EventKind, Fault, FaultKind, Governance, LlmClient, LlmRequest, LlmResponse,
    LocalLlm, LocalLlmConfig, MemoryBlackboard, MemoryCostLedger, MemoryStore, ModelPrice,
    PipelineRegistry, PipelineStatus, Purpose, Result, SpawnRequest, async_trait,
};

/// What every call costs, as the "provider" reports it.
const CALL_COST: f64 = 0.01;

/// The local LLM with a price (cheap prompts, $0.00001 a completion token) and a reported
/// cost per call; counts the calls it answers.
#[derive(Debug)]
struct Priced {
    inner: LocalLlm,
    calls: AtomicUsize,
}

impl Priced {
    fn new(config: LocalLlmConfig) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalLlm::new(config),
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl LlmClient for Priced {
    fn name(&self) -> &str {
        "priced"
    }
    fn default_model(&self) -> &str {
        self.inner.default_model()
    }
    fn price(&self, _model: &str) -> Option<ModelPrice> {
        Some(ModelPrice::from_usd_per_token(0.000_000_1, 0.000_01, 0.0))
    }
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        let mut r = self.inner.complete(request).await?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        r.usage.cost_usd = Some(CALL_COST);
        Ok(r)
    }
}

#[test]
fn a_resumed_pipeline_counts_what_it_spent_before_the_crash() {
    let store = Arc::new(MemoryStore::default());
    // process 1 (no money budget): BETA never answers; the process dies mid-run
    let id = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let llm = Priced::new(faults(vec![Fault::new(
                Some("BETA"),
                Some(Purpose::Evaluate),
                FaultKind::Stall,
                u32::MAX,
            )]));
            let gov = Governance::builder()
                .config(fast_config())
                .llm("local", llm)
                .store(store.clone())
                .build()
                .unwrap();
            let mut rx = gov.subscribe();
            let id = gov
                .spawn(SpawnRequest::new("Design a caching strategy"))
                .await
                .unwrap();
            while rx.recv().await.unwrap().kind.type_name() != "proposal_created" {}
            id
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(!store.get(&id).await.unwrap().unwrap().status.is_terminal());
        let before: f64 = governance_core::LedgerStore::read(&*store, &id, 0, 10_000)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::LlmCall {
                    cost_usd: Some(c),
                    error: None,
                    ..
                } => Some(*c),
                _ => None,
            })
            .sum();
        assert!(before >= 2.0 * CALL_COST, "report and proposal: {before}");
        // process 2: a budget one more call's worst case (≈ $0.0104) fits alone, but not on
        // top of what was spent before the crash
        let mut config = fast_config();
        config.budgets.max_cost_per_pipeline_usd = Some(before + 0.005);
        let ledger = Arc::new(MemoryCostLedger::new());
        let llm = Priced::new(LocalLlmConfig::default());
        let gov = Governance::builder()
            .config(config)
            .llm("local", llm.clone())
            .blackboard(Arc::new(MemoryBlackboard::default()))
            .store(store.clone())
            .cost_ledger(ledger.clone())
            .build()
            .unwrap();
        assert_eq!(gov.resume_incomplete().await.unwrap(), vec![id.clone()]);
        let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            llm.calls.load(Ordering::Relaxed),
            0,
            "no call fits on top of the rebuilt spending"
        );
        assert_eq!(ledger.spent(&id).await.unwrap(), Cost::from_usd(before));
        assert_eq!(rec.status, PipelineStatus::Failed, "{rec:#?}");
        let failure = rec.failure.unwrap_or_default();
        assert!(failure.contains("max_cost_per_pipeline_usd"), "{failure}");
    });
}
