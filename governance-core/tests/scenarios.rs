//! One scenario per path of the seed, on the local LLM and in-memory backends.
//! Thresholds are never waited for in real time: tests run on tokio's paused clock.

mod common;

use std::time::Duration;

use common::*;
use governance_core::{Config, EventKind, GammaReason, LocalLlmConfig, PipelineStatus as S};

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
    assert_eq!(results["partial"], false);
    assert!(results["solution"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(rec.usage.calls >= 4);
    assert!(
        rec.agents
            .iter()
            .any(|a| a.role == "ALPHA" && a.tokens_used > 0)
    );
}
