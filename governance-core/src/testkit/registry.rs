//! The [`PipelineRegistry`] conformance suite.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::event::GammaReason;
use crate::ids::PipelineId;
use crate::state_machine::PipelineStatus;
use crate::store::{
    AgentRecord, AgentState, GammaRecord, PipelineFilter, PipelineRecord, PipelineRegistry, Report,
    UsageTotals,
};

use super::{fresh, now_ms, truncate_ms};

type Registry = Arc<dyn PipelineRegistry>;

/// Runs every check of the [`PipelineRegistry`] contract against `r`; panics naming the failed
/// check.
///
/// Checks: `get` of an unknown id is `None`; a record round-trips intact and `upsert` replaces
/// it; `list` is newest first (by `created_at`, then id, both descending), filters by statuses and
/// by `created_after` (inclusive) / `created_before` (exclusive), pages with `limit`/`offset`,
/// and `limit: 0` means 100; `count_by_status` changes by exactly what was upserted.
///
/// The records are written in a random, narrow time window (decades away from now), so the
/// filtered checks see only this run's records. `count_by_status` is checked by exact
/// differences: do not write to the same registry from elsewhere while the suite runs.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn registry_suite(r: Arc<dyn PipelineRegistry>) {
    upsert_and_get(&r).await;
    list_filters_and_pages(&r).await;
    default_limit(&r).await;
    count_by_status(&r).await;
}

/// A fully populated record (used by the checkpoint suite too).
pub(crate) fn record(
    id: &PipelineId,
    created_at: DateTime<Utc>,
    status: PipelineStatus,
) -> PipelineRecord {
    PipelineRecord {
        id: id.clone(),
        objective: "Design a rate limiter — with ünïcode".into(),
        status,
        history: vec![(PipelineStatus::Spawned, created_at), (status, created_at)],
        auto_continue: true,
        mode: "local".into(),
        model: "local/scripted".into(),
        timeout_secs: 120,
        created_at,
        updated_at: created_at,
        orchestration_started_at: Some(created_at),
        report: Some(Report {
            summary: "summary".into(),
            findings: vec!["one".into(), "two".into()],
            complexity: 0.5,
            partial: false,
        }),
        agents: vec![AgentRecord {
            agent_id: "ALPHA".into(),
            role: "research".into(),
            state: AgentState::Running,
            tokens_used: 1234,
            cost_usd: 0.0125,
            errors: 1,
            reason: None,
            model: Some("vendor/beta-model".into()),
        }],
        gamma: Some(GammaRecord {
            reason: GammaReason::Stuck,
            spawned_at: created_at,
        }),
        usage: UsageTotals {
            calls: 3,
            prompt_tokens: 300,
            completion_tokens: 120,
            cost_usd: 0.25,
        },
        results: Some(crate::results::PipelineResults {
            consensus: None,
            degraded: true,
            handoffs: Vec::new(),
            partial: false,
            partial_report: None,
            partials: std::iter::once(("answer".to_owned(), serde_json::json!(42))).collect(),
            proposal: None,
            proposals: Vec::new(),
            solution: Some("cache at the edge".into()),
            solutions: 1,
        }),
        failure: None,
        last_seq: 17,
        require_approval: true,
        revisions: 1,
        roles: std::iter::once((
            "BETA".to_owned(),
            crate::RoleSettings {
                model: Some("vendor/beta-model".into()),
                fallback_models: Some(vec!["vendor/other".into()]),
                temperature: Some(0.7),
                max_tokens: Some(321),
                instructions: Some("Be strict.".into()),
                votes: Some(true),
                required: Some(true),
            },
        ))
        .collect(),
    }
}

/// A random whole-second instant between 30 and ~166 years from now.
fn random_window_start() -> DateTime<Utc> {
    let bits = uuid::Uuid::new_v4().as_u128();
    let secs = i64::from(u32::try_from(bits & u128::from(u32::MAX)).unwrap_or(0));
    let base = truncate_ms(Utc::now()) + TimeDelta::days(365 * 30);
    base + TimeDelta::seconds(secs)
}

