//! [`AgentContext`]: what a role reads, and the writes it makes as itself.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::sync::WaitForCancellationFuture;

use super::board::BoardView;
use crate::blackboard::{Blackboard, Proposal, Solution, Vote, VoteOutcome};
use crate::config::Config;
use crate::engine::state::PipelineState;
use crate::error::{Error, Result};
use crate::error_budget::{BudgetVerdict, ErrorBudget};
use crate::event::{EventKind, GammaReason};
use crate::ids::{AgentId, HandoffId, PipelineId, ProposalId};
use crate::llm::LlmClient;
use crate::llm_stack::LlmStack;
use crate::message_bus::{Message, MessageBus};
use crate::quorum::{Quorum, QuorumHandle};
use crate::role_settings::RoleSettings;
use crate::store::Report;
use crate::token_budget::AgentBudget;

/// Everything an agent works with in one pipeline: the governed path. Cheap to clone.
///
/// Reads: [`objective`](Self::objective), [`report`](Self::report), the blackboard through
/// [`board`](Self::board), messages through an [`inbox`](Self::inbox), its own
/// [`agent_id`](Self::agent_id) and [`role`](Self::role), the [`quorum`](Self::quorum), its
/// [`tokens_used`](Self::tokens_used), cancellation. Writes, always as this agent and always
/// recorded in the ledger: [`create_proposal`](Self::create_proposal), [`vote`](Self::vote),
/// [`add_solution`](Self::add_solution), [`publish`](Self::publish),
/// [`put_partial`](Self::put_partial), [`claim_handoff`](Self::claim_handoff),
/// [`record_error`](Self::record_error). The model is asked through
/// [`llm`](Self::llm) and [`ask`](Self::ask) (token budget, circuit breaker, retries,
/// recording).
///
/// There is no write handle to the blackboard or the bus and no quorum setter:
/// ```compile_fail,E0599
/// # async fn forge(ctx: governance_core::AgentContext) {
/// ctx.set_quorum(1); // a role cannot decide consensus alone
/// # }
/// ```
/// ```compile_fail,E0599
/// # async fn forge(ctx: governance_core::AgentContext) {
/// let bb: &std::sync::Arc<dyn governance_core::Blackboard> = ctx.blackboard(); // no raw handle
/// # }
/// ```
/// ```compile_fail,E0599
/// # async fn forge(ctx: governance_core::AgentContext) {
/// let bus: &std::sync::Arc<dyn governance_core::MessageBus> = ctx.bus(); // no raw handle
/// # }
/// ```
/// Votes, proposals and messages carry this agent's id; there is no parameter to name
/// another voter or sender:
/// ```compile_fail,E0599
/// # async fn forge(ctx: governance_core::AgentContext, p: governance_core::ProposalId) {
/// let beta: governance_core::AgentId = "BETA".parse().unwrap();
/// ctx.vote_as(&beta, &p, true, 1.0, "forged").await;
/// # }
/// ```
///
/// # Example
/// ```
/// use governance_core::{AgentContext, AgentOutcome, Result};
///
/// /// Writes one proposal (endorsed by its author), then tells its partner.
/// async fn propose_once(ctx: &AgentContext) -> Result<AgentOutcome> {
///     if ctx.board().consensus().await?.is_some() {
///         return Ok(AgentOutcome::Idle);
///     }
///     let title = format!("Plan for: {}", ctx.objective());
///     let (proposal, _outcome) = ctx.create_proposal(1, &title, "Cache at the edge.").await?;
///     ctx.publish("BETA", "note", format!("please review {}", proposal.id)).await?;
///     Ok(AgentOutcome::Done)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct AgentContext {
    pub(super) inner: Arc<CtxInner>,
}

