//! Each of the engine's thresholds pinned where it acts: the STUCK time, the CONFLICT count and
//! the procedure-violation budget, each measured on the pipeline's own events (their order, and
//! the instant of tokio's paused clock at which each was published), never on a wall clock.
//!
//! The pure rules are unit-tested in `spawn_controller.rs` and `error_budget.rs`; these tests
//! show the engine applies them with the configured values, exactly at the threshold.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use governance_core::{
    ErrorBudgetLimits, Event, EventKind, Fault, FaultKind, GammaReason, GammaThresholds,
    LocalLlmConfig, PipelineRecord, PipelineStatus as S, Purpose, SpawnRequest,
};
use tokio::time::Instant;

/// Runs one pipeline and returns every event of it with the (paused) instant at which the live
/// feed delivered it. The clock only moves while every task is idle, so that instant is the
/// instant the engine published the event.
async fn run_timed(h: &Harness, objective: &str) -> (PipelineRecord, Vec<(Instant, Arc<Event>)>) {
    let mut rx = h.gov.subscribe();
    let id = h
        .gov
        .spawn(SpawnRequest::new(objective))
        .await
        .expect("spawn");
    let mut seen = Vec::new();
    loop {
        let ev = rx.recv().await.expect("the live feed keeps up");
        if ev.pipeline_id() != &id {
            continue;
        }
        let end =
            matches!(&ev.kind, EventKind::StatusChanged { status, .. } if status.is_terminal());
        seen.push((Instant::now(), ev));
        if end {
            break;
        }
    }
    let (rec, events) = h.finish(&id).await;
    let live: Vec<u64> = seen.iter().map(|(_, e)| e.seq).collect();
    let ledger: Vec<u64> = events.iter().map(|e| e.seq).take(live.len()).collect();
    assert_eq!(
        live, ledger,
        "the live feed saw the ledger's events in order"
    );
    (rec, seen)
}

/// Whether an event marks progress for the STUCK rule (it resets the supervisor's clock):
/// the orchestration starting, proposals, votes, consensus, messages between agents, handoffs.
fn is_progress(kind: &EventKind) -> bool {
    match kind {
        EventKind::AgentMessage { to, .. } => to != governance_core::STREAM_RECIPIENT,
        EventKind::OrchestrationStarted { .. }
        | EventKind::ProposalCreated { .. }
        | EventKind::VoteCast { .. }
        | EventKind::ConsensusReached { .. }
        | EventKind::HandoffCreated { .. }
        | EventKind::GammaSpawned { .. } => true,
        _ => false,
    }
}

fn beta_stalls() -> Fault {
    Fault::new(
        Some("BETA"),
        Some(Purpose::Evaluate),
        FaultKind::Stall,
        u32::MAX,
    )
}

