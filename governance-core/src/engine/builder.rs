//! [`GovernanceBuilder`]: assembles an engine from its stores, LLM clients, roles and settings
//! (everything has an in-memory default) and checks the role names.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::facade::Governance;
use super::parts::Engine;
use super::requests::DEFAULT_MAX_OBJECTIVE_LEN;
use crate::agent::{Agent, Registered, RemoteAgent};
use crate::blackboard::Blackboard;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::validate_id;
use crate::llm::LlmClient;
use crate::local_llm::LocalLlm;
use crate::memory::{MemoryBlackboard, MemoryBus, MemoryStore};
use crate::message_bus::MessageBus;
use crate::ownership::{Ownership, SingleNode};
use crate::roles::{Alpha, Beta, Gamma};
use crate::spawn_controller::{SpawnController, ThresholdSpawnController};
use crate::store::StateStore;

impl Governance {
    /// A builder with in-memory defaults.
    #[must_use]
    pub fn builder() -> GovernanceBuilder {
        GovernanceBuilder::default()
    }
}

/// Builds a [`Governance`]. Everything has an in-memory default.
///
/// # Example
/// One store object for ledger, checkpoints and registry, a shared blackboard, a faulty LLM
/// mode next to the always-present `local` one, and settings of your own:
/// ```
/// use std::sync::Arc;
/// use governance_core::{
///     Config, Governance, LocalLlm, LocalLlmConfig, MemoryBlackboard, MemoryStore,
/// };
///
/// let mut config = Config::default();
/// config.auto_orchestrate = false;
/// let gov = Governance::builder()
///     .config(config)
///     .store(Arc::new(MemoryStore::default()))
///     .blackboard(Arc::new(MemoryBlackboard::default()))
///     .llm("flaky", Arc::new(LocalLlm::new(LocalLlmConfig::default())))
///     .default_mode("flaky")
///     .build()
///     .expect("a valid configuration");
/// assert_eq!(gov.modes(), ["flaky", "local"]);
/// assert_eq!(gov.default_mode(), "flaky");
/// assert!(!gov.config().auto_orchestrate);
/// ```
#[derive(Debug, Default)]
pub struct GovernanceBuilder {
    config: Option<Config>,
    blackboard: Option<Arc<dyn Blackboard>>,
    bus: Option<Arc<dyn MessageBus>>,
    store: Option<Arc<dyn StateStore>>,
    llms: HashMap<String, Arc<dyn LlmClient>>,
    default_mode: Option<String>,
    alpha: Option<Arc<dyn Agent>>,
    beta: Option<Arc<dyn Agent>>,
    gamma: Option<Arc<dyn Agent>>,
    extra_roles: Vec<Arc<dyn Agent>>,
    controller: Option<Arc<dyn SpawnController>>,
    ownership: Option<Arc<dyn Ownership>>,
    max_objective_len: Option<usize>,
    event_capacity: Option<usize>,
}

impl GovernanceBuilder {
    /// The orchestrator settings (default: [`Config::default`]).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }
    /// The blackboard (default: in memory).
    #[must_use]
    pub fn blackboard(mut self, b: Arc<dyn Blackboard>) -> Self {
        self.blackboard = Some(b);
        self
    }
    /// The message bus (default: in memory).
    #[must_use]
    pub fn bus(mut self, b: Arc<dyn MessageBus>) -> Self {
        self.bus = Some(b);
        self
    }
    /// The system of record: ledger, checkpoints and registry in one store that commits each
    /// status change atomically (default: a [`MemoryStore`]). To combine separate backends,
    /// wrap them in a [`SplitStore`](crate::store::SplitStore) (not atomic).
    #[must_use]
    pub fn store(mut self, s: Arc<dyn StateStore>) -> Self {
        self.store = Some(s);
        self
    }
    /// Registers an LLM client under a mode name (`local` is always available).
    #[must_use]
    pub fn llm(mut self, mode: impl Into<String>, client: Arc<dyn LlmClient>) -> Self {
        self.llms.insert(mode.into(), client);
        self
    }
    /// The mode used when a request names none (default `local`).
    #[must_use]
    pub fn default_mode(mut self, mode: impl Into<String>) -> Self {
        self.default_mode = Some(mode.into());
        self
    }
    /// Replaces the ALPHA role.
    #[must_use]
    pub fn alpha(mut self, a: Arc<dyn Agent>) -> Self {
        self.alpha = Some(Registered::local(a));
        self
    }
    /// Replaces the BETA role.
    #[must_use]
    pub fn beta(mut self, a: Arc<dyn Agent>) -> Self {
        self.beta = Some(Registered::local(a));
        self
    }
    /// Replaces the GAMMA role.
    #[must_use]
    pub fn gamma(mut self, a: Arc<dyn Agent>) -> Self {
        self.gamma = Some(Registered::local(a));
        self
    }
    /// Adds a custom role that runs beside ALPHA and BETA in every orchestration.
    #[must_use]
    pub fn role(mut self, a: Arc<dyn Agent>) -> Self {
        self.extra_roles.push(Registered::local(a));
        self
    }
    /// Registers a role played by another process (e.g. `governance-redis`'s `RemoteRole`):
    /// named `ALPHA`, `BETA` or `GAMMA` it replaces that role, under any other name it joins
    /// like [`role`](Self::role). Only agents registered this way receive a
    /// [`RemoteLink`](crate::RemoteLink) to record what their remote half reports.
    #[must_use]
    pub fn remote_role(mut self, a: Arc<dyn RemoteAgent>) -> Self {
        let role = a.role().to_owned();
        let agent = Registered::remote(a);
        match role.as_str() {
            "ALPHA" => self.alpha = Some(agent),
            "BETA" => self.beta = Some(agent),
            "GAMMA" => self.gamma = Some(agent),
            _ => self.extra_roles.push(agent),
        }
        self
    }
    /// Sets who owns the pipelines this engine runs (default [`SingleNode`](crate::SingleNode):
    /// this engine alone). Several server nodes on one Redis use `governance-redis`'s leases.
    #[must_use]
    pub fn ownership(mut self, o: Arc<dyn Ownership>) -> Self {
        self.ownership = Some(o);
        self
    }