#[derive(Debug)]
pub(super) struct CtxInner {
    pub(super) agent_id: AgentId,
    pub(super) role: String,
    pub(super) shared: Arc<PipelineState>,
    pub(super) board: BoardView,
    pub(super) blackboard: Arc<dyn Blackboard>,
    pub(super) bus: Arc<dyn MessageBus>,
    pub(super) llm: Arc<dyn LlmClient>,
    /// The governed call's layers (the engine's; a role cannot change them).
    pub(super) stack: Arc<LlmStack>,
    pub(super) model: String,
    /// The role's settings in this pipeline (temperature, `max_tokens`, instructions, votes).
    pub(super) settings: RoleSettings,
    pub(super) config: Arc<Config>,
    pub(super) error_budget: Arc<dyn ErrorBudget>,
    pub(super) budget: AgentBudget,
    pub(super) cancel: CancellationToken,
    /// Requests this agent sent to the model ([`crate::RequestMeta::attempt`]).
    pub(super) attempt: AtomicU32,
    pub(super) gamma_reason: Option<GammaReason>,
    guard: Option<crate::coordination::Guard>,
    /// The quorum a detached context follows (set by its owner); `None`: the pipeline's.
    pub(super) quorum: Option<QuorumHandle>,
}

/// Parts needed to build a context (crate-internal).
pub(crate) struct ContextParts {
    pub agent_id: AgentId,
    pub role: String,
    pub shared: Arc<PipelineState>,
    pub blackboard: Arc<dyn Blackboard>,
    pub bus: Arc<dyn MessageBus>,
    pub llm: Arc<dyn LlmClient>,
    pub stack: Arc<LlmStack>,
    pub model: String,
    pub settings: RoleSettings,
    pub config: Arc<Config>,
    pub error_budget: Arc<dyn ErrorBudget>,
    pub cancel: CancellationToken,
    pub gamma_reason: Option<GammaReason>,
    /// Checks the blackboard did not lose data before a write is recorded (`None`: a
    /// detached worker context, whose owner's supervisor checks).
    pub guard: Option<crate::coordination::Guard>,
}

impl AgentContext {
    pub(crate) fn new(p: ContextParts) -> Self {
        Self::build(p, None)
    }

    pub(super) fn build(p: ContextParts, quorum: Option<QuorumHandle>) -> Self {
        let budget = p.shared.budget().agent();
        let board = BoardView::new(p.blackboard.clone(), p.shared.id().clone());
        Self {
            inner: Arc::new(CtxInner {
                agent_id: p.agent_id,
                role: p.role,
                shared: p.shared,
                board,
                blackboard: p.blackboard,
                bus: p.bus,
                llm: p.llm,
                stack: p.stack,
                model: p.model,
                settings: p.settings,
                config: p.config,
                error_budget: p.error_budget,
                budget,
                cancel: p.cancel,
                attempt: AtomicU32::new(0),
                gamma_reason: p.gamma_reason,
                guard: p.guard,
                quorum,
            }),
        }
    }

    /// The pipeline.
    #[must_use]
    pub fn pipeline_id(&self) -> &PipelineId {
        self.inner.shared.id()
    }

    /// This agent's id.
    #[must_use]
    pub fn agent_id(&self) -> &AgentId {
        &self.inner.agent_id
    }

    /// This agent's role.
    #[must_use]
    pub fn role(&self) -> &str {
        &self.inner.role
    }

    /// The model this agent asks (its role's setting, else the pipeline's).
    #[must_use]
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// Whether this agent's votes count (its role's `votes` setting; default `true`).
    #[must_use]
    pub fn votes_count(&self) -> bool {
        self.inner.settings.counts_votes()
    }

    /// The pipeline's objective.
    #[must_use]
    pub fn objective(&self) -> &str {
        self.inner.shared.objective()
    }

    /// The RUNNING stage's report.
    #[must_use]
    pub fn report(&self) -> Option<Arc<Report>> {
        self.inner.shared.report()
    }

    /// Human reviewers' rejections of earlier outcomes, oldest first (empty unless the
    /// pipeline is in a revision round after `POST /api/pipeline/{id}/approve` rejected one).
    #[must_use]
    pub fn reviewer_feedback(&self) -> Vec<String> {
        self.inner.shared.reviewer_feedback()
    }

    /// Why GAMMA was spawned (for a GAMMA agent).
    #[must_use]
    pub fn gamma_reason(&self) -> Option<GammaReason> {
        self.inner.gamma_reason
    }

    /// The pipeline's blackboard, read-only (write through this context's methods).
    #[must_use]
    pub fn board(&self) -> &BoardView {
        &self.inner.board
    }

