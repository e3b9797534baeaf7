//! Conformance suites every backend runs from its own tests (feature `testkit`).
//!
//! Each suite takes the backend as an `Arc<dyn Trait>`, runs every check of the trait's
//! `# Contract` on fresh pipeline ids ([`PipelineId::generate`]) and panics with a message that
//! names the failed check (`[suite::check] what went wrong`). Because every check uses its own
//! pipelines, one backend instance can run a suite several times, and backends with persistent
//! state (Redis, SQLite) need no cleanup between runs.
//!
//! The suites spawn tasks with [`tokio::spawn`] to race operations against each other; run them
//! on a multi-thread runtime (`#[tokio::test(flavor = "multi_thread", worker_threads = 4)]`) so
//! the races are real.
//!
//! Timestamps the suites write are truncated to whole milliseconds, so backends that round-trip
//! values through JSON or text compare equal with `==`.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn conforms() {
//!     let bb = std::sync::Arc::new(MyBlackboard::connect().await.unwrap());
//!     governance_core::testkit::blackboard_suite(bb).await;
//! }
//! ```

mod blackboard;
mod blackboard_fixtures;
mod blackboard_races;
mod blackboard_required;
mod blackboard_snapshot;
mod bus;
mod checkpoint;
mod ledger;
mod registry;
mod state;

pub use blackboard::blackboard_suite;
pub use bus::bus_suite;
pub use checkpoint::checkpoint_suite;
pub use ledger::ledger_suite;
pub use registry::registry_suite;
pub use state::{failed_commit_leaves_nothing, state_store_suite};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::ids::{AgentId, PipelineId};

/// `now`, truncated to whole milliseconds.
pub(crate) fn now_ms() -> DateTime<Utc> {
    truncate_ms(Utc::now())
}

/// `ts`, truncated to whole milliseconds.
pub(crate) fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.duration_trunc(TimeDelta::milliseconds(1))
        .expect("testkit: truncating a timestamp to milliseconds")
}

/// A validated agent id from a literal or a formatted name.
pub(crate) fn agent(name: impl AsRef<str>) -> AgentId {
    let name = name.as_ref();
    AgentId::new(name).unwrap_or_else(|e| panic!("testkit: agent id {name:?} is invalid: {e}"))
}

/// A fresh pipeline id.
pub(crate) fn fresh() -> PipelineId {
    PipelineId::generate()
}

/// Joins spawned tasks, panicking with `what` when one of them panicked.
pub(crate) async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>, what: &str) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for result in futures::future::join_all(handles).await {
        match result {
            Ok(v) => out.push(v),
            Err(e) => panic!("{what}: a spawned task failed: {e}"),
        }
    }
    out
}
