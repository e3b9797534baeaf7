//! [`RetryPolicy`]: the one backoff schedule of every retry loop in the engine.
//!
//! Four loops wait and try again, each with its own preset (which keeps the delays and limits
//! they always had):
//!
//! | loop | preset | delays | tries |
//! |---|---|---|---|
//! | a governed LLM call (the `Retry` layer) | [`RetryPolicy::llm_call`] | `Retry-After`, else 250 ms doubling to 8 s, ±25 % jitter seeded by the agent id | `Config::llm_max_attempts` |
//! | an agent that hit a transient backend error (the supervisor restarts it) | [`RetryPolicy::agent_restart`] | 500 ms doubling to 8 s | 9 runs (8 restarts) |
//! | a pipeline's durable write (ledger, checkpoint, record) | [`RetryPolicy::durable_write`] | 100 ms doubling to 5 s | unbounded (until shutdown) |
//! | the blackboard read of a checkpoint | [`RetryPolicy::checkpoint_read`] | 100 ms doubling to 3 s | 9 reads |
//!
//! A policy only computes the schedule; what is retried (which errors), how a wait is
//! cancelled, and what is logged stays with each loop.

use std::time::Duration;

use crate::error::Error;

/// When to try again after a failure: exponential backoff (`initial_delay`, multiplied by
/// `multiplier` after each failure, never longer than `max_delay`), at most `max_attempts`
/// tries in all (the first included; `None`: no limit), optionally the wait an error asks for
/// ([`Error::retry_after`]) instead of the backoff, and optionally a jitter that is a
/// deterministic function of a seed (no randomness: the same seed and attempt always wait the
/// same time, so paused-clock tests and replays see the same delays).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use governance_core::{Error, RetryPolicy};
///
/// let policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1))
///     .with_max_attempts(Some(4));
/// let mut schedule = policy.schedule("seed");
/// let busy = Error::backend("sqlite", "database is locked", true);
/// let delays: Vec<_> = std::iter::from_fn(|| schedule.next_delay(&busy)).collect();
/// // 4 tries in all: 3 waits, doubling
/// assert_eq!(delays, [100, 200, 400].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub initial_delay: Duration,
    /// What each further wait is multiplied by (at least 1).
    pub multiplier: u32,
    /// The longest wait.
    pub max_delay: Duration,
    /// Tries in all, the first included; `None`: retry until the caller stops.
    pub max_attempts: Option<u32>,
    /// Wait what the error asks for ([`Error::retry_after`]) when it says, instead of the
    /// backoff.
    pub honour_retry_after: bool,
    /// Spread each backoff by up to ± this many percent (0..=100), a deterministic function of
    /// the schedule's seed and the attempt. 0: no jitter.
    pub jitter_percent: u8,
}

impl RetryPolicy {
    /// `initial_delay` doubling up to `max_delay`, unbounded, honouring `Retry-After`, no
    /// jitter.
    #[must_use]
    pub fn new(initial_delay: Duration, max_delay: Duration) -> Self {
        Self {
            initial_delay,
            multiplier: 2,
            max_delay,
            max_attempts: None,
            honour_retry_after: true,
            jitter_percent: 0,
        }
    }

