//! The governed LLM call ([`AgentContext::llm`]: the request, run through the engine's layer
//! stack, `crate::llm_stack`) and the lenient ask on top of it ([`AgentContext::ask`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

use super::AgentContext;
use crate::error::{Error, Result};
use crate::llm::{
    ChatMessage, ChatRole, LlmRequest, LlmResponse, Purpose, RequestMeta, ResponseFormat,
};
use crate::llm_stack::LlmCall;
use crate::parse::{LenientParse, response_format_for};

/// The temperature of a role without its own.
pub(crate) const DEFAULT_TEMPERATURE: f32 = 0.2;

/// `messages` with the role's extra `instructions` appended to its (first) system message, or
/// a system message of them put first when there is none.
fn with_instructions(
    messages: Arc<[ChatMessage]>,
    instructions: Option<&str>,
) -> Arc<[ChatMessage]> {
    let Some(extra) = instructions.map(str::trim).filter(|i| !i.is_empty()) else {
        return messages;
    };
    let mut out: Vec<ChatMessage> = messages.to_vec();
    match out.iter_mut().find(|m| m.role == ChatRole::System) {
        Some(sys) => {
            sys.content.push_str("\n\n");
            sys.content.push_str(extra);
        }
        None => out.insert(0, ChatMessage::system(extra)),
    }
    out.into()
}

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
    ///
    /// The answer is asked in the shape of the purpose's answer type
    /// ([`crate::parse::response_format_for`]: a strict JSON schema for the built-in purposes,
    /// JSON mode for [`Purpose::Other`]).
    pub async fn llm(
        &self,
        purpose: Purpose,
        messages: impl Into<Arc<[ChatMessage]>> + Send,
    ) -> Result<LlmResponse> {
        self.llm_as(purpose, messages, response_format_for(purpose))
            .await
    }

    /// [`llm`](Self::llm) asking for the answer in `response_format`.
    async fn llm_as(
        &self,
        purpose: Purpose,
        messages: impl Into<Arc<[ChatMessage]>> + Send,
        response_format: ResponseFormat,
    ) -> Result<LlmResponse> {
        let c = &self.inner;
        self.check_cancel()?;
        let s = &c.settings;
        let messages: Arc<[ChatMessage]> = messages.into();
        let request = LlmRequest {
            model: Some(c.model.clone()),
            fallback_models: s.fallback_models.clone().unwrap_or_default(),
            messages: with_instructions(messages, s.instructions.as_deref()),
            max_tokens: s
                .max_tokens
                .unwrap_or(c.config.budgets.max_completion_tokens)
                .min(c.config.budgets.max_completion_tokens),
            #[allow(clippy::cast_possible_truncation)]
            temperature: s.temperature.map_or(DEFAULT_TEMPERATURE, |t| t as f32),
            response_format,
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

    /// Asks the model for an answer in `T`'s shape ([`LenientParse::response_format`]) and
    /// parses it leniently (whatever format the provider actually served), retrying (within the error budget) on
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
            let outcome = match self
                .llm_as(purpose, messages.clone(), T::response_format())
                .await
            {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_appended_to_the_system_prompt() {
        let msgs: Arc<[ChatMessage]> = vec![
            ChatMessage::system("You are BETA."),
            ChatMessage::user("Judge this."),
        ]
        .into();
        let out = with_instructions(msgs.clone(), Some("  Be strict.  "));
        assert_eq!(out[0].content, "You are BETA.\n\nBe strict.");
        assert_eq!(out[1].content, "Judge this.");
        assert!(Arc::ptr_eq(&with_instructions(msgs.clone(), None), &msgs));
        assert!(Arc::ptr_eq(
            &with_instructions(msgs.clone(), Some(" ")),
            &msgs
        ));
        let bare: Arc<[ChatMessage]> = vec![ChatMessage::user("hi")].into();
        let out = with_instructions(bare, Some("Be brief."));
        assert_eq!(out[0].role, ChatRole::System);
        assert_eq!(out[0].content, "Be brief.");
        assert_eq!(out.len(), 2);
    }
}
