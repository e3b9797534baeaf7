//! The governed LLM call as a stack of layers: the [`LlmLayer`] contract (its docs describe
//! the stack and the default order), the call context [`LlmCall`], the rest of the stack
//! [`Next`], and the order an embedder sets ([`LlmStage`]). `builtin.rs` holds the built-in
//! layers (retry, token budget, circuit breaker, events), `send.rs` the client at the bottom.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::state::PipelineState;
use crate::error::{Error, Result};
use crate::ids::{AgentId, PipelineId};
use crate::llm::{LlmClient, LlmRequest, LlmResponse, Purpose};
use crate::retry::RetryPolicy;
use crate::token_budget::AgentBudget;

mod builtin;
mod money;
mod send;

/// The pseudo-recipient of `agent_message` events that carry pieces of an answer being
/// streamed from the model (with `GOVERNANCE_LLM_STREAM=true`).
pub const STREAM_RECIPIENT: &str = "stream";

/// One layer of the governed LLM call ([`AgentContext::llm`](crate::AgentContext::llm)),
/// which is a stack of layers in the spirit of tower's `Layer`: each layer sees the call's context ([`LlmCall`]: pipeline, agent, role, purpose,
/// model) and the request, and hands it on to the rest of the stack ([`Next`]) — or does not.
///
/// The default order, outermost first ([`LlmStage::default_order`]):
///
/// 1. [`LlmStage::Retry`]: tries again under one [`RetryPolicy`] (default
///    [`RetryPolicy::llm_call`] with `Config::llm_max_attempts`). A failure that reached the
///    client counts as an attempt; a refusal from below that names when to come back (an open
///    breaker's `Retry-After`) is waited out and does not count.
/// 2. [`LlmStage::TokenBudget`]: reserves the request's estimated tokens against the agent's
///    and the pipeline's budgets before anything is sent — and, with a money budget set, the
///    call's worst-case cost in the pipeline's [`CostLedger`](crate::CostLedger) (see
///    [`crate::cost`]) — (a call that would pass a budget, or whose model has no known price
///    while a money budget is set, is refused with [`Error::BudgetExceeded`] and never sent),
///    and settles with the usage (money: the provider's reported cost).
/// 3. [`LlmStage::CircuitBreaker`]: the pipeline's breaker lets the call through or refuses it
///    ([`Error::CircuitOpen`], or [`Error::ProviderDown`] once its half-open trials have
///    failed), and records what a sent call's outcome says about the provider.
/// 4. [`LlmStage::Events`]: one `llm_call` event per request sent (model, tokens, cost,
///    latency, error kind; never the prompt), and an `error` event (kind `llm_refused`) for a
///    call a layer below refused before it was sent.
/// 5. The embedder's layers
///    ([`GovernanceBuilder::llm_layer`](crate::GovernanceBuilder::llm_layer)), in the order
///    they were added.
/// 6. The client: stamps the agent's request counter ([`crate::RequestMeta::attempt`]), sends
///    (streaming the answer as `agent_message` events with `Config::stream_llm`), and gives up
///    with [`Error::Cancelled`] when the agent is cancelled.
///
/// The stack is the engine's, set on the builder
/// ([`GovernanceBuilder::llm_stack`](crate::GovernanceBuilder::llm_stack) reorders it and
/// must name every built-in stage once): a role only ever calls
/// [`AgentContext::llm`](crate::AgentContext::llm) / [`ask`](crate::AgentContext::ask) and
/// cannot reach the client past the budget or the breaker.
///
/// # Example
/// A layer that sends every call at temperature 0, refuses GAMMA's (purpose `Mediate`), and
/// counts what it saw:
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use governance_core::{
///     Error, Governance, LlmCall, LlmLayer, LlmRequest, LlmResponse, Next, PipelineStatus,
///     Purpose, Result, SpawnRequest, async_trait,
/// };
///
/// #[derive(Debug, Default)]
/// struct Policy {
///     seen: AtomicUsize,
/// }
///
/// #[async_trait]
/// impl LlmLayer for Policy {
///     async fn call(&self, call: &LlmCall<'_>, mut request: LlmRequest, next: Next<'_>)
///         -> Result<LlmResponse>
///     {
///         self.seen.fetch_add(1, Ordering::Relaxed);
///         if call.purpose() == Purpose::Mediate {
///             // never sent; recorded as an `error` event of kind `llm_refused`
///             return Err(Error::InvalidInput(format!("{} may not mediate", call.agent_id())));
///         }
///         request.temperature = 0.0;
///         next.run(call, request).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<()> {
/// let layer = Arc::new(Policy::default());
/// let gov = Governance::builder().llm_layer(layer.clone()).build()?;
/// let id = gov.spawn(SpawnRequest::new("Design a caching strategy")).await?;
/// let record = gov.wait(&id).await?;
/// assert_eq!(record.status, PipelineStatus::Completed);
/// assert!(layer.seen.load(Ordering::Relaxed) > 0);
/// # Ok(()) }
/// ```
///
/// # Contract
/// - `call` either hands the request on with `next.run(call, request)` (at most once per
///   try; a retrying layer may call it again with a clone of the request) or returns without
///   calling it: the call is then refused and never reaches the client.
/// - It may change the request it hands on (model, temperature, messages); the layers below
///   see the changed request.
/// - A layer is shared by every call of every pipeline of the engine: keep per-call state in
///   `call`'s locals. It must return promptly once [`LlmCall::is_cancelled`] is true (waits
///   through [`LlmCall::sleep`] do).
#[async_trait]
pub trait LlmLayer: Send + Sync + fmt::Debug {
    /// Handles one call: inspect, change, refuse, or hand on to `next`.
    ///
    /// # Errors
    /// Whatever the layer refuses the call with, or what `next` returned.
    async fn call(
        &self,
        call: &LlmCall<'_>,
        request: LlmRequest,
        next: Next<'_>,
    ) -> Result<LlmResponse>;
}

/// A place in the governed call's stack, for
/// [`GovernanceBuilder::llm_stack`](crate::GovernanceBuilder::llm_stack).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LlmStage {
    /// Retries under the engine's LLM [`RetryPolicy`].
    Retry,
    /// The agent's and the pipeline's token and cost budgets.
    TokenBudget,
    /// The pipeline's circuit breaker.
    CircuitBreaker,
    /// `llm_call` events (and `error` events for refused calls).
    Events,
    /// An embedder's own layer.
    Layer(Arc<dyn LlmLayer>),
}

