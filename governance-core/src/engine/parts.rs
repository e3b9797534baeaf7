//! What the engine's layers share: the [`Engine`] (stores, LLM clients, roles, settings, the
//! table of live pipelines) and the [`Live`] handle of one pipeline held in memory while it is
//! not terminal. Its state changes (status, checkpoints) are in [`super::live`]; what its
//! agents share is its [`PipelineState`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::PipelineState;
use crate::agent::Agent;
use crate::blackboard::Blackboard;
use crate::config::Config;
use crate::coordination::CoordinationWatch;
use crate::durable::WriteRetry;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::PipelineId;
use crate::llm::LlmClient;
use crate::llm_stack::LlmStack;
use crate::message_bus::MessageBus;
use crate::ownership::Ownership;
use crate::role_settings::RoleSettingsMap;
use crate::spawn_controller::SpawnController;
use crate::state_machine::PipelineStatus;
use crate::store::{CheckpointStore, LedgerStore, PipelineRecord, PipelineRegistry, StateStore};

/// The pieces an engine is built from.
#[derive(Debug)]
pub(crate) struct Engine {
    pub config: Arc<Config>,
    pub blackboard: Arc<dyn Blackboard>,
    pub bus: Arc<dyn MessageBus>,
    /// The system of record; every status change is one [`StateStore::commit`].
    pub store: Arc<dyn StateStore>,
    /// `store` as a ledger, a checkpoint store and a registry (for reads and plain appends).
    pub ledger: Arc<dyn LedgerStore>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub registry: Arc<dyn PipelineRegistry>,
    pub llms: HashMap<String, Arc<dyn LlmClient>>,
    /// The layers every governed LLM call goes through.
    pub llm_stack: Arc<LlmStack>,
    pub default_mode: String,
    pub alpha: Arc<dyn Agent>,
    pub beta: Arc<dyn Agent>,
    pub gamma: Arc<dyn Agent>,
    pub extra_roles: Vec<Arc<dyn Agent>>,
    /// The engine's per-role settings (a spawn request's are laid over them).
    pub role_settings: RoleSettingsMap,
    pub controller: Arc<dyn SpawnController>,
    pub ownership: Arc<dyn Ownership>,
    pub hub: broadcast::Sender<Arc<Event>>,
    pub live: Mutex<HashMap<PipelineId, Arc<Live>>>,
    pub max_objective_len: usize,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// Pipelines whose next durable write is waiting for the storage (see `crate::durable`).
    pub waiting_writes: Arc<AtomicUsize>,
    /// Notices when the blackboard or bus lost data (see `super::rebuild`).
    pub coordination: Arc<CoordinationWatch>,
    /// The shared ledger money budgets are reserved in (`None`: one in memory per pipeline).
    pub cost_ledger: Option<Arc<dyn crate::cost::CostLedger>>,
}

impl Engine {
    /// The retry policy of acknowledged pipelines' durable writes.
    pub fn write_retry(&self) -> WriteRetry {
        WriteRetry::new(self.shutdown.clone(), self.waiting_writes.clone())
    }

    /// The role names settings may address: the built-in roles and the custom ones.
    pub fn known_roles(&self) -> Vec<String> {
        let mut known: Vec<String> = ["REPORTER", "GAMMA"]
            .into_iter()
            .map(String::from)
            .chain(
                [&self.alpha, &self.beta]
                    .into_iter()
                    .chain(&self.extra_roles)
                    .map(|a| a.role().to_owned()),
            )
            .collect();
        known.dedup();
        known
    }

    pub fn llm(&self, mode: &str) -> Result<Arc<dyn LlmClient>> {
        self.llms.get(mode).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.llms.keys().map(String::as_str).collect();
            known.sort_unstable();
            Error::InvalidInput(format!(
                "LLM mode {mode:?} is not available on this server (available: {})",
                known.join(", ")
            ))
        })
    }
}

/// A pipeline held in memory while it is not terminal.
#[derive(Debug)]
pub(crate) struct Live {
    /// What its agents and the supervisor share.
    pub state: Arc<PipelineState>,
    /// Its record as last committed (or being committed: the lock is held meanwhile).
    pub(super) record: tokio::sync::Mutex<PipelineRecord>,
    /// Cancelled by an emergency stop or the engine's shutdown.
    pub stop: CancellationToken,
    pub(super) status_tx: watch::Sender<PipelineStatus>,
    /// A driver task runs it (it is not resting at REPORT).
    pub(super) driven: AtomicBool,
    pub(super) auto_continue: AtomicBool,
    /// The coordination epoch its blackboard was last built in (`crate::coordination`).
    pub(super) board_epoch: std::sync::atomic::AtomicU64,
}

impl Live {
    pub fn id(&self) -> &PipelineId {
        self.state.id()
    }

    pub fn is_driven(&self) -> bool {
        self.driven.load(Ordering::Acquire)
    }

    pub(super) fn set_driven(&self, driven: bool) {
        self.driven.store(driven, Ordering::Release);
    }

    /// Becomes driven unless a driver already runs it; `false` then.
    pub(super) fn claim_driver(&self) -> bool {
        self.driven
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether it continues into orchestration after REPORT by itself.
    pub fn auto_continue(&self) -> bool {
        self.auto_continue.load(Ordering::Acquire)
    }

    pub fn status_rx(&self) -> watch::Receiver<PipelineStatus> {
        self.status_tx.subscribe()
    }

    /// The record with the live agent/usage state merged in.
    pub async fn snapshot_record(&self) -> PipelineRecord {
        let mut rec = self.record.lock().await.clone();
        self.sync_runtime(&mut rec);
        rec
    }

    /// The record with the live agent/usage state merged in, unless a state change is being
    /// written right now (it holds the record, and may be waiting for a backend).
    pub fn try_snapshot_record(&self) -> Option<PipelineRecord> {
        let mut rec = self.record.try_lock().ok()?.clone();
        self.sync_runtime(&mut rec);
        Some(rec)
    }

    /// Merges the live agent/usage state into `rec` (e.g. the registry's committed copy).
    pub fn sync_runtime(&self, rec: &mut PipelineRecord) {
        rec.agents = self.state.agents();
        rec.usage = self.state.usage();
        rec.last_seq = self.state.emitter().last_seq();
    }

    pub async fn with_record<T>(&self, f: impl FnOnce(&mut PipelineRecord) -> T) -> T {
        f(&mut *self.record.lock().await)
    }
}
