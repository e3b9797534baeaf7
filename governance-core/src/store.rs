//! Storage contracts for the system of record: the audit ledger, checkpoints and the
//! pipeline registry. Implemented in memory here and on SQLite in `governance-sqlite`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blackboard::BlackboardSnapshot;
use crate::error::Result;
use crate::event::{Event, GammaReason};
use crate::ids::PipelineId;
use crate::llm::Usage;
use crate::state_machine::PipelineStatus;

/// The report written by the RUNNING stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Summary of the analysis.
    pub summary: String,
    /// Findings, one per line.
    pub findings: Vec<String>,
    /// Complexity score 0.0–1.0 (compared with `GAMMA_COMPLEXITY_THRESHOLD`).
    pub complexity: f64,
    /// `true` for a partial report (built from partial results after a timeout or failure).
    pub partial: bool,
}

/// Token and cost totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// LLM calls made (attempts sent).
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in USD (sum of what providers reported).
    pub cost_usd: f64,
}

impl UsageTotals {
    /// Adds one call's usage.
    pub fn add(&mut self, usage: &Usage) {
        self.calls += 1;
        self.prompt_tokens += u64::from(usage.prompt_tokens);
        self.completion_tokens += u64::from(usage.completion_tokens);
        self.cost_usd += usage.cost_usd.unwrap_or(0.0);
    }

    /// Prompt plus completion tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The state of one agent as the registry shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    /// Working.
    Running,
    /// Finished its work.
    Done,
    /// Failed (an error it could not recover from).
    Failed,
    /// Revoked by its error budget.
    Revoked,
    /// Cancelled (stop, timeout, or the pipeline finished without it).
    Cancelled,
}

/// One agent of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentRecord {
    /// Agent id.
    pub agent_id: String,
    /// Role.
    pub role: String,
    /// State.
    pub state: AgentState,
    /// Tokens used (prompt + completion).
    pub tokens_used: u64,
    /// Errors counted by its error budget.
    pub errors: u32,
    /// Why it failed or was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// GAMMA's spawn, when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GammaRecord {
    /// Why.
    pub reason: GammaReason,
    /// When.
    pub spawned_at: DateTime<Utc>,
}

/// Everything known about one pipeline (the registry row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineRecord {
    /// Id.
    pub id: PipelineId,
    /// The objective it was spawned with.
    pub objective: String,
    /// Current status.
    pub status: PipelineStatus,
    /// Every status it went through, with time.
    pub history: Vec<(PipelineStatus, DateTime<Utc>)>,
    /// Whether it continues into orchestration without being asked.
    pub auto_continue: bool,
    /// LLM mode (`local`, `openrouter`).
    pub mode: String,
    /// Model requested.
    pub model: String,
    /// Orchestration timeout in seconds.
    pub timeout_secs: u64,
    /// When it was spawned.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When orchestration started.
    pub orchestration_started_at: Option<DateTime<Utc>>,
    /// The RUNNING stage's report (or a partial report).
    pub report: Option<Report>,
    /// Agents of the orchestration.
    pub agents: Vec<AgentRecord>,
    /// GAMMA, if spawned.
    pub gamma: Option<GammaRecord>,
    /// Token/cost totals.
    pub usage: UsageTotals,
    /// Results (complete or partial) once terminal.
    pub results: Option<crate::results::PipelineResults>,
    /// Why it failed / timed out / stopped.
    pub failure: Option<String>,
    /// The last event `seq` written for it.
    pub last_seq: u64,
}

/// A filter for [`PipelineRegistry::list`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineFilter {
    /// Only these statuses (any when empty).
    pub statuses: Vec<PipelineStatus>,
    /// Only pipelines created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only pipelines created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many (newest first); `0` means a default of 100.
    pub limit: usize,
    /// Skip this many (for paging).
    pub offset: usize,
}

/// A checkpoint: enough to rebuild a pipeline's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The pipeline record at the time.
    pub record: PipelineRecord,
    /// The blackboard at the time.
    pub blackboard: BlackboardSnapshot,
    /// The event `seq` the checkpoint is consistent with.
    pub seq: u64,
    /// Whether it is the final checkpoint of a terminal pipeline.
    pub is_final: bool,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

