//! Storage contracts for the system of record: the audit ledger, checkpoints and the
//! pipeline registry, and the [`StateStore`] that holds all three and commits a status change
//! as one atomic write. Implemented in memory here, on SQLite in `governance-sqlite` and on
//! Redis in `governance-redis`; [`SplitStore`] combines separate backends (not atomically).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blackboard::BlackboardSnapshot;
use crate::error::{Error, Result};
use crate::event::{Event, GammaReason};
use crate::ids::PipelineId;
use crate::llm::Usage;
use crate::role_settings::RoleSettingsMap;
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
    /// USD spent: the sum of the provider's reported `usage.cost` of its calls.
    #[serde(default)]
    pub cost_usd: f64,
    /// Errors counted by its error budget.
    pub errors: u32,
    /// Why it failed or was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The model it asks (its role's, else the pipeline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
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
    /// Whether it rests at `AWAITING_APPROVAL` for a human decision after consensus and
    /// solution (absent in records written before approvals existed: `false`).
    #[serde(default)]
    pub require_approval: bool,
    /// Revision rounds run after a reviewer's rejection.
    #[serde(default)]
    pub revisions: u32,
    /// The per-role settings it runs with (the engine's with the spawn request's laid over
    /// them), so a resume uses the same.
    #[serde(default, skip_serializing_if = "RoleSettingsMap::is_empty")]
    pub roles: RoleSettingsMap,
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

/// One status change of one pipeline: its events (the `status_changed`, the
/// `checkpoint_created`), the checkpoint taken with them and the registry record, all stamped
/// with the `seq` of the last event. [`StateStore::commit`] writes it as a whole.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    /// The events, in `seq` order (may be empty: a checkpoint and record only).
    pub events: &'a [Event],
    /// The checkpoint.
    pub checkpoint: &'a Checkpoint,
    /// The registry record.
    pub record: &'a PipelineRecord,
}

impl StatusChange<'_> {
    /// The pipeline it changes.
    #[must_use]
    pub fn pipeline(&self) -> &PipelineId {
        &self.record.id
    }

    /// Checks that the events and the checkpoint all belong to the record's pipeline.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the stray pipeline.
    pub fn validate(&self) -> Result<()> {
        let id = self.pipeline();
        let stray = self
            .events
            .iter()
            .map(Event::pipeline_id)
            .chain(std::iter::once(&self.checkpoint.record.id))
            .find(|p| *p != id);
        match stray {
            Some(p) => Err(Error::InvalidInput(format!(
                "a status change of pipeline {id} cannot write pipeline {p}"
            ))),
            None => Ok(()),
        }
    }
}

/// The system of record of pipelines: the ledger, the checkpoints and the registry in one
/// backend, which commits a status change atomically.
///
/// # Contract
/// - [`commit`](Self::commit) appends the events (with the [`LedgerStore`] rules: `seq` follows
///   the stored tail, an identical repeat is a no-op), saves the checkpoint (as
///   [`CheckpointStore::save`]) and replaces the record (as [`PipelineRegistry::upsert`]) **all
///   or nothing**: when it returns an error (a ledger conflict, a full disk, a lost lease),
///   none of the three is changed.
/// - It is durable on `Ok` as the backend's other writes are.
#[async_trait]
pub trait StateStore: LedgerStore + CheckpointStore + PipelineRegistry {
    /// Commits one status change atomically.
    async fn commit(&self, change: StatusChange<'_>) -> Result<()>;
}

/// A [`StateStore`] made of separate ledger, checkpoint and registry backends (e.g. a ledger
/// wrapped for a test, or stores on different systems).
///
/// **Not atomic**: [`commit`](StateStore::commit) appends the events, then saves the
/// checkpoint, then upserts the record, one after the other; a failure in between leaves the
/// earlier writes in place (a retry of the same change repeats them harmlessly: the ledger
/// skips identical events). Use one backend's own store where atomicity matters.
#[derive(Debug, Clone)]
pub struct SplitStore {
    ledger: Arc<dyn LedgerStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    registry: Arc<dyn PipelineRegistry>,
}

impl SplitStore {
    /// Combines three backends into one (non-atomic) state store.
    #[must_use]
    pub fn new(
        ledger: Arc<dyn LedgerStore>,
        checkpoints: Arc<dyn CheckpointStore>,
        registry: Arc<dyn PipelineRegistry>,
    ) -> Self {
        Self {
            ledger,
            checkpoints,
            registry,
        }
    }
}

#[async_trait]
impl LedgerStore for SplitStore {
    async fn append(&self, events: &[Event]) -> Result<()> {
        self.ledger.append(events).await
    }
    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.ledger.read(pipeline, after, limit).await
    }
    async fn last_seq(&self, pipeline: &PipelineId) -> Result<u64> {
        self.ledger.last_seq(pipeline).await
    }
    async fn ping(&self) -> Result<()> {
        self.ledger.ping().await
    }
}

#[async_trait]
impl CheckpointStore for SplitStore {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.checkpoints.save(checkpoint).await
    }
    async fn latest(&self, pipeline: &PipelineId) -> Result<Option<Checkpoint>> {
        self.checkpoints.latest(pipeline).await
    }
    async fn count(&self, pipeline: &PipelineId) -> Result<usize> {
        self.checkpoints.count(pipeline).await
    }
}

#[async_trait]
impl PipelineRegistry for SplitStore {
    async fn upsert(&self, record: &PipelineRecord) -> Result<()> {
        self.registry.upsert(record).await
    }
    async fn get(&self, id: &PipelineId) -> Result<Option<PipelineRecord>> {
        self.registry.get(id).await
    }
    async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
        self.registry.list(filter).await
    }
    async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>> {
        self.registry.count_by_status().await
    }
}

#[async_trait]
impl StateStore for SplitStore {
    async fn commit(&self, change: StatusChange<'_>) -> Result<()> {
        change.validate()?;
        self.ledger.append(change.events).await?;
        self.checkpoints.save(change.checkpoint).await?;
        self.registry.upsert(change.record).await
    }
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
            require_approval: false,
            revisions: 0,
            roles: RoleSettingsMap::new(),
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
