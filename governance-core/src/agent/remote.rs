//! The remote-worker plumbing: the owner's [`RemoteLink`] and the worker's
//! [`DetachedContext`].
//!
//! A [`RemoteLink`] records what a role's remote half reported as if the role had done it
//! here. Only the engine builds one (its constructor is private to this crate), and only for
//! agents registered as [`RemoteAgent`](super::RemoteAgent)s, so a custom role cannot forge
//! remote events. What a link records is checked besides: only events about this agent in
//! this pipeline, never a status change or another agent's vote.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::context::{AgentContext, ContextParts};
use crate::blackboard::Blackboard;
use crate::config::Config;
use crate::engine::state::PipelineState;
use crate::error::{Error, Result};
use crate::event::{EventKind, GammaReason};
use crate::ids::{AgentId, PipelineId};
use crate::llm::LlmClient;
use crate::llm_stack::LlmStack;
use crate::message_bus::MessageBus;
use crate::quorum::{Quorum, QuorumHandle};
use crate::retry::RetryPolicy;
use crate::role_settings::RoleSettings;
use crate::store::{LedgerStore, Report};

/// The owner's side of a role played by a worker: records the events the worker reported,
/// reconciles what it wrote, and checks the budgets it spends against. Handed to
/// [`RemoteAgent::run`](super::RemoteAgent::run) by the engine; nothing else can build one:
/// ```compile_fail,E0624
/// # fn forge(ctx: &governance_core::AgentContext) {
/// let link = governance_core::RemoteLink::new(ctx); // crate-private constructor
/// # }
/// ```
/// and a plain [`AgentContext`] has none of its methods:
/// ```compile_fail,E0599
/// # async fn forge(ctx: governance_core::AgentContext, kind: governance_core::EventKind) {
/// ctx.record_remote(kind).await; // only a RemoteLink records remote events
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RemoteLink {
    ctx: AgentContext,
}

impl RemoteLink {
    pub(super) fn new(ctx: &AgentContext) -> Self {
        Self { ctx: ctx.clone() }
    }

    /// Why this agent may make no more LLM calls (its own or the pipeline's token or cost
    /// budget is used up), if that is so.
    #[must_use]
    pub fn budget_exhausted(&self) -> Option<String> {
        let b = &self.ctx.inner.budget;
        let max = b.pipeline().config().max_tokens_per_agent;
        if b.tokens_used() >= max {
            return Some(format!(
                "agent used {} tokens of max_tokens_per_agent {max}",
                b.tokens_used()
            ));
        }
        if let Some(max) = b.pipeline().config().max_cost_per_agent_usd
            && b.cost_usd() >= max
        {
            return Some(format!(
                "agent spent ${:.4} of max_cost_per_agent_usd ${max:.4}",
                b.cost_usd()
            ));
        }
        b.pipeline().exhausted()
    }

    /// Tokens and USD the whole pipeline used so far (as this engine knows it).
    #[must_use]
    pub fn pipeline_used(&self) -> (u64, f64) {
        let b = self.ctx.inner.budget.pipeline();
        (b.tokens_used(), b.cost_usd())
    }