/// The append-only audit ledger: every event of every pipeline.
///
/// # Contract
/// - [`append`](Self::append) stores the events atomically (all or none) and durably before it
///   returns `Ok` (what "durable" means is the backend's to document).
/// - Per pipeline, `seq` must be exactly `last_seq + 1`; appending a `seq` that already exists
///   with an identical event is a no-op (idempotent retry); with a different event, or leaving a
///   gap, it is [`crate::Error::Conflict`] and nothing of the batch is stored.
/// - Entries are never changed or removed.
#[async_trait]
pub trait LedgerStore: Send + Sync + std::fmt::Debug {
    /// Appends events (possibly of several pipelines).
    async fn append(&self, events: &[Event]) -> Result<()>;

    /// Events of `pipeline` with `seq > after`, at most `limit`, in `seq` order.
    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>>;

    /// The highest `seq` stored for `pipeline` (0 when none).
    async fn last_seq(&self, pipeline: &PipelineId) -> Result<u64>;

    /// Appends `events` and, when this backend also holds checkpoints and the registry, saves
    /// `checkpoint` and upserts `record` **in the same atomic write**, returning `true`. The
    /// default appends the events only and returns `false`; the caller then stores the
    /// checkpoint and the record through their own stores. The engine uses this at every
    /// status change, so a status change, its events and its checkpoint are never half-written.
    async fn append_with_state(
        &self,
        events: &[Event],
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<bool> {
        let _ = (checkpoint, record);
        self.append(events).await?;
        Ok(false)
    }

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Checkpoints per pipeline.
///
/// # Contract
/// - [`save`](Self::save) is atomic and durable on `Ok`.
/// - [`latest`](Self::latest) returns the checkpoint with the highest `seq` (the last saved on ties).
/// - Backends may compact intermediate checkpoints of terminal pipelines; the final one is kept.
#[async_trait]
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Stores a checkpoint.
    async fn save(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// The latest checkpoint of `pipeline`.
    async fn latest(&self, pipeline: &PipelineId) -> Result<Option<Checkpoint>>;

    /// How many checkpoints are stored for `pipeline`.
    async fn count(&self, pipeline: &PipelineId) -> Result<usize>;
}

/// The pipeline registry.
///
/// # Contract
/// - [`upsert`](Self::upsert) replaces the record with the same id atomically.
/// - [`list`](Self::list) returns newest first (by `created_at`, then id).
#[async_trait]
pub trait PipelineRegistry: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces a record.
    async fn upsert(&self, record: &PipelineRecord) -> Result<()>;

    /// One record.
    async fn get(&self, id: &PipelineId) -> Result<Option<PipelineRecord>>;

    /// Records matching the filter.
    async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>>;

    /// Count of pipelines per status.
    async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>>;
}

impl PipelineRecord {
    /// A freshly SPAWNED record with the engine's defaults (auto-continue on, the `local` mode
    /// and its model, a 120 s orchestration timeout); set the other public fields as needed.
    /// Records are otherwise made by the engine: this is for backends and their tests.
    #[must_use]
    pub fn new(id: PipelineId, objective: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        Self {
            id,
            objective: objective.into(),
            status: PipelineStatus::Spawned,
            history: vec![(PipelineStatus::Spawned, created_at)],
            auto_continue: true,
            mode: "local".into(),
            model: "local/deterministic".into(),
            timeout_secs: 120,
            created_at,
            updated_at: created_at,
            orchestration_started_at: None,
            report: None,
            agents: Vec::new(),
            gamma: None,
            usage: UsageTotals::default(),
            results: None,
            failure: None,
            last_seq: 0,
        }
    }
}

impl Checkpoint {
    /// A checkpoint of `record` and `blackboard`, consistent with event `seq`.
    #[must_use]
    pub fn new(
        record: PipelineRecord,
        blackboard: BlackboardSnapshot,
        seq: u64,
        is_final: bool,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            record,
            blackboard,
            seq,
            is_final,
            created_at,
        }
    }
}
