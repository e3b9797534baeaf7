//! The [`LedgerStore`] conformance suite.

use std::sync::Arc;

use crate::error::ErrorKind;
use crate::event::{Event, EventKind, GammaReason};
use crate::ids::{PipelineId, ProposalId};
use crate::state_machine::PipelineStatus;
use crate::store::LedgerStore;

use super::{agent, fresh, join_all, now_ms};

type Ledger = Arc<dyn LedgerStore>;

/// Runs every check of the [`LedgerStore`] contract against `l`; panics naming the failed check.
///
/// Checks: an unknown pipeline has `last_seq` 0 and no events; events of several kinds
/// round-trip intact, in `seq` order, with `after`/`limit` paging; an identical duplicate (one
/// event, a whole batch, or a batch overlapping the end of the log) is a no-op; a differing
/// duplicate or a gap is `Conflict` and nothing of the batch is stored, even across pipelines;
/// 16 concurrent appenders on different pipelines; 8 appenders racing for the same `seq`
/// (exactly one wins).
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn ledger_suite(l: Arc<dyn LedgerStore>) {
    l.ping().await.expect("[ledger::ping] ping failed");
    append_and_read(&l).await;
    duplicates_and_gaps(&l).await;
    batches_are_atomic_across_pipelines(&l).await;
    concurrent_pipelines(&l).await;
    racing_for_one_seq(&l).await;
}

/// An `agent_message` event carrying `text`.
fn ev(p: &PipelineId, seq: u64, text: &str) -> Event {
    Event {
        seq,
        ts: now_ms(),
        kind: EventKind::AgentMessage {
            pipeline_id: p.clone(),
            from: agent("ALPHA"),
            to: "*".into(),
            content: text.into(),
        },
    }
}

/// Events of several kinds, `seq` 1..=4.
fn mixed(p: &PipelineId) -> Vec<Event> {
    let kinds = [
        EventKind::StatusChanged {
            pipeline_id: p.clone(),
            status: PipelineStatus::Running,
            previous: Some(PipelineStatus::Spawned),
            reason: None,
        },
        EventKind::LlmCall {
            pipeline_id: p.clone(),
            agent_id: agent("BETA"),
            model: "local/scripted".into(),
            prompt_tokens: 120,
            completion_tokens: 48,
            cost_usd: Some(0.000_125),
            latency_ms: 37,
            error: None,
            response_format: Some(crate::ResponseFormatKind::JsonObject),
            format_fallback_from: Some(crate::ResponseFormatKind::JsonSchema),
        },
        EventKind::GammaSpawned {
            pipeline_id: p.clone(),
            reason: GammaReason::Conflict,
            agent_id: agent("GAMMA"),
        },
        EventKind::ConsensusReached {
            pipeline_id: p.clone(),
            proposal_id: ProposalId::new("p-1").expect("testkit: proposal id literal"),
            votes: 2,
        },
    ];
    kinds
        .into_iter()
        .zip(1..)
        .map(|(kind, seq)| Event {
            seq,
            ts: now_ms(),
            kind,
        })
        .collect()
}

async fn append(l: &Ledger, events: &[Event], check: &str) {
    l.append(events).await.unwrap_or_else(|e| {
        panic!(
            "[ledger::{check}] append of {} events failed: {e}",
            events.len()
        )
    });
}

async fn conflict(l: &Ledger, events: &[Event], check: &str, why: &str) {
    match l.append(events).await {
        Ok(()) => panic!("[ledger::{check}] {why}: append must fail with Conflict but succeeded"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Conflict,
            "[ledger::{check}] {why}: {e}"
        ),
    }
}

async fn read(l: &Ledger, p: &PipelineId, after: u64, limit: usize, check: &str) -> Vec<Event> {
    l.read(p, after, limit).await.unwrap_or_else(|e| {
        panic!("[ledger::{check}] read(after {after}, limit {limit}) failed: {e}")
    })
}

async fn last(l: &Ledger, p: &PipelineId, check: &str) -> u64 {
    l.last_seq(p)
        .await
        .unwrap_or_else(|e| panic!("[ledger::{check}] last_seq failed: {e}"))
}

async fn append_and_read(l: &Ledger) {
    const C: &str = "[ledger::append_and_read]";
    let ck = "append_and_read";
    let p = fresh();
    assert_eq!(
        last(l, &p, ck).await,
        0,
        "{C} last_seq of an unknown pipeline"
    );
    assert!(
        read(l, &p, 0, 10, ck).await.is_empty(),
        "{C} read of an unknown pipeline"
    );
    append(l, &[], ck).await;
    let events = mixed(&p);
    append(l, &events[..1], ck).await;
    append(l, &events[1..], ck).await;
    assert_eq!(last(l, &p, ck).await, 4, "{C} last_seq after 4 events");
    assert_eq!(
        read(l, &p, 0, 10, ck).await,
        events,
        "{C} events must round-trip intact and in order"
    );
    assert_eq!(
        read(l, &p, 1, 2, ck).await,
        events[1..3],
        "{C} read(after 1, limit 2)"
    );
    assert!(
        read(l, &p, 4, 10, ck).await.is_empty(),
        "{C} read after the last seq"
    );
}

