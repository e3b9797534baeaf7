//! Whole pipelines (the `Governance` engine on the Redis blackboard and bus) through a Redis
//! restart: every pipeline ends in a terminal status with a reason, its events are gap-free, it
//! decides at most once, and no acknowledged blackboard write is lost. A restart that lost the
//! data (no persistence, or an older snapshot) is noticed and the live pipelines' blackboards
//! and buses are rebuilt from the store (`coordination_rebuilt` in their ledgers).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    Config, Event, EventKind, Governance, LocalLlm, LocalLlmConfig, MemoryStore, PipelineId,
    PipelineStatus, SpawnRequest,
};
use tokio::sync::broadcast::error::RecvError;

/// Pipelines per run.
const PIPELINES: usize = 50;
/// `vote_cast` events seen (over all pipelines) before the server goes down.
const VOTES_BEFORE_RESTART: usize = 40;

/// How the server goes down.
#[derive(Debug, Clone, Copy)]
enum Restart {
    /// `SHUTDOWN SAVE`: an RDB snapshot is written, then the process exits.
    SaveAndShutdown,
    /// SIGKILL with `--appendonly yes --appendfsync always`: every acknowledged write is in the
    /// AOF before the reply is sent.
    KillWithAof,
    /// SIGKILL without persistence: the server comes back empty.
    KillEmpty,
    /// `SAVE` early (after a few votes), SIGKILL later: the server comes back from that older
    /// snapshot, missing what was written after it.
    KillToOlderSnapshot,
}

async fn engine(server: &RedisServer) -> Governance {
    let b = backend(server).await;
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(30);
        conf
    });
    Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(50);
            conf
        })
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()))
        .llm("local", Arc::new(llm))
        .build()
        .expect("engine builds")
}

/// Waits until `n` `vote_cast` events were emitted, or every pipeline ended.
async fn wait_for_votes(
    gov: &Governance,
    ids: &[PipelineId],
    mut events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    n: usize,
) {
    let mut votes = 0;
    while votes < n {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Ok(e)) => {
                if matches!(e.kind, EventKind::VoteCast { .. }) {
                    votes += 1;
                }
            }
            Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) | Err(_) => break,
        }
    }
    let mut terminal = 0;
    for id in ids {
        if gov.get(id).await.expect("record").status.is_terminal() {
            terminal += 1;
        }
    }
    assert!(
        terminal < ids.len(),
        "every pipeline ended before the restart: the test would prove nothing \
         (raise the LLM latency or lower VOTES_BEFORE_RESTART)"
    );
}

/// Checks one finished pipeline; returns its status and, when not COMPLETED, its reason.
async fn check_pipeline(gov: &Governance, id: &PipelineId) -> (PipelineStatus, Option<String>) {
    let Ok(rec) = tokio::time::timeout(Duration::from_secs(240), gov.wait(id)).await else {
        let rec = gov.get(id).await.expect("record");
        let events = gov.events(id, 0, 1_000_000).await.expect("events");
        let tail: Vec<_> = events
            .iter()
            .rev()
            .take(8)
            .map(|e| format!("{:?}", e.kind))
            .collect();
        panic!(
            "{id} never ended: {:?}, agents {:?}\nlast events: {tail:#?}",
            rec.status, rec.agents
        );
    };
    let rec = rec.expect("wait");
    assert!(rec.status.is_terminal(), "{id}: {:?}", rec.status);
    let events = gov.events(id, 0, 1_000_000).await.expect("events");
    if rec.status != PipelineStatus::Completed {
        let errors: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Error {
                    agent_id, message, ..
                } => Some(format!("{agent_id:?}: {message}")),
                _ => None,
            })
            .collect();
        let agents: Vec<String> = rec.agents.iter().map(|a| format!("{a:?}")).collect();
        println!(
            "{id} {:?}\n  agents: {agents:#?}\n  errors: {errors:#?}",
            rec.status
        );
        assert!(
            rec.failure.as_deref().is_some_and(|r| !r.is_empty()),
            "{id} ended {:?} without a reason",
            rec.status
        );
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{id}: event seq gap at index {i}");
    }
    let consensus: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConsensusReached { proposal_id, .. } => Some(proposal_id.clone()),
            _ => None,
        })
        .collect();
    assert!(consensus.len() <= 1, "{id}: decided twice: {consensus:?}");

    let snapshot = gov.blackboard_snapshot(id).await.expect("snapshot");
    if let Some(p) = consensus.first() {
        let stored = snapshot.consensus.as_ref().map(|c| &c.proposal_id);
        assert_eq!(
            stored,
            Some(p),
            "{id}: the announced consensus is on the blackboard"
        );
    }
    let proposals: BTreeMap<_, _> = snapshot.proposals.iter().map(|p| (&p.id, p)).collect();
    for e in &events {
        match &e.kind {
            EventKind::ProposalCreated { proposal_id, .. } => assert!(
                proposals.contains_key(proposal_id),
                "{id}: acknowledged proposal {proposal_id} lost"
            ),
            EventKind::VoteCast {
                proposal_id,
                voter,
                approve,
                ..
            } => {
                let p = proposals
                    .get(proposal_id)
                    .unwrap_or_else(|| panic!("{id}: proposal {proposal_id} of a vote lost"));
                assert!(
                    p.votes
                        .iter()
                        .any(|v| &v.voter == voter && v.approve == *approve),
                    "{id}: acknowledged vote of {voter} on {proposal_id} lost: {:?}",
                    p.votes
                );
            }
            _ => {}
        }
    }
    (rec.status, rec.failure)
}