/// How long after the last progress GAMMA (STUCK) was spawned, in paused time, with the
/// default thresholds or with `stuck` configured.
async fn stuck_after(stuck: Option<Duration>) -> Duration {
    let mut cfg = fast_config();
    if let Some(stuck) = stuck {
        cfg.gamma.stuck = stuck;
    }
    let mut llm = faults(vec![beta_stalls()]);
    // answers take a while, so progress does not fall on a round instant
    llm.latency = Duration::from_millis(137);
    let h = harness(cfg, llm);
    let (rec, seen) = run_timed(&h, "Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let gammas: Vec<_> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, (at, e))| match &e.kind {
            EventKind::GammaSpawned { reason, .. } => Some((i, *at, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(gammas.len(), 1, "one GAMMA");
    let (gi, gamma_at, reason) = gammas[0];
    assert_eq!(reason, GammaReason::Stuck);
    let (progress_at, last) = seen[..gi]
        .iter()
        .rev()
        .find(|(_, e)| is_progress(&e.kind))
        .expect("the orchestration started before GAMMA");
    assert!(
        seen[..gi]
            .iter()
            .any(|(_, e)| e.kind.type_name() == "proposal_created"),
        "the agents made progress before they got stuck"
    );
    let after = gamma_at.duration_since(*progress_at);
    eprintln!(
        "GAMMA (STUCK) {after:?} after the last progress ({})",
        last.kind.type_name()
    );
    after
}

/// tokio's timer fires on whole milliseconds: a deadline may be met up to 1 ms late.
const TIMER_TICK: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn gamma_stuck_spawns_exactly_when_the_default_30s_pass_without_progress() {
    let stuck = Duration::from_secs(30); // the seed's threshold
    let after = stuck_after(None).await;
    assert!(
        after >= stuck,
        "GAMMA came {after:?} after the last progress: too early"
    );
    assert!(
        after <= stuck + TIMER_TICK,
        "GAMMA came {after:?} after the last progress: the threshold passed without it"
    );
}

#[tokio::test(start_paused = true)]
async fn gamma_stuck_follows_the_configured_threshold() {
    let stuck = Duration::from_millis(7_250);
    let after = stuck_after(Some(stuck)).await;
    assert!(
        after >= stuck,
        "GAMMA came {after:?} after the last progress: too early"
    );
    assert!(
        after <= stuck + TIMER_TICK,
        "GAMMA came {after:?} after the last progress: the threshold passed without it"
    );
}

/// Open proposals at the moment GAMMA (CONFLICT) was spawned, replayed from the event order.
async fn open_proposals_at_conflict(conflict: Option<usize>) -> usize {
    let mut gamma = GammaThresholds::default();
    if let Some(c) = conflict {
        gamma.conflict = c;
    }
    let mut cfg = fast_config();
    cfg.gamma = gamma;
    cfg.max_proposals_per_agent = 12;
    let h = harness(cfg, {
        let mut llm = LocalLlmConfig::default();
        llm.disagree_first = 100;
        llm
    });
    let (rec, seen) = run_timed(&h, "Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let mut open = HashSet::new();
    let mut at_gamma = Vec::new();
    for (_, e) in &seen {
        match &e.kind {
            EventKind::ProposalCreated { proposal_id, .. } => {
                open.insert(proposal_id.clone());
            }
            EventKind::VoteCast {
                proposal_id,
                approvals,
                rejections,
                quorum,
                ..
            } if approvals >= quorum || rejections >= quorum => {
                open.remove(proposal_id);
            }
            EventKind::GammaSpawned { reason, .. } => at_gamma.push((*reason, open.len())),
            _ => {}
        }
    }
    assert_eq!(at_gamma.len(), 1, "one GAMMA: {at_gamma:?}");
    let (reason, n) = at_gamma[0];
    assert_eq!(reason, GammaReason::Conflict);
    n
}

#[tokio::test(start_paused = true)]
async fn gamma_conflict_spawns_when_the_open_proposals_reach_exactly_three() {
    // the seed's threshold
    assert_eq!(open_proposals_at_conflict(None).await, 3);
}

#[tokio::test(start_paused = true)]
async fn gamma_conflict_follows_the_configured_threshold() {
    assert_eq!(open_proposals_at_conflict(Some(4)).await, 4);
}

/// BETA's procedure violations and its revocation, in ledger order.
async fn beta_violations_then_revocation(limits: Option<ErrorBudgetLimits>) -> Vec<&'static str> {
    let mut cfg = fast_config();
    if let Some(l) = limits {
        cfg.error_budget = l;
    }
    let h = harness(
        cfg,
        faults(vec![Fault::new(
            Some("BETA"),
            Some(Purpose::Evaluate),
            FaultKind::WrongProposal,
            u32::MAX,
        )]),
    );
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error {
                agent_id: Some(a),
                kind,
                ..
            } if a.as_str() == "BETA" => Some(if kind == "procedure_violation" {
                "violation"
            } else {
                "other error"
            }),
            EventKind::AgentRevoked {
                agent_id, reason, ..
            } if agent_id.as_str() == "BETA" => {
                assert!(reason.contains("procedure"), "{reason}");
                Some("revoked")
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_first_procedure_violation_is_tolerated_and_the_second_revokes() {
    // the seed's budget: one violation tolerated
    assert_eq!(
        beta_violations_then_revocation(None).await,
        vec!["violation", "violation", "revoked"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_procedure_violation_budget_follows_the_configuration() {
    let mut limits = ErrorBudgetLimits::default();
    limits.max_procedure_violations = 2;
    assert_eq!(
        beta_violations_then_revocation(Some(limits)).await,
        vec!["violation", "violation", "violation", "revoked"]
    );
}
