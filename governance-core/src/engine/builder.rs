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
use crate::cost::CostLedger;
use crate::error::{Error, Result};
use crate::llm::LlmClient;
use crate::llm_stack::{LlmLayer, LlmStack, LlmStage};
use crate::local_llm::LocalLlm;
use crate::memory::{MemoryBlackboard, MemoryBus, MemoryStore};
use crate::message_bus::MessageBus;
use crate::ownership::{Ownership, SingleNode};
use crate::retry::RetryPolicy;
use crate::role::Role;
use crate::role_settings::RoleSettingsMap;
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
    llm_order: Option<Vec<LlmStage>>,
    llm_layers: Vec<Arc<dyn LlmLayer>>,
    llm_retry: Option<RetryPolicy>,
    default_mode: Option<String>,
    alpha: Option<Arc<dyn Agent>>,
    beta: Option<Arc<dyn Agent>>,
    gamma: Option<Arc<dyn Agent>>,
    extra_roles: Vec<Arc<dyn Agent>>,
    role_settings: RoleSettingsMap,
    controller: Option<Arc<dyn SpawnController>>,
    ownership: Option<Arc<dyn Ownership>>,
    max_objective_len: Option<usize>,
    event_capacity: Option<usize>,
    cost_ledger: Option<Arc<dyn CostLedger>>,
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
    /// Adds a layer to every governed LLM call (see [`LlmLayer`] for the stack): below the
    /// built-in stages (retry, token budget, circuit breaker, events) and above the client, in
    /// the order added (the first added is the outermost). A call it refuses is never sent and
    /// is recorded as an `error` event (kind `llm_refused`).
    #[must_use]
    pub fn llm_layer(mut self, layer: Arc<dyn LlmLayer>) -> Self {
        self.llm_layers.push(layer);
        self
    }
    /// Orders the governed LLM call's stack, outermost first (default
    /// [`LlmStage::default_order`]: retry, token budget, circuit breaker, events). It must
    /// name each built-in stage exactly once ([`build`](Self::build) fails otherwise), so no
    /// order drops the budget or the breaker; [`LlmStage::Layer`]s go where they are listed,
    /// and layers added with [`llm_layer`](Self::llm_layer) below all of them. Each built-in
    /// does its job on what passes through it: a layer above `Retry` sees a call once (not
    /// each try), above `TokenBudget` or `CircuitBreaker` it sees calls they will refuse, and
    /// the calls a layer above `Events` refuses are not recorded as `llm_refused` events.
    #[must_use]
    pub fn llm_stack(mut self, order: Vec<LlmStage>) -> Self {
        self.llm_order = Some(order);
        self
    }
    /// The retry policy of the governed LLM call's [`LlmStage::Retry`] (default
    /// [`RetryPolicy::llm_call`] with [`Config::llm_max_attempts`]).
    #[must_use]
    pub fn llm_retry(mut self, policy: RetryPolicy) -> Self {
        self.llm_retry = Some(policy);
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
            r if Role::ALPHA == r => self.alpha = Some(agent),
            r if Role::BETA == r => self.beta = Some(agent),
            r if Role::GAMMA == r => self.gamma = Some(agent),
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

    /// Where money budgets are reserved and settled (default: a memory ledger of its own for
    /// each pipeline). Give every process running agents of the same pipelines (nodes and
    /// `governance worker`s) the same shared ledger (`governance-redis`'s `RedisCostLedger`)
    /// so that together they cannot pass a budget.
    #[must_use]
    pub fn cost_ledger(mut self, ledger: Arc<dyn CostLedger>) -> Self {
        self.cost_ledger = Some(ledger);
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

    /// The engine's per-role settings (model, fallbacks, temperature, `max_tokens`,
    /// instructions, whether the role's votes count):
    /// the default of every pipeline, under the spawn request's
    /// [`roles`](crate::SpawnRequest::roles). Default: none (every role on the built-in
    /// defaults). Checked by [`build`](Self::build).
    #[must_use]
    pub fn role_settings(mut self, settings: RoleSettingsMap) -> Self {
        self.role_settings = settings;
        self
    }

    /// Builds the engine.
    ///
    /// # Errors
    /// [`Error::Config`] when the default mode has no client, a custom role name is invalid
    /// or taken, or the [`llm_stack`](Self::llm_stack) order does not name each built-in
    /// stage once, or a [`role_settings`](Self::role_settings) entry names an unknown role or
    /// holds an invalid value.
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
            Role::ALPHA,
            Role::BETA,
            Role::GAMMA,
            Role::REPORTER,
            Role::ORCHESTRATOR,
        ];
        // replaced ALPHA/BETA: their names are their agent ids, so they must not pass for
        // each other, GAMMA, the reporter or the orchestrator
        let alpha_name = self
            .alpha
            .as_ref()
            .map_or(Role::ALPHA.as_str(), |a| a.role());
        let beta_name = self.beta.as_ref().map_or(Role::BETA.as_str(), |b| b.role());
        for name in [alpha_name, beta_name] {
            let role = Role::new(name)
                .ok()
                .filter(|r| !r.is_gamma() && *r != Role::REPORTER && *r != Role::ORCHESTRATOR);
            let Some(role) = role.filter(|_| alpha_name != beta_name) else {
                return Err(Error::config(
                    "role",
                    format!(
                        "invalid ALPHA/BETA role name {name:?}: 1-32 of [A-Za-z0-9_-], distinct, \
                         not GAMMA*, REPORTER or ORCHESTRATOR"
                    ),
                ));
            };
            if !names.contains(&role) {
                names.push(role);
            }
        }
        for r in &self.extra_roles {
            let name = r.role();
            let Some(role) = Role::new(name).ok().filter(|r| !r.is_gamma()) else {
                return Err(Error::config(
                    "role",
                    format!("invalid custom role name {name:?}: 1-32 of [A-Za-z0-9_-], not GAMMA*"),
                ));
            };
            if names.contains(&role) {
                return Err(Error::config(
                    "role",
                    format!("role {name:?} is already registered"),
                ));
            }
            names.push(role);
        }
        let known: Vec<String> = names
            .iter()
            .filter(|n| **n != Role::ORCHESTRATOR)
            .map(|n| n.as_str().to_owned())
            .collect();
        crate::role_settings::validate_map(
            &self.role_settings,
            &known,
            config.budgets.max_completion_tokens,
        )
        .map_err(|e| Error::config("GOVERNANCE_CONFIG", e.to_string()))?;
        let llm_stack = LlmStack::new(
            self.llm_order.unwrap_or_else(LlmStage::default_order),
            self.llm_layers,
            &self
                .llm_retry
                .unwrap_or_else(|| RetryPolicy::llm_call(config.llm_max_attempts)),
        )?;
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
            llm_stack: Arc::new(llm_stack),
            default_mode,
            alpha: self.alpha.unwrap_or_else(|| Arc::new(Alpha)),
            beta: self.beta.unwrap_or_else(|| Arc::new(Beta)),
            gamma: self.gamma.unwrap_or_else(|| Arc::new(Gamma)),
            extra_roles: self.extra_roles,
            role_settings: self.role_settings,
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
            cost_ledger: self.cost_ledger,
        }))
    }
}