async fn pipelines_through_a_restart(how: Restart) {
    let extra: &[&str] = match how {
        Restart::SaveAndShutdown | Restart::KillEmpty | Restart::KillToOlderSnapshot => &[],
        Restart::KillWithAof => &["--appendonly", "yes", "--appendfsync", "always"],
    };
    let mut server = RedisServer::start_with(extra);
    let gov = engine(&server).await;
    let events = gov.subscribe();
    let mut ids = Vec::new();
    for i in 0..PIPELINES {
        let req = SpawnRequest::new(format!("Design a rollout plan for service {i}"));
        ids.push(gov.spawn(req).await.expect("spawn"));
    }
    if matches!(how, Restart::KillToOlderSnapshot) {
        let ev = gov.subscribe();
        wait_for_votes(&gov, &ids, ev, VOTES_BEFORE_RESTART / 4).await;
        assert_eq!(server.raw(&["SAVE"]).expect("SAVE"), "+OK");
    }
    wait_for_votes(&gov, &ids, events, VOTES_BEFORE_RESTART).await;
    match how {
        Restart::SaveAndShutdown => server.stop_saving(),
        Restart::KillWithAof | Restart::KillEmpty | Restart::KillToOlderSnapshot => server.kill(),
    }
    // Down long enough for agents to hit the outage (not a timing assertion).
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again();

    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons = Vec::new();
    let mut rebuilt = 0;
    for id in &ids {
        let (status, reason) = check_pipeline(&gov, id).await;
        let events = gov.events(id, 0, 1_000_000).await.expect("events");
        if events
            .iter()
            .any(|e| matches!(e.kind, EventKind::CoordinationRebuilt { .. }))
        {
            rebuilt += 1;
        }
        *by_status.entry(format!("{status:?}")).or_default() += 1;
        if let Some(r) = reason {
            reasons.push(format!("{id} {status:?}: {r}"));
        }
    }
    println!("{how:?}: {by_status:?}, {rebuilt} rebuilt");
    if matches!(how, Restart::KillEmpty | Restart::KillToOlderSnapshot) {
        assert!(
            rebuilt > 0,
            "{how:?}: the server lost data under live pipelines, yet no ledger shows a rebuild"
        );
    }
    for r in &reasons {
        println!("  {r}");
    }
    assert_eq!(
        by_status.get("Completed").copied().unwrap_or(0),
        PIPELINES,
        "{how:?}: not every pipeline completed: {by_status:?}\n{}",
        reasons.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_pipelines_complete_through_a_shutdown_save_restart() {
    pipelines_through_a_restart(Restart::SaveAndShutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_pipelines_complete_through_a_sigkill_with_aof_always() {
    pipelines_through_a_restart(Restart::KillWithAof).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_pipelines_complete_through_a_restart_that_lost_everything() {
    pipelines_through_a_restart(Restart::KillEmpty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_pipelines_complete_through_a_restart_from_an_older_snapshot() {
    pipelines_through_a_restart(Restart::KillToOlderSnapshot).await;
}
