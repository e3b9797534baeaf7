//! The governed LLM call ([`AgentContext::llm`]: the request, run through the engine's layer
//! stack, `crate::llm_stack`) and the lenient ask on top of it ([`AgentContext::ask`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

use super::AgentContext;
use crate::error::{Error, Result};
use crate::llm::{ChatMessage, LlmRequest, LlmResponse, Purpose, RequestMeta};
use crate::llm_stack::LlmCall;
use crate::parse::LenientParse;

impl AgentContext {
    /// One governed LLM call, through the engine's stack of [`LlmLayer`](crate::LlmLayer)s
    /// (default order: retry, token budget, circuit breaker, events, the embedder's layers,
    /// the client): token budget reserved first (refused calls are never sent), the circuit
    /// breaker consulted, retryable failures retried under the engine's LLM
    /// [`RetryPolicy`](crate::RetryPolicy) (default `Config::llm_max_attempts` sends,
    /// honouring `Retry-After`, else exponential backoff with deterministic jitter), every
    /// request sent recorded as an `llm_call` event. When the pipeline's breaker is open and
    /// its half-open trials (`Config::breaker_trials`) have failed, the call is not sent and
    /// fails with [`Error::ProviderDown`] naming the cause.
    ///
    /// # Errors
    /// The last attempt's error, [`Error::ProviderDown`], [`Error::BudgetExceeded`],
    /// [`Error::Cancelled`], or what an embedder's layer refused the call with.
    pub async fn llm(
        &self,
        purpose: Purpose,
        messages: impl Into<Arc<[ChatMessage]>> + Send,
    ) -> Result<LlmResponse> {
        let c = &self.inner;
        self.check_cancel()?;
        let request = LlmRequest {
            model: Some(c.model.clone()),
            messages: messages.into(),
            max_tokens: c.config.budgets.max_completion_tokens,
            temperature: 0.2,
            json: true,
            meta: RequestMeta {
                pipeline_id: c.shared.id().clone(),
                agent_id: c.agent_id.clone(),
                purpose,
                attempt: 0, // stamped when it is sent
            },
        };
        let call = LlmCall {
            state: &c.shared,
            agent_id: &c.agent_id,
            role: &c.role,
            purpose,
            model: &c.model,
            budget: &c.budget,
            config: &c.config,
            client: &c.llm,
            cancel: &c.cancel,
            requests: &c.attempt,
            sent: AtomicU32::new(0),
            abandoned: AtomicBool::new(false),
        };
        c.stack.run(&call, request).await
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
}