    /// A governed LLM call: the wait the provider asks for (`Retry-After`), else 250 ms × 2^(n-1)
    /// capped at 8 s, ±25 % jitter seeded by the calling agent, `max_attempts` sends in all
    /// (the engine passes `Config::llm_max_attempts`, default 3).
    #[must_use]
    pub fn llm_call(max_attempts: u32) -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(8))
            .with_max_attempts(Some(max_attempts))
            .with_jitter_percent(25)
    }

    /// An agent that failed with a transient backend error and is run again by the supervisor:
    /// 500 ms, 1 s, 2 s, 4 s, then 8 s; 9 runs in all (8 restarts). `Retry-After` is not
    /// consulted (backend errors carry none).
    #[must_use]
    pub fn agent_restart() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(8))
            .with_max_attempts(Some(9))
            .with_honour_retry_after(false)
    }

    /// A pipeline's durable write (ledger event, checkpoint, record): 100 ms doubling to 5 s,
    /// for as long as it takes (only the engine's shutdown ends the wait).
    #[must_use]
    pub fn durable_write() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5)).with_honour_retry_after(false)
    }

    /// The blackboard read a checkpoint needs: 100 ms doubling to 3 s, 9 reads in all (about
    /// 12 s of waiting).
    #[must_use]
    pub fn checkpoint_read() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(3))
            .with_max_attempts(Some(9))
            .with_honour_retry_after(false)
    }

    /// Sets [`initial_delay`](Self::initial_delay).
    #[must_use]
    pub fn with_initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// Sets [`multiplier`](Self::multiplier) (at least 1).
    #[must_use]
    pub fn with_multiplier(mut self, m: u32) -> Self {
        self.multiplier = m.max(1);
        self
    }

    /// Sets [`max_delay`](Self::max_delay).
    #[must_use]
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts) (`None`: unbounded).
    #[must_use]
    pub fn with_max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets [`honour_retry_after`](Self::honour_retry_after).
    #[must_use]
    pub fn with_honour_retry_after(mut self, yes: bool) -> Self {
        self.honour_retry_after = yes;
        self
    }

    /// Sets [`jitter_percent`](Self::jitter_percent) (at most 100).
    #[must_use]
    pub fn with_jitter_percent(mut self, p: u8) -> Self {
        self.jitter_percent = p.min(100);
        self
    }

    /// Whether another try is allowed after `failures` failed tries.
    #[must_use]
    pub fn allows(&self, failures: u32) -> bool {
        self.max_attempts.is_none_or(|max| failures < max)
    }

    /// The backoff after the `failure`-th failed try (1 = the first), jittered by `seed`;
    /// `Retry-After` is not consulted.
    #[must_use]
    pub fn backoff(&self, failure: u32, seed: &str) -> Duration {
        let mut d = self.initial_delay.min(self.max_delay);
        // 64 doublings pass any Duration: more steps change nothing
        for _ in 1..failure.min(64) {
            if d >= self.max_delay {
                break;
            }
            d = d.saturating_mul(self.multiplier.max(1)).min(self.max_delay);
        }
        if self.jitter_percent == 0 {
            return d;
        }
        let p = i128::from(self.jitter_percent);
        let h = seed.bytes().fold(u64::from(failure), |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        let jitter = i128::from(h % (2 * u64::from(self.jitter_percent) + 1)) - p; // -p..=p %
        let ms = i128::try_from(d.as_millis()).unwrap_or(i128::MAX / 200) * (100 + jitter) / 100;
        Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(u64::MAX))
    }

    /// The wait after the `failure`-th failed try with `error`: its `Retry-After` when the
    /// policy honours it and the error names one, else [`backoff`](Self::backoff).
    #[must_use]
    pub fn delay(&self, failure: u32, error: &Error, seed: &str) -> Duration {
        match error.retry_after() {
            Some(d) if self.honour_retry_after => d,
            _ => self.backoff(failure, seed),
        }
    }

    /// A schedule that counts failures (the jitter seeded by `seed`, e.g. the agent id).
    #[must_use]
    pub fn schedule(&self, seed: &str) -> Schedule {
        Schedule {
            policy: self.clone(),
            seed: seed.to_owned(),
            failures: 0,
        }
    }
}

/// One retry loop's progress through a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: RetryPolicy,
    seed: String,
    failures: u32,
}

