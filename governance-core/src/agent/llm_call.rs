//! The governed LLM call ([`AgentContext::llm`]) and the lenient ask on top of it
//! ([`AgentContext::ask`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{AgentContext, STREAM_RECIPIENT};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::llm::{ChatMessage, LlmRequest, LlmResponse, Purpose, RequestMeta};
use crate::parse::LenientParse;
use crate::retry::RetryPolicy;

impl AgentContext {
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
        let mut schedule =
            RetryPolicy::llm_call(c.config.llm_max_attempts).schedule(c.agent_id.as_str());
        let mut request = LlmRequest {
            model: Some(c.model.clone()),
            messages: messages.into(),
            max_tokens,
            temperature: 0.2,
            json: true,
            meta: RequestMeta {
                pipeline_id: c.shared.id().clone(),
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
            if let Err(e) = c.shared.breaker().acquire() {
                c.budget.settle(reservation, None);
                if let Some(down) = self.provider_down() {
                    return Err(down);
                }
                self.sleep(e.retry_after().unwrap_or(Duration::from_secs(1)))
                    .await?;
                continue;
            }
            c.attempt.fetch_add(1, Ordering::Relaxed);
            let opened_before = c.shared.breaker().times_opened();
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
                    c.shared.breaker().record(Err(&Error::Cancelled));
                    return Err(Error::Cancelled);
                }
            };
            c.shared.breaker().record(result.as_ref().map(|_| ()));
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
            c.shared.record_llm_call(
                c.agent_id.as_str(),
                result.is_ok().then_some(&usage),
                c.budget.tokens_used(),
            );
            c.shared
                .emitter()
                .emit(EventKind::LlmCall {
                    pipeline_id: c.shared.id().clone(),
                    agent_id: c.agent_id.clone(),
                    model,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    cost_usd: usage.cost_usd,
                    latency_ms,
                    error,
                })
                .await?;
            if c.shared.breaker().times_opened() > opened_before {
                c.shared
                    .emitter()
                    .emit(EventKind::Error {
                        pipeline_id: c.shared.id().clone(),
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
                Err(e) if e.is_retryable() => match schedule.next_delay(&e) {
                    Some(wait) => self.sleep(wait).await?,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Error::ProviderDown`] when the pipeline's breaker is open and has failed the half-open
    /// trials it is allowed: the provider stays down, waiting longer is pointless.
    fn provider_down(&self) -> Option<Error> {
        let c = &self.inner;
        let o = c.shared.breaker().outage(c.config.breaker_trials)?;
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
            .emitter()
            .emit(EventKind::AgentMessage {
                pipeline_id: c.shared.id().clone(),
                from: c.agent_id.clone(),
                to: STREAM_RECIPIENT.to_owned(),
                content,
            })
            .await
            .map(|_| ())
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