async fn duplicates_and_gaps(l: &Ledger) {
    const C: &str = "[ledger::duplicates_and_gaps]";
    let ck = "duplicates_and_gaps";
    let p = fresh();
    let events: Vec<Event> = (1..=3).map(|s| ev(&p, s, &format!("e{s}"))).collect();
    append(l, &events, ck).await;

    append(l, &events[1..2], ck).await;
    append(l, &events, ck).await;
    assert_eq!(
        read(l, &p, 0, 10, ck).await,
        events,
        "{C} identical duplicates must be no-ops"
    );

    let e4 = ev(&p, 4, "e4");
    append(l, &[events[2].clone(), e4.clone()], ck).await;
    assert_eq!(
        last(l, &p, ck).await,
        4,
        "{C} a batch overlapping the end of the log appends the new part"
    );

    let mut changed = events[2].clone();
    if let EventKind::AgentMessage { content, .. } = &mut changed.kind {
        *content = "rewritten".into();
    }
    conflict(l, &[changed.clone()], ck, "a differing duplicate").await;
    let e5 = ev(&p, 5, "e5");
    conflict(
        l,
        &[e5.clone(), changed],
        ck,
        "a batch with a differing duplicate",
    )
    .await;
    assert_eq!(
        last(l, &p, ck).await,
        4,
        "{C} nothing of a conflicting batch may be stored"
    );

    conflict(l, &[ev(&p, 6, "e6")], ck, "a gap").await;
    conflict(l, &[e5.clone(), ev(&p, 7, "e7")], ck, "a batch with a gap").await;
    assert_eq!(
        last(l, &p, ck).await,
        4,
        "{C} nothing of a gapped batch may be stored"
    );

    let mut all = events;
    all.extend([e4, e5.clone()]);
    append(l, &[e5], ck).await;
    assert_eq!(
        read(l, &p, 0, 10, ck).await,
        all,
        "{C} the log after the rejected batches"
    );
}

async fn batches_are_atomic_across_pipelines(l: &Ledger) {
    const C: &str = "[ledger::batches_are_atomic_across_pipelines]";
    let ck = "batches_are_atomic_across_pipelines";
    let (p, q) = (fresh(), fresh());
    append(l, &[ev(&p, 1, "p1")], ck).await;
    conflict(
        l,
        &[ev(&q, 1, "q1"), ev(&p, 2, "p2"), ev(&q, 3, "q3")],
        ck,
        "a gap in one pipeline of a mixed batch",
    )
    .await;
    assert_eq!(
        (last(l, &p, ck).await, last(l, &q, ck).await),
        (1, 0),
        "{C} nothing of the failed batch may be stored in any pipeline"
    );

    let batch = [ev(&q, 1, "q1"), ev(&p, 2, "p2"), ev(&q, 2, "q2")];
    append(l, &batch, ck).await;
    assert_eq!(
        (last(l, &p, ck).await, last(l, &q, ck).await),
        (2, 2),
        "{C} a valid mixed batch"
    );
    assert_eq!(
        read(l, &q, 0, 10, ck).await,
        [batch[0].clone(), batch[2].clone()],
        "{C} q's events"
    );
}

async fn concurrent_pipelines(l: &Ledger) {
    const C: &str = "[ledger::concurrent_pipelines]";
    let handles = (0..16)
        .map(|_| {
            let l = Arc::clone(l);
            tokio::spawn(async move {
                let p = fresh();
                let mut written = Vec::with_capacity(20);
                for seq in 1..=20 {
                    let e = ev(&p, seq, &format!("{p}-{seq}"));
                    append(&l, std::slice::from_ref(&e), "concurrent_pipelines").await;
                    written.push(e);
                }
                (p, written)
            })
        })
        .collect();
    for (p, written) in join_all(handles, C).await {
        assert_eq!(
            last(l, &p, "concurrent_pipelines").await,
            20,
            "{C} last_seq of {p}"
        );
        assert_eq!(
            read(l, &p, 0, 100, "concurrent_pipelines").await,
            written,
            "{C} events of {p}"
        );
    }
}

async fn racing_for_one_seq(l: &Ledger) {
    const C: &str = "[ledger::racing_for_one_seq]";
    let p = fresh();
    append(l, &[ev(&p, 1, "base")], "racing_for_one_seq").await;
    let handles = (0..8)
        .map(|i| {
            let (l, e) = (Arc::clone(l), ev(&p, 2, &format!("racer {i}")));
            tokio::spawn(async move { l.append(std::slice::from_ref(&e)).await.map(|()| e) })
        })
        .collect();
    let results = join_all(handles, C).await;
    let winners: Vec<Event> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{C} exactly one of 8 different events for the same seq may be stored"
    );
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "{C} losers get Conflict: {e}"
            );
        }
    }
    let stored = read(l, &p, 1, 10, "racing_for_one_seq").await;
    assert_eq!(stored, winners, "{C} the stored event is the winner's");
}
