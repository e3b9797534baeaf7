//! One scenario per path of the seed, on the local LLM and in-memory backends.
//! Thresholds are never waited for in real time: tests run on tokio's paused clock.

mod common;

use std::time::Duration;

use common::*;
use governance_core::{
    AgentId, AgentState, ContinueRequest, ErrorKind, EventKind, Fault, FaultKind, GammaReason,
    LocalLlmConfig, PipelineStatus as S, Purpose, SpawnRequest,
};

#[tokio::test(start_paused = true)]
async fn pipeline_reaches_consensus_and_completes() {
    let h = harness(fast_config(), LocalLlmConfig::default());
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{rec:#?}");
    assert_eq!(
        statuses(&events),
        vec![
            S::Spawned,
            S::Running,
            S::Report,
            S::Orchestrating,
            S::Completed
        ]
    );
    assert_eq!(count(&events, "consensus_reached"), 1);
    assert_eq!(count(&events, "gamma_spawned"), 0);
    assert!(
        count(&events, "agent_message") >= 2,
        "agents talk over the bus"
    );
    let results = rec.results.expect("results");
    assert!(!results.partial);
    assert!(
        !results.degraded,
        "ALPHA and BETA both voted: not a lone agent's decision"
    );
    assert_eq!(results.consensus.as_ref().map(|c| c.votes), Some(2));
    assert!(results.solution.as_ref().is_some_and(|s| !s.is_empty()));
    assert!(rec.usage.calls >= 4);
    assert!(
        rec.agents
            .iter()
            .any(|a| a.role == "ALPHA" && a.tokens_used > 0)
    );
}

fn beta_stalls() -> Fault {
    Fault::new(
        Some("BETA"),
        Some(Purpose::Evaluate),
        FaultKind::Stall,
        u32::MAX,
    )
}

#[tokio::test(start_paused = true)]
async fn complexity_above_threshold_spawns_gamma_for_decomposition() {
    let h = harness(fast_config(), LocalLlmConfig::default());
    let objective = "Design a distributed, multi-region, real-time, fault-tolerant, sharded cache";
    assert!(governance_core::complexity_of(objective) > 0.8);
    let (rec, events) = h.run(objective).await;
    assert_eq!(rec.status, S::Completed);
    let reasons: Vec<GammaReason> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GammaSpawned { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![GammaReason::Complexity]);
    assert_eq!(
        rec.gamma.expect("gamma recorded").reason,
        GammaReason::Complexity
    );
    assert!(rec.results.expect("results").partials["GAMMA/decomposition"]["subtasks"].is_array());
    assert_eq!(
        count(&events, "consensus_reached"),
        1,
        "GAMMA and BETA race to approve; one consensus"
    );
}

#[tokio::test(start_paused = true)]
async fn simple_objective_does_not_spawn_gamma_at_exactly_the_threshold() {
    let cfg = {
        let mut conf = fast_config();
        conf.gamma.complexity = 0.9;
        conf
    };
    let h = harness(cfg, LocalLlmConfig::default());
    // five keywords score exactly 0.9: not *above* the threshold
    let (rec, events) = h
        .run("Design a distributed, multi-region, real-time, fault-tolerant, sharded cache")
        .await;
    assert_eq!(rec.status, S::Completed);
    assert_eq!(count(&events, "gamma_spawned"), 0);
}

#[tokio::test(start_paused = true)]
async fn conflicting_proposals_spawn_gamma_to_arbitrate() {
    let h = harness(fast_config(), {
        let mut conf = LocalLlmConfig::default();
        conf.disagree_first = 100;
        conf
    });
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let gamma: Vec<GammaReason> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GammaSpawned { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(gamma, vec![GammaReason::Conflict]);
    assert!(count(&events, "proposal_created") >= 3);
    // the consensus was decided by GAMMA's vote
    let consensus_voter = events
        .windows(2)
        .find_map(|w| match (&w[0].kind, &w[1].kind) {
            (EventKind::VoteCast { voter, .. }, EventKind::ConsensusReached { .. }) => {
                Some(voter.to_string())
            }
            _ => None,
        });
    assert_eq!(consensus_voter.as_deref(), Some("GAMMA"));
}

#[tokio::test(start_paused = true)]
async fn no_progress_for_the_stuck_threshold_spawns_gamma() {
    let h = harness(fast_config(), faults(vec![beta_stalls()]));
    let (rec, _events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    assert_eq!(rec.gamma.expect("gamma").reason, GammaReason::Stuck);
    // when GAMMA comes (exactly at the threshold) is pinned in rule_pins.rs
    // BETA never answered; GAMMA approved and built the solution
    let beta = rec
        .agents
        .iter()
        .find(|a| a.agent_id == "BETA")
        .expect("beta");
    assert_eq!(beta.tokens_used, 0, "BETA's call never returned");
    let results = rec.results.expect("results");
    let voters = &results.consensus.as_ref().expect("consensus").voters;
    assert!(voters.iter().any(|v| v.as_str() == "GAMMA"), "{voters:?}");
}

#[tokio::test(start_paused = true)]
async fn revoked_agent_hands_off_and_the_partner_finishes() {
    // ALPHA's answers are unparseable prose: the third identical error revokes it
    let h = harness(
        fast_config(),
        faults(vec![Fault::new(
            Some("ALPHA"),
            Some(Purpose::Propose),
            FaultKind::Malformed,
            u32::MAX,
        )]),
    );
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let alpha = rec
        .agents
        .iter()
        .find(|a| a.agent_id == "ALPHA")
        .expect("alpha");
    assert_eq!(alpha.state, AgentState::Revoked);
    assert!(
        alpha
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("max_same_error_repeats")),
        "{alpha:?}"
    );
    assert_eq!(
        count(&events, "error"),
        3,
        "three malformed answers counted"
    );
    assert_eq!(count(&events, "agent_revoked"), 1);
    assert_eq!(count(&events, "handoff_created"), 1);
    let results = rec.results.expect("results");
    assert_eq!(
        results.handoffs[0].claimed_by.as_ref().map(AgentId::as_str),
        Some("BETA")
    );
    assert!(results.degraded);
    assert_eq!(
        results.proposal.as_ref().map(|p| p.id.as_str()),
        Some("BETA-1"),
        "BETA took over ALPHA's proposal work"
    );
}

#[tokio::test(start_paused = true)]
async fn partner_continues_alone_after_a_procedure_violation_revokes_beta() {
    // BETA evaluates the wrong proposal twice: the 2nd violation revokes it
    let h = harness(
        fast_config(),
        faults(vec![Fault::new(
            Some("BETA"),
            Some(Purpose::Evaluate),
            FaultKind::WrongProposal,
            u32::MAX,
        )]),
    );
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let beta = rec
        .agents
        .iter()
        .find(|a| a.agent_id == "BETA")
        .expect("beta");
    assert_eq!(beta.state, AgentState::Revoked);
    assert!(
        beta.reason
            .as_deref()
            .is_some_and(|r| r.contains("procedure")),
        "{beta:?}"
    );
    let results = rec.results.expect("results");
    assert!(results.degraded);
    assert_eq!(
        results.handoffs[0].claimed_by.as_ref().map(AgentId::as_str),
        Some("ALPHA")
    );
    assert!(results.solution.is_some());
    assert_eq!(count(&events, "consensus_reached"), 1);
}

#[tokio::test(start_paused = true)]
async fn both_agents_failing_ends_failed_with_a_checkpoint_of_the_details() {
    let h = harness(
        fast_config(),
        faults(vec![Fault::new(
            None,
            Some(Purpose::Propose),
            FaultKind::Empty,
            u32::MAX,
        )]),
    );
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Failed);
    let failure = rec.failure.expect("failure reason");
    assert!(failure.contains("both ALPHA and BETA failed"), "{failure}");
    let cp = governance_core::CheckpointStore::latest(&*h.store, &rec.id)
        .await
        .unwrap()
        .expect("final checkpoint");
    assert!(cp.is_final);
    assert_eq!(cp.record.status, S::Failed);
    assert_eq!(cp.record.failure.as_deref(), Some(failure.as_str()));
    assert_eq!(count(&events, "agent_revoked"), 2);
    assert_eq!(*statuses(&events).last().unwrap(), S::Failed);
}

#[tokio::test(start_paused = true)]
async fn timeout_cancels_agents_and_keeps_partial_results() {
    let cfg = {
        let mut conf = fast_config();
        conf.orchestration_timeout = Duration::from_secs(5);
        conf.gamma.max_spawns = 0;
        conf
    };
    let h = harness(cfg, faults(vec![beta_stalls()]));
    let (rec, _events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Timeout);
    let results = rec.results.expect("partial results");
    assert!(results.partial);
    assert_eq!(
        results.proposals[0].id.as_str(),
        "ALPHA-1",
        "ALPHA's proposal survives as a partial result"
    );
    let summary = results
        .partial_report
        .as_ref()
        .map(|r| r.summary.as_str())
        .expect("partial report");
    assert!(summary.contains("1 proposals"), "{summary}");
    assert!(
        rec.agents
            .iter()
            .filter(|a| a.role != "REPORTER")
            .all(|a| a.state != AgentState::Running)
    );
}

#[tokio::test(start_paused = true)]
async fn emergency_stop_mid_run_ends_stopped_with_nothing_half_written() {
    let h = harness(fast_config(), faults(vec![beta_stalls()]));
    let mut rx = h.gov.subscribe();
    let id = h
        .gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    loop {
        let ev = rx.recv().await.unwrap();
        if ev.pipeline_id() == &id && ev.kind.type_name() == "vote_cast" {
            break;
        }
    }
    let status = h.gov.stop(&id).await.unwrap();
    assert_eq!(status, S::Stopped);
    let (rec, events) = h.finish(&id).await;
    assert_eq!(rec.status, S::Stopped);
    // every vote on the final blackboard is in the ledger, and vice versa
    let board = h.gov.blackboard_snapshot(&id).await.unwrap();
    let votes_on_board: usize = board.proposals.iter().map(|p| p.votes.len()).sum();
    assert_eq!(votes_on_board, count(&events, "vote_cast"));
    assert_eq!(board.proposals.len(), count(&events, "proposal_created"));
    // stopping again is harmless and reports the final status
    assert_eq!(h.gov.stop(&id).await.unwrap(), S::Stopped);
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_after_five_failures_and_recovers() {
    let h = harness(
        fast_config(),
        faults(vec![Fault::new(
            Some("ALPHA"),
            Some(Purpose::Propose),
            FaultKind::Status(503),
            5,
        )]),
    );
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let opened: Vec<_> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Error { kind, .. } if kind == "circuit_open"))
        .collect();
    assert_eq!(opened.len(), 1);
    let failed_calls = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::LlmCall { error: Some(_), .. }))
        .count();
    assert_eq!(
        failed_calls, 5,
        "five failed attempts reached the provider, none while open"
    );
    let alpha = rec.agents.iter().find(|a| a.agent_id == "ALPHA").unwrap();
    assert_eq!(
        alpha.errors, 1,
        "one failed call (3 attempts) counts once against the error budget"
    );
    assert!(
        matches!(alpha.state, AgentState::Done | AgentState::Cancelled),
        "{alpha:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn token_budget_refuses_a_call_before_it_is_sent() {
    let cfg = {
        let mut conf = fast_config();
        conf.budgets.max_tokens_per_agent = 500;
        conf
    };
    let h = harness(cfg, LocalLlmConfig::default());
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Failed);
    assert!(
        rec.failure
            .as_deref()
            .is_some_and(|f| f.contains("max_tokens_per_agent")),
        "{:?}",
        rec.failure
    );
    assert_eq!(h.llm.calls(), 0, "nothing was sent");
    assert_eq!(count(&events, "llm_call"), 0);
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_end_orchestration_error() {
    let h = harness(
        fast_config(),
        faults(vec![Fault::new(
            Some("ALPHA"),
            None,
            FaultKind::Unauthorized,
            u32::MAX,
        )]),
    );
    let (rec, _) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::OrchestrationError);
    assert!(
        rec.failure
            .as_deref()
            .is_some_and(|f| f.contains("refused the credentials"))
    );
}