impl Schedule {
    /// Counts one failed try with `error` and returns how long to wait before the next, or
    /// `None` when the policy allows no more tries.
    pub fn next_delay(&mut self, error: &Error) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        self.policy
            .allows(self.failures)
            .then(|| self.policy.delay(self.failures, error, &self.seed))
    }

    /// Failed tries counted so far.
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    fn delays(policy: &RetryPolicy, error: &Error, seed: &str, cap: usize) -> Vec<Duration> {
        let mut s = policy.schedule(seed);
        std::iter::from_fn(|| s.next_delay(error))
            .take(cap)
            .collect()
    }

    fn backend() -> Error {
        Error::backend("redis", "connection refused", true)
    }

    /// The formula the LLM call used before the policy existed: 250 ms × 2^(n-1) capped at
    /// 8 s, ±25 % from a hash of the agent id and n.
    fn former_llm_backoff(attempt: u32, agent: &str) -> Duration {
        let base = 250u64
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(5))
            .min(8_000);
        let h = agent.bytes().fold(u64::from(attempt), |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        let jitter = (h % 51) as i64 - 25;
        let ms = i64::try_from(base).unwrap() * (100 + jitter) / 100;
        Duration::from_millis(u64::try_from(ms).unwrap())
    }

    #[test]
    fn the_llm_preset_keeps_the_former_delays_and_limit() {
        for agent in ["ALPHA", "BETA", "GAMMA-1", "REPORTER", "x"] {
            let got = delays(&RetryPolicy::llm_call(12), &backend(), agent, 100);
            let want: Vec<_> = (1..12).map(|n| former_llm_backoff(n, agent)).collect();
            assert_eq!(got, want, "{agent}");
        }
        // 3 sends in all: 2 waits
        assert_eq!(
            delays(&RetryPolicy::llm_call(3), &backend(), "ALPHA", 100).len(),
            2
        );
        assert!(delays(&RetryPolicy::llm_call(1), &backend(), "ALPHA", 100).is_empty());
    }

    #[test]
    fn the_llm_preset_waits_what_the_provider_asks() {
        let limited = Error::Llm(crate::error::LlmFailure {
            status: Some(429),
            provider_code: None,
            message: "slow down".into(),
            retryable: true,
            retry_after: Some(Duration::from_secs(7)),
        });
        assert_eq!(
            delays(&RetryPolicy::llm_call(3), &limited, "ALPHA", 100),
            ms(&[7000, 7000])
        );
    }

    #[test]
    fn the_agent_restart_preset_keeps_the_former_delays_and_limit() {
        // formerly 250 ms × 2^min(n, 5) for restart n = 1..=8
        let want: Vec<_> = (1..=8u32)
            .map(|n| Duration::from_millis(250 * (1 << n.min(5))))
            .collect();
        assert_eq!(
            delays(&RetryPolicy::agent_restart(), &backend(), "ALPHA", 100),
            want
        );
        let limited = Error::CircuitOpen {
            retry_after: Duration::from_secs(60),
        };
        assert_eq!(
            delays(&RetryPolicy::agent_restart(), &limited, "ALPHA", 1),
            ms(&[500]),
            "Retry-After is not consulted"
        );
    }

    #[test]
    fn the_durable_write_preset_doubles_to_five_seconds_and_never_gives_up() {
        let got = delays(&RetryPolicy::durable_write(), &backend(), "", 10_000);
        assert_eq!(got.len(), 10_000);
        assert_eq!(got[..8], ms(&[100, 200, 400, 800, 1600, 3200, 5000, 5000]));
        assert!(got[8..].iter().all(|d| *d == Duration::from_secs(5)));
    }

    #[test]
    fn the_checkpoint_read_preset_keeps_the_former_delays_and_limit() {
        assert_eq!(
            delays(&RetryPolicy::checkpoint_read(), &backend(), "", 100),
            ms(&[100, 200, 400, 800, 1600, 3000, 3000, 3000])
        );
    }

    #[test]
    fn jitter_is_a_function_of_the_seed_within_its_bounds() {
        let p = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(1))
            .with_jitter_percent(10);
        for seed in ["a", "b", "ALPHA", "BETA"] {
            for n in 1..50 {
                let d = p.backoff(n, seed);
                assert_eq!(d, p.backoff(n, seed), "deterministic");
                assert!((900..=1100).contains(&d.as_millis()), "{d:?}");
            }
        }
        let off = p.with_jitter_percent(0);
        assert_eq!(off.backoff(3, "a"), Duration::from_secs(1));
    }

    #[test]
    fn a_large_multiplier_or_attempt_never_overflows() {
        let p = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(30))
            .with_multiplier(u32::MAX)
            .with_jitter_percent(100);
        assert!(p.backoff(u32::MAX, "x") <= Duration::from_secs(60));
        assert_eq!(
            RetryPolicy::new(Duration::ZERO, Duration::from_secs(1)).backoff(40, ""),
            Duration::ZERO
        );
    }
}