async fn upsert(r: &Registry, rec: &PipelineRecord, check: &str) {
    r.upsert(rec)
        .await
        .unwrap_or_else(|e| panic!("[registry::{check}] upsert of {} failed: {e}", rec.id));
}

async fn list(r: &Registry, f: &PipelineFilter, check: &str) -> Vec<PipelineRecord> {
    r.list(f)
        .await
        .unwrap_or_else(|e| panic!("[registry::{check}] list({f:?}) failed: {e}"))
}

async fn counts(r: &Registry, check: &str) -> HashMap<PipelineStatus, u64> {
    let pairs = r
        .count_by_status()
        .await
        .unwrap_or_else(|e| panic!("[registry::{check}] count_by_status failed: {e}"));
    let mut map = HashMap::new();
    for (status, n) in pairs {
        assert!(
            map.insert(status, n).is_none(),
            "[registry::{check}] count_by_status lists {status} twice"
        );
    }
    map
}

async fn upsert_and_get(r: &Registry) {
    const C: &str = "[registry::upsert_and_get]";
    let ck = "upsert_and_get";
    let p = fresh();
    assert_eq!(
        r.get(&p)
            .await
            .expect("[registry::upsert_and_get] get unknown"),
        None,
        "{C} get of an unknown id"
    );
    let mut rec = record(&p, now_ms(), PipelineStatus::Spawned);
    upsert(r, &rec, ck).await;
    assert_eq!(
        r.get(&p)
            .await
            .expect("[registry::upsert_and_get] get")
            .as_ref(),
        Some(&rec),
        "{C} a record must round-trip intact"
    );
    rec.status = PipelineStatus::Completed;
    rec.history.push((PipelineStatus::Completed, now_ms()));
    rec.updated_at = now_ms();
    rec.failure = Some("none really".into());
    rec.gamma = None;
    upsert(r, &rec, ck).await;
    assert_eq!(
        r.get(&p)
            .await
            .expect("[registry::upsert_and_get] get")
            .as_ref(),
        Some(&rec),
        "{C} upsert must replace the record"
    );
}

fn ids(records: &[PipelineRecord]) -> Vec<PipelineId> {
    records.iter().map(|r| r.id.clone()).collect()
}

