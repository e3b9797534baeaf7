//! The `Agent` trait and the [`AgentContext`] every agent works through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::blackboard::{Blackboard, Proposal, Solution, Vote, VoteOutcome};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::error_budget::{BudgetVerdict, ErrorBudget};
use crate::event::{EventKind, GammaReason};
use crate::ids::{AgentId, PipelineId, ProposalId};
use crate::llm::{ChatMessage, LlmClient, LlmRequest, LlmResponse, Purpose, RequestMeta};
use crate::message_bus::{Message, MessageBus};
use crate::parse::LenientParse;
use crate::runtime::Shared;
use crate::store::Report;
use crate::token_budget::AgentBudget;

/// The pseudo-recipient of `agent_message` events that carry pieces of an answer being
/// streamed from the model (with `GOVERNANCE_LLM_STREAM=true`).
pub const STREAM_RECIPIENT: &str = "stream";

/// How an agent's run ended (errors are returned as `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentOutcome {
    /// Its work is done.
    Done,
    /// It has nothing (more) to contribute; not a failure.
    Idle,
}

/// One role in a pipeline (`ALPHA`, `BETA`, `GAMMA`, or your own).
///
/// # Contract
/// - `run` works until its part is done, then returns `Ok`. It must return promptly (with
///   `Err(Error::Cancelled)` or `Ok`) once [`AgentContext::is_cancelled`] is true; every
///   `AgentContext` method that waits already does.
/// - It writes only through the context ([`AgentContext::create_proposal`],
///   [`vote`](AgentContext::vote), [`publish`](AgentContext::publish), ...), so every write is
///   in the ledger and the event stream. Reading the raw [`AgentContext::blackboard`] is fine.
/// - Errors it cannot handle are returned: [`Error::Revoked`] when its error budget revoked it
///   (the orchestrator then writes a handoff), anything else marks it failed.
/// - An agent object is shared by all pipelines: keep per-run state inside `run`.
#[async_trait]
pub trait Agent: Send + Sync + std::fmt::Debug {
    /// The role name, `[A-Za-z0-9_-]{1,32}` (used as the agent id).
    fn role(&self) -> &str;

    /// Whether its votes count toward the quorum (default `true`).
    fn votes(&self) -> bool {
        true
    }

    /// Runs the agent for one pipeline.
    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome>;
}

/// Everything an agent works with in one pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentContext {
    inner: Arc<CtxInner>,
}

#[derive(Debug)]
struct CtxInner {
    agent_id: AgentId,
    role: String,
    shared: Arc<Shared>,
    blackboard: Arc<dyn Blackboard>,
    bus: Arc<dyn MessageBus>,
    llm: Arc<dyn LlmClient>,
    model: String,
    config: Arc<Config>,
    error_budget: Arc<dyn ErrorBudget>,
    budget: AgentBudget,
    cancel: CancellationToken,
    attempt: AtomicU32,
    gamma_reason: Option<GammaReason>,
}

/// Where an agent is in the pipeline's message log.
pub struct Inbox {
    after: u64,
    live: Option<BoxStream<'static, Message>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("after", &self.after)
            .field("live", &self.live.is_some())
            .finish()
    }
}

/// Parts needed to build a context (crate-internal).
pub(crate) struct ContextParts {
    pub agent_id: AgentId,
    pub role: String,
    pub shared: Arc<Shared>,
    pub blackboard: Arc<dyn Blackboard>,
    pub bus: Arc<dyn MessageBus>,
    pub llm: Arc<dyn LlmClient>,
    pub model: String,
    pub config: Arc<Config>,
    pub error_budget: Arc<dyn ErrorBudget>,
    pub cancel: CancellationToken,
    pub gamma_reason: Option<GammaReason>,
}

impl AgentContext {
    pub(crate) fn new(p: ContextParts) -> Self {
        let budget = p.shared.budget.agent();
        Self {
            inner: Arc::new(CtxInner {
                agent_id: p.agent_id,
                role: p.role,
                shared: p.shared,
                blackboard: p.blackboard,
                bus: p.bus,
                llm: p.llm,
                model: p.model,
                config: p.config,
                error_budget: p.error_budget,
                budget,
                cancel: p.cancel,
                attempt: AtomicU32::new(0),
                gamma_reason: p.gamma_reason,
            }),
        }
    }