#[tokio::test(start_paused = true)]
async fn without_auto_continue_the_pipeline_rests_at_report_until_continued() {
    let h = harness(
        {
            let mut conf = fast_config();
            conf.auto_orchestrate = false;
            conf
        },
        LocalLlmConfig::default(),
    );
    let id = h
        .gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = h.gov.wait_until_rest(&id).await.unwrap();
    assert_eq!(rec.status, S::Report);
    assert!(rec.report.is_some());
    h.gov
        .continue_pipeline(&id, ContinueRequest::default())
        .await
        .unwrap();
    let err = h
        .gov
        .continue_pipeline(&id, ContinueRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Conflict | ErrorKind::InvalidTransition
        ),
        "{err}"
    );
    let (rec, events) = h.finish(&id).await;
    assert_eq!(rec.status, S::Completed);
    assert_eq!(
        statuses(&events),
        vec![
            S::Spawned,
            S::Running,
            S::Report,
            S::Orchestrating,
            S::Completed
        ]
    );
    let err = h
        .gov
        .continue_pipeline(&id, ContinueRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTransition);
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_resting_at_report_can_be_stopped() {
    let h = harness(
        {
            let mut conf = fast_config();
            conf.auto_orchestrate = false;
            conf
        },
        LocalLlmConfig::default(),
    );
    let id = h
        .gov
        .spawn(SpawnRequest {
            auto_continue: Some(false),
            ..SpawnRequest::new("x objective")
        })
        .await
        .unwrap();
    h.gov.wait_until_rest(&id).await.unwrap();
    assert_eq!(h.gov.stop(&id).await.unwrap(), S::Stopped);
    let (rec, events) = h.finish(&id).await;
    assert_eq!(rec.status, S::Stopped);
    assert_eq!(count(&events, "orchestration_complete"), 0);
}