async fn list_filters_and_pages(r: &Registry) {
    const C: &str = "[registry::list]";
    let ck = "list";
    let start = random_window_start();
    let statuses = [
        PipelineStatus::Spawned,
        PipelineStatus::Completed,
        PipelineStatus::Failed,
    ];
    let mut records: Vec<PipelineRecord> = (0..6i64)
        .map(|i| {
            let status = statuses[usize::try_from(i).unwrap_or(0) % 3];
            record(&fresh(), start + TimeDelta::seconds(i), status)
        })
        .collect();
    // Two records created at the same instant: ordered by id, descending.
    let tied = record(
        &fresh(),
        start + TimeDelta::seconds(2),
        PipelineStatus::Spawned,
    );
    records.push(tied);
    for rec in &records {
        upsert(r, rec, ck).await;
    }
    let mut newest_first = records.clone();
    newest_first.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    let window = |f: PipelineFilter| PipelineFilter {
        created_after: f.created_after.or(Some(start)),
        created_before: f.created_before.or(Some(start + TimeDelta::seconds(6))),
        ..f
    };

    let all = list(r, &window(PipelineFilter::default()), ck).await;
    assert_eq!(
        ids(&all),
        ids(&newest_first),
        "{C} newest first by created_at, then id (descending)"
    );
    assert_eq!(
        all, newest_first,
        "{C} listed records must round-trip intact"
    );

    let done = list(
        r,
        &window(PipelineFilter {
            statuses: vec![PipelineStatus::Completed],
            ..Default::default()
        }),
        ck,
    )
    .await;
    let expect: Vec<_> = newest_first
        .iter()
        .filter(|x| x.status == PipelineStatus::Completed)
        .cloned()
        .collect();
    assert_eq!(ids(&done), ids(&expect), "{C} filter by one status");
    let two = list(
        r,
        &window(PipelineFilter {
            statuses: vec![PipelineStatus::Spawned, PipelineStatus::Failed],
            ..Default::default()
        }),
        ck,
    )
    .await;
    let expect: Vec<_> = newest_first
        .iter()
        .filter(|x| x.status != PipelineStatus::Completed)
        .cloned()
        .collect();
    assert_eq!(ids(&two), ids(&expect), "{C} filter by two statuses");

    let mid = start + TimeDelta::seconds(3);
    let before = list(
        r,
        &window(PipelineFilter {
            created_before: Some(mid),
            ..Default::default()
        }),
        ck,
    )
    .await;
    let expect: Vec<_> = newest_first
        .iter()
        .filter(|x| x.created_at < mid)
        .cloned()
        .collect();
    assert_eq!(
        ids(&before),
        ids(&expect),
        "{C} created_before is exclusive"
    );
    let after = list(
        r,
        &window(PipelineFilter {
            created_after: Some(mid),
            ..Default::default()
        }),
        ck,
    )
    .await;
    let expect: Vec<_> = newest_first
        .iter()
        .filter(|x| x.created_at >= mid)
        .cloned()
        .collect();
    assert_eq!(ids(&after), ids(&expect), "{C} created_after is inclusive");

    let mut paged = Vec::new();
    for offset in (0..8).step_by(3) {
        let page = list(
            r,
            &window(PipelineFilter {
                limit: 3,
                offset,
                ..Default::default()
            }),
            ck,
        )
        .await;
        assert!(page.len() <= 3, "{C} a page must not exceed limit");
        paged.extend(ids(&page));
    }
    assert_eq!(
        paged,
        ids(&newest_first),
        "{C} pages of 3 (offset 0, 3, 6) must cover everything once, in order"
    );
    let past = list(
        r,
        &window(PipelineFilter {
            limit: 3,
            offset: 7,
            ..Default::default()
        }),
        ck,
    )
    .await;
    assert!(past.is_empty(), "{C} an offset past the end is empty");
    let some = list(
        r,
        &PipelineFilter {
            limit: 5,
            ..Default::default()
        },
        ck,
    )
    .await;
    assert!(some.len() <= 5, "{C} limit without a window");
    assert!(
        some.windows(2)
            .all(|w| (w[0].created_at, &w[0].id) >= (w[1].created_at, &w[1].id)),
        "{C} an unfiltered list must be newest first"
    );
}

async fn default_limit(r: &Registry) {
    const C: &str = "[registry::default_limit]";
    let start = random_window_start();
    for i in 0..105 {
        let rec = record(
            &fresh(),
            start + TimeDelta::milliseconds(i),
            PipelineStatus::Running,
        );
        upsert(r, &rec, "default_limit").await;
    }
    let f = PipelineFilter {
        created_after: Some(start),
        created_before: Some(start + TimeDelta::seconds(1)),
        ..Default::default()
    };
    assert_eq!(
        list(r, &f, "default_limit").await.len(),
        100,
        "{C} limit 0 means 100"
    );
    let f = PipelineFilter { limit: 200, ..f };
    assert_eq!(
        list(r, &f, "default_limit").await.len(),
        105,
        "{C} an explicit limit above 100"
    );
}

async fn count_by_status(r: &Registry) {
    const C: &str = "[registry::count_by_status]";
    let ck = "count_by_status";
    let before = counts(r, ck).await;
    let get = |m: &HashMap<PipelineStatus, u64>, s| m.get(&s).copied().unwrap_or(0);
    let mut recs: Vec<PipelineRecord> = (0..3)
        .map(|_| record(&fresh(), now_ms(), PipelineStatus::Stopped))
        .collect();
    recs.push(record(&fresh(), now_ms(), PipelineStatus::Timeout));
    for rec in &recs {
        upsert(r, rec, ck).await;
    }
    recs[0].status = PipelineStatus::Timeout;
    upsert(r, &recs[0], ck).await;
    let after = counts(r, ck).await;
    for (status, added) in [(PipelineStatus::Stopped, 2), (PipelineStatus::Timeout, 2)] {
        assert_eq!(
            get(&after, status),
            get(&before, status) + added,
            "{C} {status}: an upsert that changes the status moves the count"
        );
    }
}
