//! Many pipelines at once in one process.

mod common;

use std::sync::Arc;

use common::*;
use governance_core::{Governance, LocalLlm, LocalLlmConfig, PipelineStatus, SpawnRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_pipelines_run_concurrently_to_a_terminal_status_with_gap_free_events() {
    let h = harness(fast_config(), LocalLlmConfig::default());
    let ids = futures::future::join_all((0..1000).map(|i| {
        let gov = h.gov.clone();
        async move {
            gov.spawn(SpawnRequest::new(format!("Design a caching strategy #{i}")))
                .await
                .expect("spawn")
        }
    }))
    .await;
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 1000);
    for id in &ids {
        let (rec, events) = h.finish(id).await;
        assert_eq!(
            rec.status,
            PipelineStatus::Completed,
            "{id}: {:?}",
            rec.failure
        );
        assert_eq!(count(&events, "consensus_reached"), 1, "{id}");
        assert!(events.iter().all(|e| e.pipeline_id() == id));
    }
    assert_eq!(h.gov.live_count(), 0, "finished pipelines are released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_pipelines_in_parallel_each_decide_exactly_once() {
    // BETA disagrees, GAMMA arbitrates, and GAMMA, BETA and ALPHA all race on the blackboard
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.disagree_first = 2;
        conf
    });
    let gov = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(llm))
        .build()
        .unwrap();
    let ids = futures::future::join_all((0..200).map(|i| {
        let gov = gov.clone();
        async move {
            gov.spawn(SpawnRequest::new(format!("Plan a migration #{i}")))
                .await
                .unwrap()
        }
    }))
    .await;
    for id in ids {
        let rec = gov.wait(&id).await.unwrap();
        let events = gov.events(&id, 0, 10_000).await.unwrap();
        assert_gap_free(&events);
        assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
        assert_eq!(count(&events, "consensus_reached"), 1);
        let board = gov.blackboard_snapshot(&id).await.unwrap();
        let accepted = board
            .proposals
            .iter()
            .filter(|p| p.status == governance_core::ProposalStatus::Accepted)
            .count();
        assert_eq!(accepted, 1, "exactly one proposal won");
        for p in &board.proposals {
            let mut voters: Vec<_> = p.votes.iter().map(|v| v.voter.clone()).collect();
            voters.sort();
            voters.dedup();
            assert_eq!(
                voters.len(),
                p.votes.len(),
                "no voter counted twice on {}",
                p.id
            );
        }
    }
}