#[tokio::test]
async fn bad_requests_are_clear_errors() {
    let h = harness(fast_config(), LocalLlmConfig::default());
    for (req, needle) in [
        (SpawnRequest::new("   "), "empty"),
        (SpawnRequest::new("x".repeat(5000)), "longer than"),
        (
            SpawnRequest {
                mode: Some("openrouter".into()),
                ..SpawnRequest::new("x")
            },
            "not available",
        ),
        (
            SpawnRequest {
                timeout: Some(Duration::ZERO),
                ..SpawnRequest::new("x")
            },
            "timeout",
        ),
    ] {
        let e = h.gov.spawn(req).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains(needle), "{e}");
    }
    let unknown = governance_core::PipelineId::generate();
    assert_eq!(
        h.gov.get(&unknown).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        h.gov.stop(&unknown).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        h.gov
            .continue_pipeline(&unknown, ContinueRequest::default())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn streamed_answers_appear_as_agent_messages_as_they_arrive() {
    let h = harness(
        {
            let mut conf = fast_config();
            conf.stream_llm = true;
            conf
        },
        LocalLlmConfig::default(),
    );
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Completed);
    let streamed: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentMessage {
                from, to, content, ..
            } if to == governance_core::STREAM_RECIPIENT => {
                Some((from.to_string(), content.clone()))
            }
            _ => None,
        })
        .collect();
    let calls = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::LlmCall { error: None, .. }))
        .count();
    assert_eq!(
        streamed.len(),
        calls,
        "each answer is streamed (the local LLM sends it in one piece)"
    );
    let report = streamed
        .iter()
        .find(|(from, _)| from == "REPORTER")
        .expect("the report was streamed");
    assert!(report.1.contains("\"summary\""), "{}", report.1);
    // streaming off: no stream messages
    let h = harness(fast_config(), LocalLlmConfig::default());
    let (_, events) = h.run("Design a caching strategy").await;
    assert!(!events.iter().any(|e| matches!(&e.kind, EventKind::AgentMessage { to, .. } if to == governance_core::STREAM_RECIPIENT)));
}

