//! A circuit breaker around LLM calls (seed: 5 consecutive failures → open; half-open after a
//! cool-down lets one trial call through; a success closes it, a failure opens it again).
//! It counts the half-open trials that failed since it last closed and keeps the last failure,
//! so a pipeline can give up on a provider that stays down ([`CircuitBreaker::outage`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::error::{Error, Result};
use crate::llm::{DeltaSink, LlmClient, LlmRequest, LlmResponse};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One trial call is allowed through.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open (for metrics gauges).
    #[must_use]
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
    opens: u64,
    failed_trials: u32,
    last_failure: Option<Error>,
}

/// A breaker that opened and stayed open through its half-open trials (see
/// [`CircuitBreaker::outage`]).
#[derive(Debug, Clone)]
pub struct Outage {
    /// Provider failures in a row (the ones that opened it plus the failed trials).
    pub consecutive_failures: u32,
    /// Half-open trials that failed since the breaker last closed.
    pub failed_trials: u32,
    /// The last failure.
    pub last_failure: Option<Error>,
}

/// A synchronous circuit breaker; cheap to share (`Arc`). Uses tokio's clock, so tests can run
/// it on a paused clock.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Whether an error counts as a provider failure for the breaker: retryable provider errors
/// (429, 5xx, transport), timeouts and backend failures, and a call that a breaker further in
/// refused (a process-wide [`BreakerLlm`] around the client: the provider is known to be down).
/// Requests the provider rejected as invalid (400, 404, ...), refused credentials, budget
/// refusals, cancellation and unparseable model output do not: they say nothing about the
/// provider's health. (A breaker's own refusals never reach its [`CircuitBreaker::record`].)
#[must_use]
pub fn counts_as_failure(e: &Error) -> bool {
    match e {
        Error::Llm(f) => f.retryable,
        Error::Timeout(_)
        | Error::Backend { .. }
        | Error::CircuitOpen { .. }
        | Error::ProviderDown(_) => true,
        _ => false,
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                trial_in_flight: false,
                opens: 0,
                failed_trials: 0,
                last_failure: None,
            }),
        }
    }

    /// The current state (an open breaker whose cool-down passed reports `HalfOpen`).
    #[must_use]
    pub fn state(&self) -> BreakerState {
        let i = self.inner.lock();
        match (i.state, i.opened_at) {
            (BreakerState::Open, Some(at)) if at.elapsed() >= self.config.cooldown => {
                BreakerState::HalfOpen
            }
            (s, _) => s,
        }
    }

    /// How many times the breaker has opened.
    #[must_use]
    pub fn times_opened(&self) -> u64 {
        self.inner.lock().opens
    }

    /// `Some` when the breaker is open (or half-open) and at least `max_trials` half-open
    /// trials have failed since it last closed: the provider stays down, and a caller that
    /// allows `max_trials` trials gives up. With `max_trials` 0, as soon as it is open.
    #[must_use]
    pub fn outage(&self, max_trials: u32) -> Option<Outage> {
        let i = self.inner.lock();
        (i.state != BreakerState::Closed && i.failed_trials >= max_trials).then(|| Outage {
            consecutive_failures: i.consecutive_failures,
            failed_trials: i.failed_trials,
            last_failure: i.last_failure.clone(),
        })
    }

    /// Asks to send one call.
    ///
    /// # Errors
    /// [`Error::CircuitOpen`] with the time left in the cool-down (or a short wait while a
    /// half-open trial call is in flight).
    pub fn acquire(&self) -> Result<()> {
        let mut i = self.inner.lock();
        match i.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let elapsed = i.opened_at.map_or(Duration::MAX, |t| t.elapsed());
                if elapsed >= self.config.cooldown {
                    i.state = BreakerState::HalfOpen;
                    i.trial_in_flight = true;
                    Ok(())
                } else {
                    Err(Error::CircuitOpen {
                        retry_after: self.config.cooldown - elapsed,
                    })
                }
            }
            BreakerState::HalfOpen => {
                if i.trial_in_flight {
                    Err(Error::CircuitOpen {
                        retry_after: Duration::from_millis(100).min(self.config.cooldown),
                    })
                } else {
                    i.trial_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    /// Gives back a call let through by [`acquire`](Self::acquire) that was not sent after
    /// all (refused further in): its outcome says nothing about the provider.
    pub(crate) fn release(&self) {
        self.inner.lock().trial_in_flight = false;
    }

    /// Reports the outcome of a call let through by [`acquire`](Self::acquire).
    pub fn record(&self, outcome: std::result::Result<(), &Error>) {
        let mut i = self.inner.lock();
        i.trial_in_flight = false;
        match outcome {
            Ok(()) => {
                i.state = BreakerState::Closed;
                i.consecutive_failures = 0;
                i.opened_at = None;
                i.failed_trials = 0;
                i.last_failure = None;
            }
            Err(e) if counts_as_failure(e) => {
                i.consecutive_failures = i.consecutive_failures.saturating_add(1);
                i.last_failure = Some(e.clone());
                if i.state == BreakerState::HalfOpen {
                    i.failed_trials = i.failed_trials.saturating_add(1);
                }
                if i.state == BreakerState::HalfOpen
                    || i.consecutive_failures >= self.config.failure_threshold
                {
                    if i.state != BreakerState::Open {
                        i.opens += 1;
                    }
                    i.state = BreakerState::Open;
                    i.opened_at = Some(Instant::now());
                }
            }
            Err(_) => {}
        }
    }
}

/// Any [`LlmClient`] behind a [`CircuitBreaker`]: refused calls return [`Error::CircuitOpen`]
/// without reaching the inner client.
#[derive(Debug, Clone)]
pub struct BreakerLlm {
    inner: Arc<dyn LlmClient>,
    breaker: Arc<CircuitBreaker>,
}

impl BreakerLlm {
    /// Wraps `inner` with `breaker`.
    #[must_use]
    pub fn new(inner: Arc<dyn LlmClient>, breaker: Arc<CircuitBreaker>) -> Self {
        Self { inner, breaker }
    }

    /// The breaker.
    #[must_use]
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }
}