impl LlmStage {
    /// The built-in stages in their default order, outermost first: retry, token budget,
    /// circuit breaker, events (the embedder's layers go below them, above the client).
    #[must_use]
    pub fn default_order() -> Vec<Self> {
        vec![
            Self::Retry,
            Self::TokenBudget,
            Self::CircuitBreaker,
            Self::Events,
        ]
    }
}

/// The resolved stack an engine runs every governed call through.
#[derive(Debug, Clone)]
pub(crate) struct LlmStack {
    layers: Vec<Arc<dyn LlmLayer>>,
}

impl LlmStack {
    /// The default order with `retry` as the Retry stage's policy.
    pub(crate) fn governed(retry: &RetryPolicy) -> Self {
        Self::new(LlmStage::default_order(), Vec::new(), retry)
            .expect("the default order names every built-in stage once")
    }

    /// `order` (outermost first) with `extra` below it, above the client.
    ///
    /// # Errors
    /// [`Error::Config`] when `order` does not name each built-in stage exactly once.
    pub(crate) fn new(
        order: Vec<LlmStage>,
        extra: Vec<Arc<dyn LlmLayer>>,
        retry: &RetryPolicy,
    ) -> Result<Self> {
        let mut seen = [0u8; 4];
        let mut layers: Vec<Arc<dyn LlmLayer>> = Vec::with_capacity(order.len() + extra.len());
        for stage in order {
            let (i, layer): (usize, Arc<dyn LlmLayer>) = match stage {
                LlmStage::Retry => (0, Arc::new(builtin::Retry::new(retry.clone()))),
                LlmStage::TokenBudget => (1, Arc::new(builtin::TokenBudget)),
                LlmStage::CircuitBreaker => (2, Arc::new(builtin::Breaker)),
                LlmStage::Events => (3, Arc::new(builtin::Events)),
                LlmStage::Layer(l) => {
                    layers.push(l);
                    continue;
                }
            };
            seen[i] += 1;
            layers.push(layer);
        }
        if seen != [1; 4] {
            return Err(Error::config(
                "llm_stack",
                format!(
                    "the LLM stack must name each built-in stage exactly once \
                     (Retry, TokenBudget, CircuitBreaker, Events: {seen:?} times)"
                ),
            ));
        }
        layers.extend(extra);
        Ok(Self { layers })
    }

