//! A pipeline whose process dies several times mid-orchestration: the ledger records each
//! resume as one `resumed` event, and the orchestration's start and each agent's spawn exactly
//! once, however often the agents were restarted.
//!
//! A "crash" freezes the process's ledger (every later write hangs, as if the process had
//! stopped right there) and then drops its runtime, so no write races the crash.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use governance_core::{
    Event, EventKind, Fault, FaultKind, Governance, LedgerStore, LocalLlm, LocalLlmConfig,
    MemoryBlackboard, MemoryStore, PipelineId, PipelineStatus, Purpose, SpawnRequest, SplitStore,
};

/// One process's view of the shared ledger; `crash` stops every write after it.
#[derive(Debug)]
struct ProcessLedger {
    store: Arc<MemoryStore>,
    crashed: AtomicBool,
}

impl ProcessLedger {
    fn crash(&self) {
        self.crashed.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl LedgerStore for ProcessLedger {
    async fn append(&self, events: &[Event]) -> governance_core::Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.store.append(events).await
    }
    async fn read(
        &self,
        p: &PipelineId,
        after: u64,
        limit: usize,
    ) -> governance_core::Result<Vec<Event>> {
        self.store.read(p, after, limit).await
    }
    async fn last_seq(&self, p: &PipelineId) -> governance_core::Result<u64> {
        self.store.last_seq(p).await
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn engine(store: &Arc<MemoryStore>, llm: &LocalLlm) -> (Governance, Arc<ProcessLedger>) {
    let ledger = Arc::new(ProcessLedger {
        store: store.clone(),
        crashed: AtomicBool::new(false),
    });
    // a fresh blackboard each time: the in-memory one dies with its process
    let gov = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(llm.clone()))
        .blackboard(Arc::new(MemoryBlackboard::default()))
        .store(Arc::new(SplitStore::new(
            ledger.clone(),
            store.clone(),
            store.clone(),
        )))
        .build()
        .unwrap();
    (gov, ledger)
}

fn beta_stalls() -> LocalLlm {
    LocalLlm::new(faults(vec![Fault::new(
        Some("BETA"),
        Some(Purpose::Evaluate),
        FaultKind::Stall,
        u32::MAX,
    )]))
}

/// Waits (bounded: fails only on a hang) until `llm` has been called `n` times.
async fn calls_reach(llm: &LocalLlm, n: u64) {
    for _ in 0..2000 {
        if llm.calls() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the agents never called the LLM {n} times");
}

#[test]
fn every_resume_is_one_resumed_event_and_starts_are_recorded_once() {
    const CRASHES_AFTER_RESUME: usize = 2;
    let store = Arc::new(MemoryStore::default());
    // process 1: the report, ALPHA's proposal, BETA stuck evaluating it; then the process dies
    let id = runtime().block_on(async {
        let llm = beta_stalls();
        let (gov, ledger) = engine(&store, &llm);
        let id = gov
            .spawn(SpawnRequest::new("Design a caching strategy"))
            .await
            .unwrap();
        // REPORTER, ALPHA's proposal, BETA's (stalled) evaluation
        calls_reach(&llm, 3).await;
        ledger.crash();
        id
    });
    // processes 2 and 3: resume, the agents run again (BETA is stuck again), and die again
    for _ in 0..CRASHES_AFTER_RESUME {
        runtime().block_on(async {
            let llm = beta_stalls();
            let (gov, ledger) = engine(&store, &llm);
            assert_eq!(gov.resume_incomplete().await.unwrap(), vec![id.clone()]);
            calls_reach(&llm, 1).await;
            ledger.crash();
        });
    }
    // process 4: resumes and finishes
    runtime().block_on(async {
        let (gov, _) = engine(&store, &LocalLlm::new(LocalLlmConfig::default()));
        assert_eq!(gov.resume_incomplete().await.unwrap(), vec![id.clone()]);
        let rec = tokio::time::timeout(Duration::from_secs(60), gov.wait(&id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
        let events = gov.events(&id, 0, 10_000).await.unwrap();
        assert_gap_free(&events);

        assert_eq!(
            count(&events, "orchestration_started"),
            1,
            "{:?}",
            types(&events)
        );
        let mut spawned: BTreeMap<String, usize> = BTreeMap::new();
        for e in &events {
            if let EventKind::AgentSpawned { agent_id, .. } = &e.kind {
                *spawned.entry(agent_id.to_string()).or_default() += 1;
            }
        }
        assert_eq!(
            spawned,
            BTreeMap::from([("ALPHA".to_owned(), 1), ("BETA".to_owned(), 1)]),
            "one agent_spawned per agent"
        );
        let resumed: Vec<PipelineStatus> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Resumed { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(
            resumed,
            vec![PipelineStatus::Orchestrating; CRASHES_AFTER_RESUME + 1],
            "one resumed event per resume, naming the status it resumed in"
        );
        // every resume comes after the orchestration started, and before the end
        let seq_of = |ty: &str| {
            events
                .iter()
                .find(|e| e.kind.type_name() == ty)
                .unwrap()
                .seq
        };
        assert!(seq_of("orchestration_started") < seq_of("resumed"));
        assert!(
            events
                .iter()
                .filter(|e| e.kind.type_name() == "resumed")
                .all(|e| e.seq < seq_of("orchestration_complete"))
        );
    });
}