#[async_trait]
impl LlmClient for BreakerLlm {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_model(&self) -> &str {
        self.inner.default_model()
    }

    fn price(&self, model: &str) -> Option<crate::cost::ModelPrice> {
        self.inner.price(model)
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        self.breaker.acquire()?;
        let r = self.inner.complete(request).await;
        self.breaker.record(r.as_ref().map(|_| ()));
        r
    }

    async fn complete_streaming(
        &self,
        request: &LlmRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<LlmResponse> {
        self.breaker.acquire()?;
        let r = self.inner.complete_streaming(request, on_delta).await;
        self.breaker.record(r.as_ref().map(|_| ()));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LlmFailure;

    fn fail() -> Error {
        Error::Llm(LlmFailure {
            status: Some(503),
            provider_code: None,
            message: "down".into(),
            retryable: true,
            retry_after: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_five_consecutive_failures_and_recovers_half_open() {
        let b = CircuitBreaker::new(BreakerConfig::default());
        for _ in 0..4 {
            b.acquire().unwrap();
            b.record(Err(&fail()));
            assert_eq!(b.state(), BreakerState::Closed);
        }
        b.acquire().unwrap();
        b.record(Err(&fail()));
        assert_eq!(b.state(), BreakerState::Open);
        let e = b.acquire().unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.acquire().unwrap();
        assert!(b.acquire().is_err(), "only one trial call while half-open");
        b.record(Ok(()));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.times_opened(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            cooldown: Duration::from_secs(5),
        });
        b.acquire().unwrap();
        b.record(Err(&fail()));
        tokio::time::advance(Duration::from_secs(5)).await;
        b.acquire().unwrap();
        b.record(Err(&fail()));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_an_outage_once_the_allowed_trials_failed_and_forgets_it_on_success() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 2,
            cooldown: Duration::from_secs(5),
        });
        for _ in 0..2 {
            assert!(b.outage(0).is_none(), "closed: no outage");
            b.acquire().unwrap();
            b.record(Err(&fail()));
        }
        let o = b.outage(0).expect("open, and 0 trials allowed");
        assert_eq!((o.consecutive_failures, o.failed_trials), (2, 0));
        assert!(b.outage(1).is_none(), "one trial still allowed");
        for trial in 1..=2 {
            tokio::time::advance(Duration::from_secs(5)).await;
            b.acquire().unwrap();
            b.record(Err(&fail()));
            assert_eq!(b.outage(2).is_some(), trial == 2, "trial {trial}");
        }
        let o = b.outage(2).unwrap();
        assert_eq!((o.consecutive_failures, o.failed_trials), (4, 2));
        assert!(o.last_failure.unwrap().to_string().contains("HTTP 503"));
        tokio::time::advance(Duration::from_secs(5)).await;
        b.acquire().unwrap();
        b.record(Ok(()));
        assert!(b.outage(0).is_none());
        assert!(b.outage(2).is_none());
    }

    #[test]
    fn a_refusal_by_a_breaker_further_in_counts_as_a_failure() {
        let b = CircuitBreaker::new(BreakerConfig::default());
        for _ in 0..5 {
            b.record(Err(&Error::CircuitOpen {
                retry_after: Duration::from_secs(1),
            }));
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_success_resets_the_count_and_non_provider_errors_do_not_count() {
        let b = CircuitBreaker::new(BreakerConfig::default());
        for _ in 0..4 {
            b.record(Err(&fail()));
        }
        b.record(Ok(()));
        for _ in 0..4 {
            b.record(Err(&fail()));
        }
        for _ in 0..10 {
            b.record(Err(&Error::MalformedOutput("prose".into())));
            b.record(Err(&Error::BudgetExceeded("x".into())));
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