    /// The model this agent asks.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.ctx.inner.model
    }

    /// The role's settings in this pipeline (fallback models, temperature, `max_tokens`,
    /// instructions, votes, required), which the remote half applies.
    #[must_use]
    pub fn settings(&self) -> &RoleSettings {
        &self.ctx.inner.settings
    }

    /// Records, in this pipeline's ledger and event stream, an event that this agent's remote
    /// half (a worker process playing the role) reported, with the bookkeeping the local
    /// method would have done (progress, consensus, usage).
    ///
    /// Only events an agent itself causes are accepted, and only about this agent and this
    /// pipeline: `agent_message` from it, `proposal_created` by it, `vote_cast` by it,
    /// `llm_call` and `error` of it, and `consensus_reached` when the blackboard shows that
    /// consensus. A remote agent can therefore never forge a status change or another agent's
    /// vote.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an event that is not accepted; ledger failures.
    pub async fn record_remote(&self, kind: EventKind) -> Result<()> {
        let c = &self.ctx.inner;
        if kind.pipeline_id() != c.shared.id() {
            return Err(Error::InvalidInput(
                "a remote event of another pipeline".into(),
            ));
        }
        let me = &c.agent_id;
        match &kind {
            EventKind::AgentMessage { from, .. } if from == me => {}
            EventKind::ProposalCreated {
                author,
                proposal_id,
                ..
            } if author == me => {
                if !c.shared.note_proposal_recorded(proposal_id) {
                    return Ok(()); // replayed after a takeover: already in the ledger
                }
                c.shared.proposals_changed();
            }
            EventKind::VoteCast {
                voter, proposal_id, ..
            } if voter == me => {
                if !c.shared.note_vote_recorded(proposal_id, voter) {
                    return Ok(());
                }
                c.shared.proposals_changed();
            }
            EventKind::LlmCall {
                agent_id,
                prompt_tokens,
                completion_tokens,
                cost_usd,
                error,
                ..
            } if agent_id == me => {
                let usage = crate::llm::Usage {
                    prompt_tokens: *prompt_tokens,
                    completion_tokens: *completion_tokens,
                    cost_usd: *cost_usd,
                };
                if error.is_none() {
                    // the remote call counts against this agent's and the pipeline's budgets
                    c.budget.charge(&usage);
                }
                c.shared.record_llm_call(
                    me.as_str(),
                    error.is_none().then_some(&usage),
                    c.budget.tokens_used(),
                    c.budget.cost_usd(),
                );
            }
            EventKind::Error {
                agent_id: Some(a), ..
            } if a == me => {}
            EventKind::ConsensusReached { proposal_id, .. } => {
                let decided = c.blackboard.snapshot(c.shared.id()).await?.consensus;
                if decided.as_ref().map(|d| &d.proposal_id) != Some(proposal_id) {
                    return Err(Error::InvalidInput(format!(
                        "a remote consensus on {proposal_id} that the blackboard does not show"
                    )));
                }
                if !c.shared.mark_consensus() {
                    return Ok(()); // already recorded (a report replayed after a takeover)
                }
            }
            other => {
                return Err(Error::InvalidInput(format!(
                    "a remote agent may not report a {} event about someone else",
                    other.type_name()
                )));
            }
        }
        c.shared.emitter().emit(kind).await?;
        c.shared.record_progress();
        Ok(())
    }

    /// Records this agent's proposals and votes that are on the blackboard but whose reports
    /// never arrived (a remote agent that died between writing and reporting), so the ledger
    /// stays a complete account of what the agent did. Returns how many were recorded.
    ///
    /// # Errors
    /// Blackboard or ledger failures.
    pub async fn reconcile_remote(&self) -> Result<usize> {
        let c = &self.ctx.inner;
        let snap = c.blackboard.snapshot(c.shared.id()).await?;
        let n = c.shared.record_unrecorded(&snap, Some(&c.agent_id)).await?;
        if n > 0 {
            c.shared.proposals_changed();
            c.shared.record_progress();
        }
        Ok(n)
    }

    /// Re-reads the blackboard and marks a solution as written when there is one (after a
    /// remote agent wrote it).
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn sync_solution(&self) -> Result<()> {
        let c = &self.ctx.inner;
        if !c.shared.has_solution()
            && !c
                .blackboard
                .snapshot(c.shared.id())
                .await?
                .solutions
                .is_empty()
        {
            c.shared.mark_solution();
            c.shared.record_progress();
        }
        Ok(())
    }
}