    /// The pipeline.
    #[must_use]
    pub fn pipeline_id(&self) -> &PipelineId {
        &self.inner.shared.id
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

    /// The pipeline's objective.
    #[must_use]
    pub fn objective(&self) -> &str {
        &self.inner.shared.objective
    }

    /// The RUNNING stage's report.
    #[must_use]
    pub fn report(&self) -> Option<Arc<Report>> {
        self.inner.shared.report.lock().clone()
    }

    /// Why GAMMA was spawned (for a GAMMA agent).
    #[must_use]
    pub fn gamma_reason(&self) -> Option<GammaReason> {
        self.inner.gamma_reason
    }

    /// The blackboard (read freely; write through the context's methods).
    #[must_use]
    pub fn blackboard(&self) -> &Arc<dyn Blackboard> {
        &self.inner.blackboard
    }

    /// The orchestrator settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Approvals a proposal currently needs.
    #[must_use]
    pub fn quorum(&self) -> u32 {
        self.inner.shared.quorum()
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

    /// The cancellation token.
    #[must_use]
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    fn check_cancel(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    async fn sleep(&self, d: Duration) -> Result<()> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.inner.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    /// One governed LLM call: token budget reserved first (refused calls are never sent),
    /// the circuit breaker consulted, retryable failures retried up to
    /// `Config::llm_max_attempts` times (honouring `Retry-After`, else exponential backoff with
    /// jitter), every attempt recorded as an `llm_call` event. When the pipeline's breaker is
    /// open and its half-open trials (`Config::breaker_trials`) have failed, the call is not
    /// sent and fails with [`Error::ProviderDown`] naming the cause.
    ///
    /// # Errors
    /// The last attempt's error, [`Error::ProviderDown`], [`Error::BudgetExceeded`] or
    /// [`Error::Cancelled`].
    pub async fn llm(
        &self,
        purpose: Purpose,
        messages: impl Into<Arc<[ChatMessage]>> + Send,
    ) -> Result<LlmResponse> {
        let c = &self.inner;
        let max_tokens = c.config.budgets.max_completion_tokens;
        let mut sent = 0u32;
        let mut request = LlmRequest {
            model: Some(c.model.clone()),
            messages: messages.into(),
            max_tokens,
            temperature: 0.2,
            json: true,
            meta: RequestMeta {
                pipeline_id: c.shared.id.clone(),
                agent_id: c.agent_id.clone(),
                purpose,
                attempt: 0,
            },
        };
        loop {
            self.check_cancel()?;
            request.meta.attempt = c.attempt.load(Ordering::Relaxed);
            let reservation = c
                .budget
                .reserve(u64::from(request.estimated_prompt_tokens()) + u64::from(max_tokens))?;
            if let Err(e) = c.shared.breaker.acquire() {
                c.budget.settle(reservation, None);
                if let Some(down) = self.provider_down() {
                    return Err(down);
                }
                self.sleep(e.retry_after().unwrap_or(Duration::from_secs(1)))
                    .await?;
                continue;
            }
            c.attempt.fetch_add(1, Ordering::Relaxed);
            sent += 1;
            let opened_before = c.shared.breaker.times_opened();
            let started = tokio::time::Instant::now();
            let call = async {
                if c.config.stream_llm {
                    self.complete_streaming(&request).await
                } else {
                    c.llm.complete(&request).await
                }
            };
            let result = tokio::select! {
                r = call => r,
                () = c.cancel.cancelled() => {
                    c.budget.settle(reservation, None);
                    c.shared.breaker.record(Err(&Error::Cancelled));
                    return Err(Error::Cancelled);
                }
            };
            c.shared.breaker.record(result.as_ref().map(|_| ()));
            c.budget
                .settle(reservation, result.as_ref().ok().map(|r| &r.usage));
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (model, usage, error) = match &result {
                Ok(r) => (r.model.clone(), r.usage, None),
                Err(e) => (
                    c.model.clone(),
                    crate::llm::Usage::default(),
                    Some(e.kind().as_str().to_owned()),
                ),
            };
            if result.is_ok() {
                c.shared.usage.lock().add(&usage);
            } else {
                c.shared.usage.lock().calls += 1;
            }
            let tokens = c.budget.tokens_used();
            c.shared
                .update_agent(c.agent_id.as_str(), |a| a.tokens_used = tokens);
            c.shared
                .emitter
                .emit(EventKind::LlmCall {
                    pipeline_id: c.shared.id.clone(),
                    agent_id: c.agent_id.clone(),
                    model,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    cost_usd: usage.cost_usd,
                    latency_ms,
                    error,
                })
                .await?;
            if c.shared.breaker.times_opened() > opened_before {
                c.shared
                    .emitter
                    .emit(EventKind::Error {
                        pipeline_id: c.shared.id.clone(),
                        agent_id: Some(c.agent_id.clone()),
                        kind: "circuit_open".into(),
                        message: format!(
                            "circuit breaker opened after {} consecutive failures",
                            c.config.breaker.failure_threshold
                        ),
                    })
                    .await?;
            }
            if result.is_err()
                && let Some(down) = self.provider_down()
            {
                return Err(down);
            }
            match result {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() && sent < c.config.llm_max_attempts => {
                    let backoff = e
                        .retry_after()
                        .unwrap_or_else(|| backoff(sent, &c.agent_id));
                    self.sleep(backoff).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Error::ProviderDown`] when the pipeline's breaker is open and has failed the half-open
    /// trials it is allowed: the provider stays down, waiting longer is pointless.
    fn provider_down(&self) -> Option<Error> {
        let c = &self.inner;
        let o = c.shared.breaker.outage(c.config.breaker_trials)?;
        let last = o
            .last_failure
            .map_or_else(|| "an unknown error".to_owned(), |e| e.to_string());
        let trials = match o.failed_trials {
            0 => String::new(),
            1 => " and its half-open trial failed too".to_owned(),
            n => format!(" and {n} half-open trials failed too"),
        };
        Some(Error::ProviderDown(format!(
            "the LLM provider ({}) is down: {} calls in a row failed, the last with: {last}; \
             the circuit breaker is open{trials}",
            c.llm.name(),
            o.consecutive_failures,
        )))
    }

    /// A streaming call: pieces of the answer are published as `agent_message` events to the
    /// pseudo-recipient `stream` as they arrive (in chunks of at least 256 bytes, and the rest at
    /// the end), so a UI shows the answer while it is being written.
    async fn complete_streaming(&self, request: &LlmRequest) -> Result<LlmResponse> {
        const CHUNK: usize = 256;
        let c = &self.inner;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let sink = move |delta: &str| {
            let _ = tx.send(delta.to_owned());
        };
        let call = c.llm.complete_streaming(request, &sink);
        tokio::pin!(call);
        let mut buf = String::new();
        let result = loop {
            tokio::select! {
                r = &mut call => break r,
                Some(delta) = rx.recv() => {
                    buf.push_str(&delta);
                    if buf.len() >= CHUNK {
                        self.emit_stream(std::mem::take(&mut buf)).await?;
                    }
                }
            }
        };
        while let Ok(delta) = rx.try_recv() {
            buf.push_str(&delta);
        }
        if !buf.is_empty() {
            self.emit_stream(buf).await?;
        }
        result
    }

    async fn emit_stream(&self, content: String) -> Result<()> {
        let c = &self.inner;
        c.shared
            .emitter
            .emit(EventKind::AgentMessage {
                pipeline_id: c.shared.id.clone(),
                from: c.agent_id.clone(),
                to: STREAM_RECIPIENT.to_owned(),
                content,
            })
            .await
            .map(|_| ())
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
        c.shared
            .update_agent(c.agent_id.as_str(), |a| a.errors = errors);
        c.shared
            .emitter
            .emit(EventKind::Error {
                pipeline_id: c.shared.id.clone(),
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

    /// Asks the model and parses the answer leniently, retrying (within the error budget) on
    /// provider failures and malformed answers. `check` may reject a parsed answer (e.g. a
    /// procedure violation), which also counts against the budget.
    ///
    /// # Errors
    /// [`Error::Revoked`] when the error budget runs out; errors that retrying cannot fix
    /// ([`Error::Unauthorized`], [`Error::BudgetExceeded`], [`Error::Cancelled`], and a
    /// provider outage: [`Error::provider_outage`]) at once.
    pub async fn ask<T: LenientParse + Send>(
        &self,
        purpose: Purpose,
        messages: Vec<ChatMessage>,
        check: impl Fn(&T) -> Result<()> + Send + Sync,
    ) -> Result<T> {
        let messages: Arc<[ChatMessage]> = messages.into();
        loop {
            let outcome = match self.llm(purpose, messages.clone()).await {
                Ok(resp) => T::parse_response(&resp).and_then(|t| check(&t).map(|()| t)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(t) => return Ok(t),
                Err(e @ (Error::Unauthorized(_) | Error::BudgetExceeded(_) | Error::Cancelled)) => {
                    return Err(e);
                }
                // the provider cannot serve the pipeline: not the agent's error to count
                Err(e) if e.provider_outage().is_some() => return Err(e),
                Err(e) => self.record_error(&e).await?,
            }
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
                &c.shared.id,
                Message::new(c.agent_id.clone(), to, topic, content.clone()),
            )
            .await?;
        c.shared
            .emitter
            .emit(EventKind::AgentMessage {
                pipeline_id: c.shared.id.clone(),
                from: c.agent_id.clone(),
                to: to.to_owned(),
                content,
            })
            .await?;
        c.shared.progressed();
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
                &c.shared.id,
                Proposal::new(id.clone(), c.agent_id.clone(), title, content),
            )
            .await?;
        c.shared
            .emitter
            .emit(EventKind::ProposalCreated {
                pipeline_id: c.shared.id.clone(),
                proposal_id: id.clone(),
                author: c.agent_id.clone(),
                title: p.title.clone(),
                content: p.content.clone(),
            })
            .await?;
        c.shared.proposals_changed.store(true, Ordering::Release);
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
        let vote = Vote {
            voter: c.agent_id.clone(),
            approve,
            score,
            rationale: rationale.to_owned(),
        };
        let quorum = c.shared.quorum();
        let out = c
            .blackboard
            .vote(&c.shared.id, proposal, vote, quorum)
            .await?;
        if out.recorded {
            c.shared
                .emitter
                .emit(EventKind::VoteCast {
                    pipeline_id: c.shared.id.clone(),
                    proposal_id: proposal.clone(),
                    voter: c.agent_id.clone(),
                    approve,
                    approvals: out.approvals,
                    rejections: out.rejections,
                    score,
                    rationale: rationale.to_owned(),
                    quorum,
                })
                .await?;
            c.shared.proposals_changed.store(true, Ordering::Release);
        }
        if let Some(cons) = &out.consensus {
            c.shared
                .emitter
                .emit(EventKind::ConsensusReached {
                    pipeline_id: c.shared.id.clone(),
                    proposal_id: cons.proposal_id.clone(),
                    votes: cons.votes,
                })
                .await?;
            c.shared.consensus.store(true, Ordering::Release);
            self.publish(
                crate::message_bus::BROADCAST,
                "consensus",
                format!("consensus on {}", cons.proposal_id),
            )
            .await?;
        }
        c.shared.progressed();
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
                &c.shared.id,
                Solution {
                    agent: c.agent_id.clone(),
                    proposal_id: proposal,
                    content: content.to_owned(),
                    created_at: chrono::Utc::now(),
                },
            )
            .await?;
        c.shared.solution.store(true, Ordering::Release);
        self.publish(
            crate::message_bus::BROADCAST,
            "solution",
            "solution written",
        )
        .await?;
        Ok(())
    }

    /// Stores a partial result under `<agent>/<key>`.
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn put_partial(&self, key: &str, value: serde_json::Value) -> Result<()> {
        let c = &self.inner;
        c.blackboard
            .put_partial(&c.shared.id, &format!("{}/{key}", c.agent_id), value)
            .await?;
        c.shared.progressed();
        Ok(())
    }

    /// An inbox positioned at the start of the pipeline's message log, subscribed live.
    ///
    /// # Errors
    /// Bus failures.
    pub async fn inbox(&self) -> Result<Inbox> {
        let live = self.inner.bus.subscribe(&self.inner.shared.id).await.ok();
        Ok(Inbox { after: 0, live })
    }

    /// Waits until there is something new in the message log (or the poll interval passes),
    /// then returns the new messages addressed to this agent (possibly none).
    ///
    /// # Errors
    /// [`Error::Cancelled`] once cancelled; bus failures.
    pub async fn wait_messages(&self, inbox: &mut Inbox) -> Result<Vec<Message>> {
        self.check_cancel()?;
        let c = &self.inner;
        let mut fresh = c.bus.read(&c.shared.id, inbox.after, 256).await?;
        if fresh.is_empty() {
            let poll = c.config.agent_poll_interval;
            match inbox.live.as_mut() {
                Some(live) => tokio::select! {
                    _ = live.next() => {},
                    () = tokio::time::sleep(poll) => {},
                    () = c.cancel.cancelled() => return Err(Error::Cancelled),
                },
                None => self.sleep(poll).await?,
            }
            fresh = c.bus.read(&c.shared.id, inbox.after, 256).await?;
        }
        if let Some(last) = fresh.last() {
            inbox.after = last.seq;
        }
        Ok(fresh
            .into_iter()
            .filter(|m| m.is_for(&c.agent_id))
            .collect())
    }
}

/// The parts of an [`AgentContext`] for an agent that runs outside the engine owning its
/// pipeline: in a worker process (see `governance-redis`'s `Worker`). Its events go to
/// `events` (which forwards them to the owner) instead of the owner's ledger; the owner
/// records them with [`AgentContext::record_remote`].
#[derive(Debug)]
#[non_exhaustive]
pub struct DetachedContext {
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// Its objective.
    pub objective: String,
    /// The RUNNING stage's report, when there is one.
    pub report: Option<Report>,
    /// The agent's id (its role name for built-in roles).
    pub agent_id: AgentId,
    /// The role.
    pub role: String,
    /// Why GAMMA was spawned (for GAMMA).
    pub gamma_reason: Option<GammaReason>,
    /// The shared blackboard.
    pub blackboard: Arc<dyn Blackboard>,
    /// The shared bus.
    pub bus: Arc<dyn MessageBus>,
    /// The LLM client.
    pub llm: Arc<dyn LlmClient>,
    /// The model to ask.
    pub model: String,
    /// Settings (budgets, poll interval, ...).
    pub config: Arc<Config>,
    /// Where the agent's events go (`seq`s assigned there are local and meaningless).
    pub events: Arc<dyn crate::store::LedgerStore>,
    /// Approvals a proposal needs.
    pub quorum: u32,
    /// Cancels the agent.
    pub cancel: CancellationToken,
    /// Tokens this agent had already used in the pipeline (counted against its budget).
    pub agent_tokens_used: u64,
    /// Tokens and USD the whole pipeline had already used (counted against its budget).
    pub pipeline_used: (u64, f64),
}

impl DetachedContext {
    /// Parts with the given pipeline, agent and backends; the rest from `config`
    /// (quorum 2, no report, no GAMMA reason, model from the config).
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pipeline_id: PipelineId,
        objective: impl Into<String>,
        agent_id: AgentId,
        blackboard: Arc<dyn Blackboard>,
        bus: Arc<dyn MessageBus>,
        llm: Arc<dyn LlmClient>,
        config: Arc<Config>,
        events: Arc<dyn crate::store::LedgerStore>,
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
            config,
            events,
            quorum: 2,
            cancel: CancellationToken::new(),
            agent_tokens_used: 0,
            pipeline_used: (0, 0.0),
        }
    }
}

impl AgentContext {
    /// A context for an agent running outside the engine that owns its pipeline (a worker).
    #[must_use]
    pub fn detached(p: DetachedContext) -> Self {
        let (hub, _) = tokio::sync::broadcast::channel(16);
        let emitter = crate::emitter::EventEmitter::new(p.pipeline_id.clone(), 0, p.events, hub);
        let shared = Shared::new(
            p.pipeline_id,
            Arc::from(p.objective.as_str()),
            emitter,
            crate::token_budget::PipelineBudget::new(p.config.budgets),
            Arc::new(crate::circuit_breaker::CircuitBreaker::new(
                p.config.breaker,
            )),
        );
        *shared.report.lock() = p.report.map(Arc::new);
        shared.quorum.store(p.quorum.max(1), Ordering::Release);
        shared.budget.preload(p.pipeline_used.0, p.pipeline_used.1);
        let error_budget = Arc::new(crate::error_budget::CountingErrorBudget::new(
            p.config.error_budget,
        ));
        let agent_tokens_used = p.agent_tokens_used;
        let ctx = Self::new(ContextParts {
            agent_id: p.agent_id,
            role: p.role,
            shared: Arc::new(shared),
            blackboard: p.blackboard,
            bus: p.bus,
            llm: p.llm,
            model: p.model,
            config: p.config,
            error_budget,
            cancel: p.cancel,
            gamma_reason: p.gamma_reason,
        });
        ctx.inner.budget.preload(agent_tokens_used);
        ctx
    }

    /// Why this agent may make no more LLM calls (its own or the pipeline's token or cost
    /// budget is used up), if that is so.
    #[must_use]
    pub fn budget_exhausted(&self) -> Option<String> {
        let b = &self.inner.budget;
        let max = b.pipeline().config().max_tokens_per_agent;
        if b.tokens_used() >= max {
            return Some(format!(
                "agent used {} tokens of max_tokens_per_agent {max}",
                b.tokens_used()
            ));
        }
        b.pipeline().exhausted()
    }

    /// Tokens and USD the whole pipeline used so far (as this engine knows it).
    #[must_use]
    pub fn pipeline_used(&self) -> (u64, f64) {
        let b = self.inner.budget.pipeline();
        (b.tokens_used(), b.cost_usd())
    }

    /// The model this agent asks.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The pipeline's message bus (read freely; publish through [`publish`](Self::publish)).
    #[must_use]
    pub fn bus(&self) -> &Arc<dyn MessageBus> {
        &self.inner.bus
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
        let c = &self.inner;
        if kind.pipeline_id() != &c.shared.id {
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
                if !c
                    .shared
                    .recorded
                    .lock()
                    .proposals
                    .insert(proposal_id.clone())
                {
                    return Ok(()); // replayed after a takeover: already in the ledger
                }
                c.shared.proposals_changed.store(true, Ordering::Release);
            }
            EventKind::VoteCast {
                voter, proposal_id, ..
            } if voter == me => {
                if !c
                    .shared
                    .recorded
                    .lock()
                    .votes
                    .insert((proposal_id.clone(), voter.clone()))
                {
                    return Ok(());
                }
                c.shared.proposals_changed.store(true, Ordering::Release);
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
                    c.shared.usage.lock().add(&usage);
                    // the remote call counts against this agent's and the pipeline's budgets
                    c.budget.charge(&usage);
                } else {
                    c.shared.usage.lock().calls += 1;
                }
                let tokens = c.budget.tokens_used();
                c.shared
                    .update_agent(me.as_str(), |a| a.tokens_used = tokens);
            }
            EventKind::Error {
                agent_id: Some(a), ..
            } if a == me => {}
            EventKind::ConsensusReached { .. } if c.shared.consensus.load(Ordering::Acquire) => {
                return Ok(()); // already recorded (a report replayed after a takeover)
            }
            EventKind::ConsensusReached { proposal_id, .. } => {
                let decided = c.blackboard.snapshot(&c.shared.id).await?.consensus;
                if decided.as_ref().map(|d| &d.proposal_id) != Some(proposal_id) {
                    return Err(Error::InvalidInput(format!(
                        "a remote consensus on {proposal_id} that the blackboard does not show"
                    )));
                }
                c.shared.consensus.store(true, Ordering::Release);
            }
            other => {
                return Err(Error::InvalidInput(format!(
                    "a remote agent may not report a {} event about someone else",
                    other.type_name()
                )));
            }
        }
        c.shared.emitter.emit(kind).await?;
        c.shared.progressed();
        Ok(())
    }

    /// Records this agent's proposals and votes that are on the blackboard but whose reports
    /// never arrived (a remote agent that died between writing and reporting), so the ledger
    /// stays a complete account of what the agent did. Returns how many were recorded.
    ///
    /// # Errors
    /// Blackboard or ledger failures.
    pub async fn reconcile_remote(&self) -> Result<usize> {
        let c = &self.inner;
        let snap = c.blackboard.snapshot(&c.shared.id).await?;
        let n = c.shared.record_unrecorded(&snap, Some(&c.agent_id)).await?;
        if n > 0 {
            c.shared.proposals_changed.store(true, Ordering::Release);
            c.shared.progressed();
        }
        Ok(n)
    }

    /// Re-reads the blackboard and marks a solution as written when there is one (after a
    /// remote agent wrote it).
    ///
    /// # Errors
    /// Blackboard failures.
    pub async fn sync_solution(&self) -> Result<()> {
        let c = &self.inner;
        if !c.shared.solution.load(Ordering::Acquire)
            && !c
                .blackboard
                .snapshot(&c.shared.id)
                .await?
                .solutions
                .is_empty()
        {
            c.shared.solution.store(true, Ordering::Release);
            c.shared.progressed();
        }
        Ok(())
    }

    /// The quorum, as a remote agent's owner last set it (for a detached context).
    pub fn set_quorum(&self, quorum: u32) {
        self.inner
            .shared
            .quorum
            .store(quorum.max(1), Ordering::Release);
    }
}

/// Exponential backoff with deterministic jitter: 250 ms × 2^(n-1), capped at 8 s, ±25 %.
fn backoff(attempt: u32, agent: &AgentId) -> Duration {
    let base = 250u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(5))
        .min(8_000);
    let h = agent.as_str().bytes().fold(u64::from(attempt), |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let jitter = (h % 51) as i64 - 25; // -25..=25 %
    let ms = i64::try_from(base).unwrap_or(8_000) * (100 + jitter) / 100;
    Duration::from_millis(u64::try_from(ms).unwrap_or(250))
}