    /// The orchestrator settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The rule this agent's votes are decided with: the [`quorum`](Self::quorum) and the
    /// agents whose approval is required ([`crate::ConsensusRule`]).
    #[must_use]
    pub fn consensus_rule(&self) -> crate::ConsensusRule {
        self.inner.shared.consensus_rule(self.quorum())
    }

    /// Approvals a proposal currently needs.
    #[must_use]
    pub fn quorum(&self) -> Quorum {
        match &self.inner.quorum {
            Some(q) => q.get(),
            None => self.inner.shared.quorum(),
        }
    }

    /// Tokens this agent used.
    #[must_use]
    pub fn tokens_used(&self) -> u64 {
        self.inner.budget.tokens_used()
    }

    /// Whether the agent must stop.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes once the agent must stop (for `tokio::select!`).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.cancel.cancelled()
    }

    pub(super) fn check_cancel(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub(super) async fn sleep(&self, d: Duration) -> Result<()> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.inner.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    /// Records an error against this agent's error budget and emits an `error` event.
    ///
    /// # Errors
    /// [`Error::Revoked`] when the budget is exhausted; the agent must return it.
    pub async fn record_error(&self, error: &Error) -> Result<()> {
        let c = &self.inner;
        let violation = matches!(error, Error::ProcedureViolation(_));
        let verdict = c.error_budget.record(&error.signature(), violation);
        let errors = c.error_budget.counts().total;
        c.shared.record_agent_errors(c.agent_id.as_str(), errors);
        c.shared
            .emitter()
            .emit(EventKind::Error {
                pipeline_id: c.shared.id().clone(),
                agent_id: Some(c.agent_id.clone()),
                kind: error.kind().as_str().to_owned(),
                message: error.to_string(),
            })
            .await?;
        match verdict {
            BudgetVerdict::Continue => Ok(()),
            BudgetVerdict::Revoke(reason) => Err(Error::Revoked(reason)),
        }
    }

    /// Publishes a message on the bus and as an `agent_message` event.
    ///
    /// # Errors
    /// Bus or ledger failures.
    pub async fn publish(&self, to: &str, topic: &str, content: impl Into<String>) -> Result<u64> {
        let c = &self.inner;
        let content = content.into();
        let seq = c
            .bus
            .publish(
                c.shared.id(),
                Message::new(c.agent_id.clone(), to, topic, content.clone()),
            )
            .await?;
        c.shared
            .emitter()
            .emit(EventKind::AgentMessage {
                pipeline_id: c.shared.id().clone(),
                from: c.agent_id.clone(),
                to: to.to_owned(),
                content,
            })
            .await?;
        c.shared.record_progress();
        Ok(seq)
    }

    /// Writes a proposal (id `<agent>-<n>`), endorsed by its author, and tells the others.
    ///
    /// # Errors
    /// Blackboard, bus or ledger failures.
    pub async fn create_proposal(
        &self,
        n: u32,
        title: &str,
        content: &str,
    ) -> Result<(Proposal, VoteOutcome)> {
        let c = &self.inner;
        let id = ProposalId::new(format!("{}-{n}", c.agent_id))?;
        let p = c
            .blackboard
            .create_proposal(
                c.shared.id(),
                Proposal::new(id.clone(), c.agent_id.clone(), title, content),
            )
            .await?;
        self.guard_write().await?;
        c.shared
            .emitter()
            .emit(EventKind::ProposalCreated {
                pipeline_id: c.shared.id().clone(),
                proposal_id: id.clone(),
                author: c.agent_id.clone(),
                title: p.title.clone(),
                content: p.content.clone(),
            })
            .await?;
        c.shared.proposals_changed();
        let outcome = self
            .vote(&id, true, 1.0, "author endorses its proposal")
            .await?;
        self.publish(
            crate::message_bus::BROADCAST,
            "proposal",
            format!("proposal {id}: {}", p.title),
        )
        .await?;
        Ok((p, outcome))
    }

    /// Votes on a proposal at the current quorum; emits `vote_cast` (and `consensus_reached`
    /// when this vote decided the consensus).
    ///
    /// # Errors
    /// Blackboard or ledger failures; [`Error::NotFound`] for an unknown proposal.
    pub async fn vote(
        &self,
        proposal: &ProposalId,
        approve: bool,
        score: f64,
        rationale: &str,
    ) -> Result<VoteOutcome> {
        let c = &self.inner;
        if !c.settings.counts_votes() {
            return Err(Error::ProcedureViolation(format!(
                "{} may not vote: role {}'s votes do not count in this pipeline",
                c.agent_id, c.role
            )));
        }
        let vote = Vote {
            voter: c.agent_id.clone(),
            approve,
            score,
            rationale: rationale.to_owned(),
        };
        let quorum = self.quorum();
        let rule = c.shared.consensus_rule(quorum);
        let out = c
            .blackboard
            .vote(c.shared.id(), proposal, vote, &rule)
            .await?;
        self.guard_write().await?;
        if out.recorded {
            c.shared
                .emitter()
                .emit(EventKind::VoteCast {
                    pipeline_id: c.shared.id().clone(),
                    proposal_id: proposal.clone(),
                    voter: c.agent_id.clone(),
                    approve,
                    approvals: out.approvals,
                    rejections: out.rejections,
                    score,
                    rationale: rationale.to_owned(),
                    quorum: quorum.get(),
                })
                .await?;
            c.shared.proposals_changed();
        }
        // one decision per pipeline (a second one could only come from a blackboard that lost
        // data, which the guard above keeps out)
        if let Some(cons) = out
            .consensus
            .as_ref()
            .filter(|_| !c.shared.consensus_reached())
        {
            c.shared
                .emitter()
                .emit(EventKind::ConsensusReached {
                    pipeline_id: c.shared.id().clone(),
                    proposal_id: cons.proposal_id.clone(),
                    votes: cons.votes,
                })
                .await?;
            c.shared.mark_consensus();
            self.publish(
                crate::message_bus::BROADCAST,
                "consensus",
                format!("consensus on {}", cons.proposal_id),
            )
            .await?;
        }
        c.shared.record_progress();
        Ok(out)
    }

    /// Writes a solution and tells the others.
    ///
    /// # Errors
    /// Blackboard, bus or ledger failures.
    pub async fn add_solution(&self, proposal: Option<ProposalId>, content: &str) -> Result<()> {
        let c = &self.inner;
        c.blackboard
            .add_solution(
                c.shared.id(),
                Solution {
                    agent: c.agent_id.clone(),
                    proposal_id: proposal,
                    content: content.to_owned(),
                    created_at: chrono::Utc::now(),
                },
            )
            .await?;
        self.guard_write().await?;
        c.shared.mark_solution();
        self.publish(
            crate::message_bus::BROADCAST,
            "solution",
            "solution written",
        )
        .await?;
        Ok(())
    }

    /// After a blackboard write, before it is recorded: the blackboard did not lose data since
    /// this agent started (`crate::coordination::Guard`).
    async fn guard_write(&self) -> Result<()> {
        match &self.inner.guard {
            Some(g) => {
                g.still_current(&*self.inner.blackboard, &*self.inner.bus)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Stores a partial result under `<agent>/<key>`.
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn put_partial(&self, key: &str, value: serde_json::Value) -> Result<()> {
        let c = &self.inner;
        c.blackboard
            .put_partial(c.shared.id(), &format!("{}/{key}", c.agent_id), value)
            .await?;
        c.shared.record_progress();
        Ok(())
    }

    /// Claims a handoff (work a failed or revoked agent left) for this agent; `false` when
    /// someone claimed it first.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown handoff; blackboard failures.
    pub async fn claim_handoff(&self, handoff: &HandoffId) -> Result<bool> {
        let c = &self.inner;
        let won = c
            .blackboard
            .claim_handoff(c.shared.id(), handoff, &c.agent_id)
            .await?;
        if won
            && let Some(h) = c
                .board
                .handoffs()
                .await?
                .into_iter()
                .find(|h| &h.id == handoff)
        {
            // this agent now plays the role it took over (its required approval included)
            c.shared.note_claim(h.from, c.agent_id.clone());
        }
        Ok(won)
    }
}