/// The parts of an [`AgentContext`] for an agent that runs outside the engine owning its
/// pipeline: in a worker process (see `governance-redis`'s `Worker`). Its events go to
/// `events` (which forwards them to the owner) instead of the owner's ledger; the owner
/// records them through its [`RemoteLink`].
///
/// ```
/// use std::sync::Arc;
/// use governance_core::{
///     AgentContext, Config, DetachedContext, LocalLlm, MemoryBlackboard, MemoryBus,
///     MemoryStore, PipelineId, Quorum, QuorumHandle,
/// };
///
/// let quorum = QuorumHandle::new(Quorum::DEFAULT);
/// let parts = DetachedContext::new(
///     PipelineId::generate(),
///     "Design a caching strategy",
///     "ALPHA".parse().unwrap(),
///     Arc::new(MemoryBlackboard::default()),
///     Arc::new(MemoryBus::default()),
///     Arc::new(LocalLlm::default()),
///     Arc::new(Config::default()),
///     Arc::new(MemoryStore::default()),
/// )
/// .quorum(quorum.clone());
/// let ctx = AgentContext::detached(parts);
/// quorum.set(Quorum::LONE); // the owner announced a lone agent
/// assert_eq!(ctx.quorum(), 1);
/// ```
#[derive(Debug)]
#[must_use]
pub struct DetachedContext {
    pipeline_id: PipelineId,
    objective: String,
    report: Option<Report>,
    agent_id: AgentId,
    role: String,
    gamma_reason: Option<GammaReason>,
    blackboard: Arc<dyn Blackboard>,
    bus: Arc<dyn MessageBus>,
    llm: Arc<dyn LlmClient>,
    model: String,
    settings: RoleSettings,
    config: Arc<Config>,
    events: Arc<dyn LedgerStore>,
    quorum: QuorumHandle,
    approvers: crate::quorum::ApproversHandle,
    cancel: CancellationToken,
    agent_tokens_used: u64,
    pipeline_used: (u64, f64),
    cost_ledger: Option<Arc<dyn crate::cost::CostLedger>>,
}

impl DetachedContext {
    /// Parts with the given pipeline, agent and backends; the rest from `config`
    /// (quorum 2, no report, no GAMMA reason, model from the config, role = agent id).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pipeline_id: PipelineId,
        objective: impl Into<String>,
        agent_id: AgentId,
        blackboard: Arc<dyn Blackboard>,
        bus: Arc<dyn MessageBus>,
        llm: Arc<dyn LlmClient>,
        config: Arc<Config>,
        events: Arc<dyn LedgerStore>,
    ) -> Self {
        Self {
            pipeline_id,
            objective: objective.into(),
            report: None,
            role: agent_id.to_string(),
            agent_id,
            gamma_reason: None,
            blackboard,
            bus,
            llm,
            model: config.model.clone(),
            settings: RoleSettings::default(),
            config,
            events,
            quorum: QuorumHandle::new(Quorum::DEFAULT),
            approvers: crate::quorum::ApproversHandle::default(),
            cancel: CancellationToken::new(),
            agent_tokens_used: 0,
            pipeline_used: (0, 0.0),
            cost_ledger: None,
        }
    }

    /// The shared ledger money budgets are reserved in (the owner's, e.g. `governance-redis`'s
    /// `RedisCostLedger`), so this worker's calls and the owner's count against one budget.
    /// Default: a memory ledger holding the pipeline's spending so far
    /// ([`pipeline_used`](Self::pipeline_used)) — this process alone.
    pub fn cost_ledger(mut self, ledger: Arc<dyn crate::cost::CostLedger>) -> Self {
        self.cost_ledger = Some(ledger);
        self
    }

    /// The RUNNING stage's report.
    pub fn report(mut self, report: Option<Report>) -> Self {
        self.report = report;
        self
    }

    /// The role (default: the agent id).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = role.into();
        self
    }

    /// Why GAMMA was spawned (for GAMMA).
    pub fn gamma_reason(mut self, reason: Option<GammaReason>) -> Self {
        self.gamma_reason = reason;
        self
    }

    /// The model to ask.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The role's settings (temperature, `max_tokens`, instructions, fallbacks, votes; the
    /// model is set with [`model`](Self::model)). Default: none.
    pub fn role_settings(mut self, settings: RoleSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The quorum the agent follows; keep a clone to pass on the owner's changes.
    pub fn quorum(mut self, quorum: QuorumHandle) -> Self {
        self.quorum = quorum;
        self
    }

    /// The required voters and mediators the agent's votes are decided with (see
    /// [`ConsensusRule`](crate::ConsensusRule)); keep a clone to pass on the owner's changes.
    /// Default: none.
    pub fn approvers(mut self, approvers: crate::quorum::ApproversHandle) -> Self {
        self.approvers = approvers;
        self
    }

    /// Cancels the agent.
    pub fn cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Tokens this agent had already used in the pipeline (counted against its budget).
    pub fn agent_tokens_used(mut self, tokens: u64) -> Self {
        self.agent_tokens_used = tokens;
        self
    }

    /// Tokens and USD the whole pipeline had already used (counted against its budget).
    pub fn pipeline_used(mut self, tokens: u64, cost_usd: f64) -> Self {
        self.pipeline_used = (tokens, cost_usd);
        self
    }
}

