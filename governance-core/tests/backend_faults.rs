//! Transient backend failures (a blackboard that is briefly unreachable) do not fail a pipeline:
//! agents that hit a retryable backend error are restarted and continue from the blackboard.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use common::*;
use governance_core::{
    AgentId, Blackboard, BlackboardSnapshot, Consensus, ConsensusRule, Error, EventKind,
    Governance, Handoff, HandoffId, LocalLlm, LocalLlmConfig, MemoryBlackboard, MemoryStore,
    PipelineId, PipelineRegistry, PipelineStatus, Proposal, ProposalId, Result, Solution,
    SpawnRequest, Vote, VoteOutcome,
};

/// The blackboard call a [`Flaky`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fails {
    Proposals,
    Snapshot,
}

/// Fails the first `fail_first` calls of `fails` with a retryable backend error (Redis out of
/// reach).
#[derive(Debug)]
struct Flaky {
    inner: MemoryBlackboard,
    fails: Fails,
    fail_first: u32,
    calls: AtomicU32,
}

impl Flaky {
    fn new(fails: Fails, fail_first: u32) -> Self {
        Self {
            inner: MemoryBlackboard::default(),
            fails,
            fail_first,
            calls: AtomicU32::new(0),
        }
    }

    /// `Err` while the failing call has failed fewer than `fail_first` times.
    fn fault(&self, call: Fails) -> Result<()> {
        if call == self.fails && self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            return Err(Error::backend("flaky", "connection refused", true));
        }
        Ok(())
    }
}

#[async_trait]
impl Blackboard for Flaky {
    async fn create_proposal(&self, p: &PipelineId, proposal: Proposal) -> Result<Proposal> {
        self.inner.create_proposal(p, proposal).await
    }
    async fn proposal(&self, p: &PipelineId, id: &ProposalId) -> Result<Proposal> {
        self.inner.proposal(p, id).await
    }
    async fn proposals(&self, p: &PipelineId) -> Result<Vec<Proposal>> {
        self.fault(Fails::Proposals)?;
        self.inner.proposals(p).await
    }
    async fn vote(
        &self,
        p: &PipelineId,
        id: &ProposalId,
        vote: Vote,
        rule: &ConsensusRule,
    ) -> Result<VoteOutcome> {
        self.inner.vote(p, id, vote, rule).await
    }
    async fn consensus(&self, p: &PipelineId) -> Result<Option<Consensus>> {
        self.inner.consensus(p).await
    }
    async fn add_solution(&self, p: &PipelineId, s: Solution) -> Result<()> {
        self.inner.add_solution(p, s).await
    }
    async fn create_handoff(&self, p: &PipelineId, h: Handoff) -> Result<()> {
        self.inner.create_handoff(p, h).await
    }
    async fn claim_handoff(&self, p: &PipelineId, id: &HandoffId, c: &AgentId) -> Result<bool> {
        self.inner.claim_handoff(p, id, c).await
    }
    async fn handoffs(&self, p: &PipelineId) -> Result<Vec<Handoff>> {
        self.inner.handoffs(p).await
    }
    async fn put_partial(&self, p: &PipelineId, k: &str, v: serde_json::Value) -> Result<()> {
        self.inner.put_partial(p, k, v).await
    }
    async fn snapshot(&self, p: &PipelineId) -> Result<BlackboardSnapshot> {
        self.fault(Fails::Snapshot)?;
        self.inner.snapshot(p).await
    }
    async fn restore(&self, p: &PipelineId, s: BlackboardSnapshot) -> Result<()> {
        self.inner.restore(p, s).await
    }
    async fn clear(&self, p: &PipelineId) -> Result<()> {
        self.inner.clear(p).await
    }
}

#[tokio::test(start_paused = true)]
async fn agents_restart_after_transient_backend_errors_and_the_pipeline_completes() {
    let bb = Arc::new(Flaky::new(Fails::Proposals, 4));
    let gov = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(LocalLlm::new(LocalLlmConfig::default())))
        .blackboard(bb.clone())
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    assert_gap_free(&events);
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    let restarts = events.iter().filter(|e| matches!(&e.kind, EventKind::Error { kind, message, .. } if kind == "backend" && message.contains("restarting"))).count();
    assert!(restarts >= 1, "at least one agent was restarted");
    assert_eq!(count(&events, "consensus_reached"), 1);
    assert_eq!(
        count(&events, "proposal_created"),
        1,
        "a restarted ALPHA does not write its proposal twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_blackboard_outage_holds_a_status_change_instead_of_failing_the_pipeline() {
    // 40 failed snapshots: far more than one operation's bounded retries (8)
    let bb = Arc::new(Flaky::new(Fails::Snapshot, 40));
    let store = Arc::new(MemoryStore::default());
    let gov = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(LocalLlm::new(LocalLlmConfig::default())))
        .blackboard(bb.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    assert!(bb.calls.load(Ordering::SeqCst) > 40, "the outage was hit");
    let stored = store.get(&id).await.unwrap().expect("registry");
    assert_eq!(stored.status, PipelineStatus::Completed);
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    assert_gap_free(&events);
    assert_eq!(stored.last_seq, events.last().map_or(0, |e| e.seq));
}