    /// Replaces the spawn controller.
    #[must_use]
    pub fn spawn_controller(mut self, c: Arc<dyn SpawnController>) -> Self {
        self.controller = Some(c);
        self
    }
    /// The longest objective accepted (default 4000 characters).
    #[must_use]
    pub fn max_objective_len(mut self, n: usize) -> Self {
        self.max_objective_len = Some(n);
        self
    }
    /// Capacity of the live event channel (default 16384); slower subscribers lag.
    #[must_use]
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = Some(n);
        self
    }

    /// Builds the engine.
    ///
    /// # Errors
    /// [`Error::Config`] when the default mode has no client or a custom role name is invalid
    /// or taken.
    pub fn build(self) -> Result<Governance> {
        let config = self.config.unwrap_or_default();
        let mut llms = self.llms;
        llms.entry("local".to_owned())
            .or_insert_with(|| Arc::new(LocalLlm::default()));
        let default_mode = self.default_mode.unwrap_or_else(|| "local".to_owned());
        if !llms.contains_key(&default_mode) {
            return Err(Error::config(
                "GOVERNANCE_LLM_MODE",
                format!("no LLM client registered for default mode {default_mode:?}"),
            ));
        }
        let mut names = vec![
            "ALPHA".to_owned(),
            "BETA".to_owned(),
            "GAMMA".to_owned(),
            "REPORTER".to_owned(),
            "ORCHESTRATOR".to_owned(),
        ];
        // replaced ALPHA/BETA: their names are their agent ids, so they must not pass for
        // each other, GAMMA, the reporter or the orchestrator
        let alpha_name = self.alpha.as_ref().map_or("ALPHA", |a| a.role());
        let beta_name = self.beta.as_ref().map_or("BETA", |b| b.role());
        for role in [alpha_name, beta_name] {
            if role.len() > 32
                || validate_id("role", role).is_err()
                || role.starts_with("GAMMA")
                || role == "REPORTER"
                || role == "ORCHESTRATOR"
                || alpha_name == beta_name
            {
                return Err(Error::config(
                    "role",
                    format!(
                        "invalid ALPHA/BETA role name {role:?}: 1-32 of [A-Za-z0-9_-], distinct, \
                         not GAMMA*, REPORTER or ORCHESTRATOR"
                    ),
                ));
            }
            if !names.iter().any(|n| n == role) {
                names.push(role.to_owned());
            }
        }
        for r in &self.extra_roles {
            let role = r.role();
            if role.len() > 32 || validate_id("role", role).is_err() || role.starts_with("GAMMA") {
                return Err(Error::config(
                    "role",
                    format!("invalid custom role name {role:?}: 1-32 of [A-Za-z0-9_-], not GAMMA*"),
                ));
            }
            if names.iter().any(|n| n == role) {
                return Err(Error::config(
                    "role",
                    format!("role {role:?} is already registered"),
                ));
            }
            names.push(role.to_owned());
        }
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::default()));
        let (hub, _) = broadcast::channel(self.event_capacity.unwrap_or(16_384).max(16));
        let thresholds = config.gamma;
        Ok(Governance::new(Engine {
            config: Arc::new(config),
            blackboard: self
                .blackboard
                .unwrap_or_else(|| Arc::new(MemoryBlackboard::default())),
            bus: self.bus.unwrap_or_else(|| Arc::new(MemoryBus::default())),
            ledger: store.clone(),
            checkpoints: store.clone(),
            registry: store.clone(),
            store,
            llms,
            default_mode,
            alpha: self.alpha.unwrap_or_else(|| Arc::new(Alpha)),
            beta: self.beta.unwrap_or_else(|| Arc::new(Beta)),
            gamma: self.gamma.unwrap_or_else(|| Arc::new(Gamma)),
            extra_roles: self.extra_roles,
            controller: self
                .controller
                .unwrap_or_else(|| Arc::new(ThresholdSpawnController::new(thresholds))),
            ownership: self.ownership.unwrap_or_else(|| Arc::new(SingleNode)),
            hub,
            live: Mutex::new(HashMap::new()),
            max_objective_len: self.max_objective_len.unwrap_or(DEFAULT_MAX_OBJECTIVE_LEN),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            waiting_writes: Arc::default(),
            coordination: Arc::default(),
        }))
    }
}
