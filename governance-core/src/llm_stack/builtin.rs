//! The built-in layers of the governed call: retry, token budget, circuit breaker, events
//! (see the module docs of [`super`] for what each does and their default order).

use async_trait::async_trait;

use super::{LlmCall, LlmLayer, Next};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::llm::{LlmRequest, LlmResponse, Usage};
use crate::retry::RetryPolicy;

/// Tries again under one [`RetryPolicy`].
#[derive(Debug)]
pub(super) struct Retry {
    policy: RetryPolicy,
}

impl Retry {
    pub(super) fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

#[async_trait]
impl LlmLayer for Retry {
    async fn call(
        &self,
        call: &LlmCall<'_>,
        request: LlmRequest,
        next: Next<'_>,
    ) -> Result<LlmResponse> {
        let mut schedule = self.policy.schedule(call.agent_id().as_str());
        loop {
            call.check_cancel()?;
            let sent_before = call.sent();
            let e = match next.run(call, request.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            if call.sent() == sent_before
                && let Some(wait) = e.retry_after()
            {
                // refused below before it was sent, told when to come back (an open
                // breaker): not an attempt, the provider was not asked
                call.sleep(wait).await?;
                continue;
            }
            match schedule.next_delay(&e) {
                Some(wait) => call.sleep(wait).await?,
                None => return Err(e),
            }
        }
    }
}

/// Reserves the call's tokens (and, with a money budget, its worst-case cost) before it is
/// sent and settles them with its usage.
#[derive(Debug)]
pub(super) struct TokenBudget;

#[async_trait]
impl LlmLayer for TokenBudget {
    async fn call(
        &self,
        call: &LlmCall<'_>,
        request: LlmRequest,
        next: Next<'_>,
    ) -> Result<LlmResponse> {
        let tokens = u64::from(request.estimated_prompt_tokens()) + u64::from(request.max_tokens);
        let money = super::money::reserve(call, &request).await?;
        let reservation = match call.budget.reserve(tokens) {
            Ok(r) => r,
            Err(e) => {
                if let Some(held) = money {
                    super::money::release(call, held).await;
                }
                return Err(e);
            }
        };
        let sent_before = call.sent();
        let result = next.run(call, request).await;
        if let Some(held) = money {
            super::money::settle(call, held, &result, call.sent() > sent_before).await;
        }
        call.budget
            .settle(reservation, result.as_ref().ok().map(|r| &r.usage));
        call.state.record_agent_usage(
            call.agent_id.as_str(),
            call.budget.tokens_used(),
            call.budget.cost_usd(),
        );
        result
    }
}

/// The pipeline's circuit breaker.
#[derive(Debug)]
pub(super) struct Breaker;

#[async_trait]
impl LlmLayer for Breaker {
    async fn call(
        &self,
        call: &LlmCall<'_>,
        request: LlmRequest,
        next: Next<'_>,
    ) -> Result<LlmResponse> {
        let breaker = call.state.breaker();
        if let Err(open) = breaker.acquire() {
            return Err(provider_down(call).unwrap_or(open));
        }
        let sent_before = call.sent();
        let opened_before = breaker.times_opened();
        let result = next.run(call, request).await;
        if call.sent() == sent_before {
            // refused below: says nothing about the provider
            breaker.release();
            return result;
        }
        breaker.record(result.as_ref().map(|_| ()));
        if call.abandoned() {
            return result;
        }
        if breaker.times_opened() > opened_before {
            call.state
                .emitter()
                .emit(EventKind::Error {
                    pipeline_id: call.pipeline_id().clone(),
                    agent_id: Some(call.agent_id.clone()),
                    kind: "circuit_open".into(),
                    message: format!(
                        "circuit breaker opened after {} consecutive failures",
                        call.config.breaker.failure_threshold
                    ),
                })
                .await?;
        }
        if result.is_err()
            && let Some(down) = provider_down(call)
        {
            return Err(down);
        }
        result
    }
}

/// [`Error::ProviderDown`] when the pipeline's breaker is open and has failed the half-open
/// trials it is allowed: the provider stays down, waiting longer is pointless.
fn provider_down(call: &LlmCall<'_>) -> Option<Error> {
    let o = call.state.breaker().outage(call.config.breaker_trials)?;
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
        call.client.name(),
        o.consecutive_failures,
    )))
}

/// An `llm_call` event per request sent; an `error` event for a call refused below.
#[derive(Debug)]
pub(super) struct Events;

#[async_trait]
impl LlmLayer for Events {
    async fn call(
        &self,
        call: &LlmCall<'_>,
        request: LlmRequest,
        next: Next<'_>,
    ) -> Result<LlmResponse> {
        let sent_before = call.sent();
        let started = tokio::time::Instant::now();
        let asked = request.response_format.kind();
        let result = next.run(call, request).await;
        let emitter = call.state.emitter();
        if call.sent() == sent_before {
            if let Err(e) = &result
                && !matches!(e, Error::Cancelled)
            {
                emitter
                    .emit(EventKind::Error {
                        pipeline_id: call.pipeline_id().clone(),
                        agent_id: Some(call.agent_id.clone()),
                        kind: "llm_refused".into(),
                        message: format!(
                            "LLM call ({:?}) refused before it was sent ({}): {e}",
                            call.purpose,
                            e.kind().as_str()
                        ),
                    })
                    .await?;
            }
            return result;
        }
        if call.abandoned() {
            return result; // the agent stopped waiting: no answer to record
        }
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (model, usage, error, fallback) = match &result {
            Ok(r) => (r.model.clone(), r.usage, None, r.format_fallback),
            Err(e) => (
                call.model.to_owned(),
                Usage::default(),
                Some(e.kind().as_str().to_owned()),
                None,
            ),
        };
        call.state
            .record_llm_usage(result.is_ok().then_some(&usage));
        emitter
            .emit(EventKind::LlmCall {
                pipeline_id: call.pipeline_id().clone(),
                agent_id: call.agent_id.clone(),
                model,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cost_usd: usage.cost_usd,
                latency_ms,
                error,
                response_format: Some(fallback.unwrap_or(asked)),
                format_fallback_from: fallback.map(|_| asked),
            })
            .await?;
        result
    }
}