impl AgentContext {
    /// A context for an agent running outside the engine that owns its pipeline (a worker).
    #[must_use]
    pub fn detached(p: DetachedContext) -> Self {
        let (hub, _) = tokio::sync::broadcast::channel(16);
        let emitter = crate::emitter::EventEmitter::new(0, p.events, hub);
        let ledger = p.cost_ledger.clone().unwrap_or_else(|| {
            let l = crate::cost::MemoryCostLedger::new();
            l.seed_now(
                &p.pipeline_id,
                crate::cost::Cost::from_usd(p.pipeline_used.1),
                &[],
            );
            Arc::new(l)
        });
        let budget =
            crate::token_budget::PipelineBudget::with_cost_ledger(p.config.budgets, ledger);
        let shared = PipelineState::new(
            p.pipeline_id,
            Arc::from(p.objective.as_str()),
            emitter,
            budget,
            Arc::new(crate::circuit_breaker::CircuitBreaker::new(
                p.config.breaker,
            )),
        )
        .with_report(p.report)
        .with_approvers(p.approvers);
        shared
            .budget()
            .preload(p.pipeline_used.0, p.pipeline_used.1);
        let error_budget = Arc::new(crate::error_budget::CountingErrorBudget::new(
            p.config.error_budget,
        ));
        let ctx = Self::build(
            ContextParts {
                agent_id: p.agent_id,
                role: p.role,
                shared: Arc::new(shared),
                blackboard: p.blackboard,
                bus: p.bus,
                llm: p.llm,
                stack: Arc::new(LlmStack::governed(&RetryPolicy::llm_call(
                    p.config.llm_max_attempts,
                ))),
                model: p.model,
                settings: p.settings,
                config: p.config,
                error_budget,
                cancel: p.cancel,
                gamma_reason: p.gamma_reason,
                guard: None,
            },
            Some(p.quorum),
        );
        ctx.inner.budget.preload(p.agent_tokens_used);
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalLlm, MemoryBlackboard, MemoryBus, MemoryStore};

    fn detached(max_agent: u64, agent_used: u64) -> AgentContext {
        let mut config = Config::default();
        config.budgets.max_tokens_per_agent = max_agent;
        AgentContext::detached(
            DetachedContext::new(
                PipelineId::generate(),
                "Design a caching strategy",
                "ALPHA".parse().unwrap(),
                Arc::new(MemoryBlackboard::default()),
                Arc::new(MemoryBus::default()),
                Arc::new(LocalLlm::default()),
                Arc::new(config),
                Arc::new(MemoryStore::default()),
            )
            .agent_tokens_used(agent_used)
            .pipeline_used(agent_used, 0.0),
        )
    }

    #[tokio::test]
    async fn a_budget_with_too_little_left_is_not_used_up() {
        let ctx = detached(500, 490);
        let err = ctx
            .llm(
                crate::llm::Purpose::Propose,
                vec![crate::llm::ChatMessage::user("research the objective")],
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::BudgetExceeded, "{err}");
        assert!(
            RemoteLink::new(&ctx).budget_exhausted().is_none(),
            "490 of 500: not used up, just too little left"
        );
    }

    #[test]
    fn a_budget_at_its_limit_is_used_up() {
        let ctx = detached(500, 500);
        let why = RemoteLink::new(&ctx).budget_exhausted().expect("used up");
        assert!(why.contains("max_tokens_per_agent"), "{why}");
    }
}
