//! A provider that is down ends the pipeline promptly as FAILED with the cause, in the report
//! stage and in orchestration: after the breaker opened and its half-open trials failed, not
//! after `ORCHESTRATION_TIMEOUT`. Out of credits (402) ends it at once. Paused tokio clock:
//! the cool-downs are virtual, so "promptly" is measured on that clock.

mod common;

use std::time::Duration;

use common::*;
use governance_core::{
    Config, Event, EventKind, Fault, FaultKind, PipelineStatus as S, Purpose, SpawnRequest,
};

const TIMEOUT: Duration = Duration::from_secs(3600);

fn config() -> Config {
    let mut conf = fast_config();
    conf.orchestration_timeout = TIMEOUT;
    conf
}

fn every_call_fails(status: u16) -> Vec<Fault> {
    vec![Fault::new(None, None, FaultKind::Status(status), u32::MAX)]
}

fn agents_fail(status: u16) -> Vec<Fault> {
    ["ALPHA", "BETA", "GAMMA"]
        .into_iter()
        .map(|a| Fault::new(Some(a), None, FaultKind::Status(status), u32::MAX))
        .collect()
}

fn failed_calls(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::LlmCall { error: Some(_), .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_provider_answering_500_ends_the_report_stage_failed_within_the_trials() {
    let cfg = config();
    let bound = cfg.breaker.cooldown * (cfg.breaker_trials + 1);
    let h = harness(cfg, faults(every_call_fails(500)));
    let started = tokio::time::Instant::now();
    let (rec, events) = h.run("Design a caching strategy").await;
    let took = started.elapsed(); // virtual time

    assert_eq!(rec.status, S::Failed, "{:?}", rec.failure);
    assert_eq!(statuses(&events), vec![S::Spawned, S::Running, S::Failed]);
    let failure = rec.failure.clone().unwrap_or_default();
    assert!(
        failure.contains("HTTP 500")
            && failure.contains("circuit breaker is open")
            && failure.contains("2 half-open trials failed"),
        "{failure}"
    );
    assert!(failure.contains("7 calls in a row failed"), "{failure}");
    assert_eq!(
        h.llm.calls(),
        5 + 2,
        "five calls opened the breaker, two half-open trials, then nothing more"
    );
    assert_eq!(failed_calls(&events), 7);
    assert!(
        took <= bound,
        "ended after {took:?} of the paused clock, past the cool-down × (trials + 1) = {bound:?}"
    );
    let reporter = rec
        .agents
        .iter()
        .find(|a| a.agent_id == "REPORTER")
        .unwrap();
    assert!(
        reporter.reason.as_deref() == Some(failure.as_str()),
        "{reporter:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_provider_going_down_during_orchestration_ends_it_failed_with_the_cause() {
    let cfg = config();
    let bound = cfg.breaker.cooldown * (cfg.breaker_trials + 1);
    let h = harness(cfg, faults(agents_fail(503)));
    let mut rx = h.gov.subscribe();
    let id = h
        .gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    // the report was written; orchestration starts now
    while !matches!(
        rx.recv().await.unwrap().kind,
        EventKind::StatusChanged {
            status: S::Orchestrating,
            ..
        }
    ) {}
    let started = tokio::time::Instant::now();
    let (rec, events) = h.finish(&id).await;
    let took = started.elapsed();

    assert_eq!(rec.status, S::Failed, "{:?}", rec.failure);
    assert_eq!(
        statuses(&events),
        vec![
            S::Spawned,
            S::Running,
            S::Report,
            S::Orchestrating,
            S::Failed
        ]
    );
    let failure = rec.failure.clone().unwrap_or_default();
    assert!(
        failure.contains("HTTP 503") && failure.contains("circuit breaker is open"),
        "{failure}"
    );
    assert_eq!(
        failed_calls(&events),
        7,
        "one breaker per pipeline: 5 failures open it, 2 trials, whichever agent made them"
    );
    assert_eq!(count(&events, "agent_revoked"), 0, "nobody was blamed");
    assert!(took <= bound, "{took:?} > {bound:?}");
    assert!(rec.results.as_ref().unwrap().partial);
}

#[tokio::test(start_paused = true)]
async fn with_zero_trials_the_pipeline_gives_up_when_the_breaker_opens() {
    let cfg = {
        let mut conf = config();
        conf.breaker_trials = 0;
        conf
    };
    let h = harness(cfg, faults(every_call_fails(502)));
    let (rec, _) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Failed);
    assert_eq!(h.llm.calls(), 5);
    let failure = rec.failure.unwrap_or_default();
    assert!(
        failure.contains("5 calls in a row") && failure.ends_with("the circuit breaker is open"),
        "{failure}"
    );
}

#[tokio::test(start_paused = true)]
async fn out_of_credits_ends_the_pipeline_at_the_first_402_and_says_so() {
    let h = harness(config(), faults(every_call_fails(402)));
    let (rec, events) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Failed);
    let failure = rec.failure.unwrap_or_default();
    assert!(
        failure.contains("out of credits") && failure.contains("402"),
        "{failure}"
    );
    assert!(!failure.contains("repeated"), "{failure}");
    assert_eq!(h.llm.calls(), 1, "a 402 is neither retried nor re-asked");
    assert_eq!(count(&events, "agent_revoked"), 0);

    // during orchestration: the first agent that hits it ends the pipeline
    let h = harness(
        config(),
        faults(vec![Fault::new(
            Some("ALPHA"),
            Some(Purpose::Propose),
            FaultKind::Status(402),
            u32::MAX,
        )]),
    );
    let (rec, _) = h.run("Design a caching strategy").await;
    assert_eq!(rec.status, S::Failed);
    assert!(
        rec.failure
            .as_deref()
            .is_some_and(|f| f.contains("out of credits")),
        "{:?}",
        rec.failure
    );
}
