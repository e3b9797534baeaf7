//! Shared helpers of the scenario tests.
#![allow(dead_code, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use governance_core::{
    Config, Event, EventKind, Fault, Governance, LocalLlm, LocalLlmConfig, MemoryStore, PipelineId,
    PipelineRecord, PipelineStatus, SpawnRequest,
};

pub struct Harness {
    pub gov: Governance,
    pub llm: LocalLlm,
    pub store: Arc<MemoryStore>,
}

pub fn harness(config: Config, llm: LocalLlmConfig) -> Harness {
    let llm = LocalLlm::new(llm);
    let store = Arc::new(MemoryStore::default());
    let gov = Governance::builder()
        .config(config)
        .llm("local", Arc::new(llm.clone()))
        .store(store.clone())
        .build()
        .expect("engine builds");
    Harness { gov, llm, store }
}

pub fn faults(faults: Vec<Fault>) -> LocalLlmConfig {
    let mut conf = LocalLlmConfig::default();
    conf.faults = faults;
    conf
}

impl Harness {
    pub async fn run(&self, objective: &str) -> (PipelineRecord, Vec<Event>) {
        let id = self
            .gov
            .spawn(SpawnRequest::new(objective))
            .await
            .expect("spawn");
        self.finish(&id).await
    }

    pub async fn finish(&self, id: &PipelineId) -> (PipelineRecord, Vec<Event>) {
        let rec = tokio::time::timeout(Duration::from_secs(3600), self.gov.wait(id))
            .await
            .expect("pipeline ends")
            .expect("wait");
        let events = self.gov.events(id, 0, 100_000).await.expect("events");
        assert_gap_free(&events);
        (rec, events)
    }
}

pub fn assert_gap_free(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "event seq gap at index {i}: {events:#?}"
        );
    }
}

pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

pub fn statuses(events: &[Event]) -> Vec<PipelineStatus> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StatusChanged { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

pub fn count(events: &[Event], ty: &str) -> usize {
    events.iter().filter(|e| e.kind.type_name() == ty).count()
}

pub fn fast_config() -> Config {
    let mut conf = Config::default();
    conf.agent_poll_interval = Duration::from_millis(50);
    conf
}