    /// Runs one call through the stack.
    pub(crate) async fn run(&self, call: &LlmCall<'_>, request: LlmRequest) -> Result<LlmResponse> {
        Next {
            layers: &self.layers,
        }
        .run(call, request)
        .await
    }
}

/// The rest of the stack below a layer; [`run`](Self::run) hands the request on. `Copy`, so
/// a retrying layer can run it again.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    layers: &'a [Arc<dyn LlmLayer>],
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("layers_below", &self.layers.len())
            .finish()
    }
}

impl Next<'_> {
    /// Hands `request` to the next layer, or sends it when none is left.
    ///
    /// # Errors
    /// What the layers below or the client return.
    pub async fn run(self, call: &LlmCall<'_>, request: LlmRequest) -> Result<LlmResponse> {
        match self.layers.split_first() {
            Some((layer, rest)) => layer.call(call, request, Next { layers: rest }).await,
            None => send::send(call, request).await,
        }
    }
}

/// What a layer knows about the call it handles: who asks, why, in which pipeline, and how
/// many requests it has sent so far. One per [`AgentContext::llm`](crate::AgentContext::llm)
/// call, shared by all its tries.
pub struct LlmCall<'a> {
    pub(crate) state: &'a PipelineState,
    pub(crate) agent_id: &'a AgentId,
    pub(crate) role: &'a str,
    pub(crate) purpose: Purpose,
    pub(crate) model: &'a str,
    pub(crate) budget: &'a AgentBudget,
    pub(crate) config: &'a Config,
    pub(crate) client: &'a Arc<dyn LlmClient>,
    pub(crate) cancel: &'a CancellationToken,
    /// The agent's counter of requests sent (all its calls).
    pub(crate) requests: &'a AtomicU32,
    /// Requests this call sent.
    pub(crate) sent: AtomicU32,
    /// The agent was cancelled while a request was in flight; the call gave up waiting.
    pub(crate) abandoned: AtomicBool,
}

impl fmt::Debug for LlmCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmCall")
            .field("pipeline_id", self.pipeline_id())
            .field("agent_id", self.agent_id)
            .field("role", &self.role)
            .field("purpose", &self.purpose)
            .field("model", &self.model)
            .field("sent", &self.sent())
            .finish_non_exhaustive()
    }
}

impl LlmCall<'_> {
    /// The pipeline.
    #[must_use]
    pub fn pipeline_id(&self) -> &PipelineId {
        self.state.id()
    }

    /// The calling agent.
    #[must_use]
    pub fn agent_id(&self) -> &AgentId {
        self.agent_id
    }

    /// The calling agent's role.
    #[must_use]
    pub fn role(&self) -> &str {
        self.role
    }

    /// Why the agent asks.
    #[must_use]
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The model the agent asks (the pipeline's).
    #[must_use]
    pub fn model(&self) -> &str {
        self.model
    }

    /// The client's name (e.g. `local`, `openrouter`).
    #[must_use]
    pub fn client_name(&self) -> &str {
        self.client.name()
    }

    /// Requests this call has sent to the client so far (a try refused by a layer is not
    /// one).
    #[must_use]
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Acquire)
    }

    /// Whether the agent must stop (the call then ends with [`Error::Cancelled`]).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Waits `d`, or until the agent is cancelled.
    ///
    /// # Errors
    /// [`Error::Cancelled`] when the agent was cancelled first.
    pub async fn sleep(&self, d: Duration) -> Result<()> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    /// Whether the call gave up waiting for a request in flight because the agent was
    /// cancelled.
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    pub(crate) fn check_cancel(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}