/// Streams the local LLM's answers in 7-byte pieces.
#[derive(Debug)]
struct Trickle(governance_core::LocalLlm);

#[async_trait::async_trait]
impl governance_core::LlmClient for Trickle {
    fn name(&self) -> &str {
        "trickle"
    }
    fn default_model(&self) -> &str {
        "trickle/1"
    }
    async fn complete(
        &self,
        r: &governance_core::LlmRequest,
    ) -> governance_core::Result<governance_core::LlmResponse> {
        self.0.complete(r).await
    }
    async fn complete_streaming(
        &self,
        r: &governance_core::LlmRequest,
        on_delta: governance_core::DeltaSink<'_>,
    ) -> governance_core::Result<governance_core::LlmResponse> {
        let resp = self.0.complete(r).await?;
        for piece in resp.content.as_bytes().chunks(7) {
            on_delta(std::str::from_utf8(piece).unwrap_or(""));
            tokio::task::yield_now().await;
        }
        Ok(resp)
    }
}

#[tokio::test(start_paused = true)]
async fn a_trickling_stream_is_published_in_chunks_that_add_up_to_the_answer() {
    let gov = governance_core::Governance::builder()
        .config({
            let mut conf = fast_config();
            conf.stream_llm = true;
            conf
        })
        .llm(
            "local",
            std::sync::Arc::new(Trickle(governance_core::LocalLlm::default())),
        )
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, S::Completed);
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    let reporter: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentMessage {
                from, to, content, ..
            } if to == governance_core::STREAM_RECIPIENT && from.as_str() == "REPORTER" => {
                Some(content.clone())
            }
            _ => None,
        })
        .collect();
    assert!(!reporter.is_empty());
    assert!(
        reporter[..reporter.len() - 1]
            .iter()
            .all(|c| c.len() >= 256),
        "chunks, not one event per delta"
    );
    let whole: String = reporter.concat();
    let parsed: serde_json::Value =
        serde_json::from_str(&whole).expect("the chunks add up to the whole JSON answer");
    assert!(parsed["summary"].is_string());
}
