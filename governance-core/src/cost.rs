//! Budgets in money that close before the call: prices ([`ModelPrice`]), amounts
//! ([`Cost`], integer nano-dollars so sums are exact and fit atomic counters) and the
//! [`CostLedger`] that reserves a call's worst case before it is sent and settles it to the
//! real cost after.
//!
//! A governed call (the token-budget stage of the LLM stack) with a money budget set
//! (`GOVERNANCE_MAX_COST_PER_PIPELINE_USD`, `GOVERNANCE_MAX_COST_PER_AGENT_USD`):
//! 1. asks the client for the price of the request's model (and of each fallback model; the
//!    dearest counts) — an unknown price refuses the call (fail closed);
//! 2. reserves the worst case ([`ModelPrice::worst_case`]: estimated prompt tokens at the prompt
//!    price, `max_tokens` at the completion price, plus the per-request price) in the ledger,
//!    which refuses atomically when the pipeline's or the agent's total would pass its limit —
//!    the call is then never sent;
//! 3. settles the reservation to the provider's own `usage.cost` (or, when the provider
//!    reports none, the price table's cost of the tokens actually used).

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AgentId, PipelineId};

/// Nano-dollars in one US dollar.
pub const NANOS_PER_USD: u64 = 1_000_000_000;

/// An amount of money in integer nano-dollars (10⁻⁹ USD).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cost(u64);

impl Cost {
    /// Nothing.
    pub const ZERO: Self = Self(0);

    /// `nanos` nano-dollars.
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// The amount in nano-dollars.
    #[must_use]
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// `usd` dollars, rounded to the nearest nano-dollar; negative or not-a-number is zero,
    /// too large saturates.
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    pub fn from_usd(usd: f64) -> Self {
        if usd.is_nan() || usd <= 0.0 {
            return Self::ZERO;
        }
        let nanos = (usd * NANOS_PER_USD as f64).round();
        if nanos >= u64::MAX as f64 {
            Self(u64::MAX)
        } else {
            Self(nanos as u64)
        }
    }

    /// `usd` dollars rounded *up* to a nano-dollar (for prices: a price never rounds to less
    /// than it is).
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    pub fn from_usd_ceil(usd: f64) -> Self {
        if usd.is_nan() || usd <= 0.0 {
            return Self::ZERO;
        }
        // a hair below the next integer counts as it (float noise in "0.000003" * 1e9)
        let nanos = (usd * NANOS_PER_USD as f64 - 1e-6).ceil();
        if nanos >= u64::MAX as f64 {
            Self(u64::MAX)
        } else {
            Self(nanos as u64)
        }
    }

    /// The amount in dollars.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_usd(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// `self + other`, saturating.
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self × n`, saturating.
    #[must_use]
    pub const fn saturating_mul(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n))
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.as_usd())
    }
}

/// What one model costs: per prompt token, per completion token, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Price of one prompt token.
    pub prompt_per_token: Cost,
    /// Price of one completion token.
    pub completion_per_token: Cost,
    /// Price of each request, whatever its size.
    pub request: Cost,
}

impl ModelPrice {
    /// Free (the local LLM).
    pub const FREE: Self = Self {
        prompt_per_token: Cost::ZERO,
        completion_per_token: Cost::ZERO,
        request: Cost::ZERO,
    };

    /// A price from USD per token (OpenRouter's `pricing.prompt` / `completion` /
    /// `request`); each rounds up to a nano-dollar.
    #[must_use]
    pub fn from_usd_per_token(prompt: f64, completion: f64, request: f64) -> Self {
        Self {
            prompt_per_token: Cost::from_usd_ceil(prompt),
            completion_per_token: Cost::from_usd_ceil(completion),
            request: Cost::from_usd_ceil(request),
        }
    }

    /// A price from USD per million tokens (the config file's price table).
    #[must_use]
    pub fn from_usd_per_million(prompt: f64, completion: f64) -> Self {
        Self::from_usd_per_token(prompt / 1e6, completion / 1e6, 0.0)
    }

    /// The most a call can cost: `prompt_tokens` at the prompt price, `max_tokens` at the
    /// completion price, plus the request price.
    #[must_use]
    pub fn worst_case(&self, prompt_tokens: u32, max_tokens: u32) -> Cost {
        self.cost(prompt_tokens, max_tokens)
    }

    /// What a call that used `prompt_tokens` and `completion_tokens` costs at this price.
    #[must_use]
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> Cost {
        self.prompt_per_token
            .saturating_mul(u64::from(prompt_tokens))
            .saturating_add(
                self.completion_per_token
                    .saturating_mul(u64::from(completion_tokens)),
            )
            .saturating_add(self.request)
    }

    /// The dearer of two prices, component by component (for a request with fallback models:
    /// any of them may answer).
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Self {
            prompt_per_token: self.prompt_per_token.max(other.prompt_per_token),
            completion_per_token: self.completion_per_token.max(other.completion_per_token),
            request: self.request.max(other.request),
        }
    }
}

/// A call's worst case, held in a [`CostLedger`] until [`CostLedger::settle`].
///
/// Dropping it without settling keeps the worst case counted as spent (fail closed: a call
/// abandoned in flight may still be billed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a cost reservation must be settled (dropped, it stays counted at its worst case)"]
pub struct CostReservation {
    /// The pipeline charged.
    pub pipeline: PipelineId,
    /// The agent charged.
    pub agent: AgentId,
    /// The amount held.
    pub amount: Cost,
}

/// Where a pipeline's money is counted: one counter per pipeline and one per agent, each
/// holding what was settled plus what is reserved for calls in flight.
///
/// # Contract
/// - [`reserve`](Self::reserve) adds `amount` to the pipeline's and the agent's counters
///   **atomically and only if** neither would then pass its limit (`None`: no limit); else it
///   changes nothing and fails with [`Error::BudgetExceeded`] naming the limit
///   (`max_cost_per_pipeline_usd` or `max_cost_per_agent_usd`), the amounts and the counter.
///   "Atomically" holds across every process sharing the ledger (the Redis ledger's counters
///   live in the store), so several workers together cannot pass a budget.
/// - [`settle`](Self::settle) replaces a reservation's amount with the actual cost (adds
///   `actual − amount`, which may be negative; a counter never goes below zero).
/// - [`spent`](Self::spent) / [`agent_spent`](Self::agent_spent): the counter (settled plus
///   in flight).
/// - [`seed`](Self::seed) raises counters to at least the given amounts (never lowers them),
///   to rebuild them from the system of record (the `llm_call` events' `cost_usd`) after a
///   restart or after the store lost them.
/// - A backend failure (store unreachable) is an error: the caller refuses the call (fail
///   closed).
///
/// # Cancel safety
/// A reservation whose call is dropped before [`settle`](Self::settle) stays counted at its
/// worst case (the provider may bill an abandoned call): the budget only ever errs on the side
/// of spending less. A `reserve` future dropped mid-flight either reserved or not; with the
/// Redis ledger the script runs whole or not at all.
#[async_trait]
pub trait CostLedger: Send + Sync + fmt::Debug {
    /// Reserves `amount` for one call of `agent` in `pipeline`.
    ///
    /// # Errors
    /// [`Error::BudgetExceeded`] when a limit would be passed (nothing reserved); backend
    /// failures.
    async fn reserve(
        &self,
        pipeline: &PipelineId,
        agent: &AgentId,
        amount: Cost,
        pipeline_limit: Option<Cost>,
        agent_limit: Option<Cost>,
    ) -> Result<CostReservation>;

    /// Settles a reservation to what the call actually cost.
    ///
    /// # Errors
    /// Backend failures (the reservation then stays counted at its worst case).
    async fn settle(&self, reservation: CostReservation, actual: Cost) -> Result<()>;

    /// What `pipeline` spent (settled plus in flight).
    ///
    /// # Errors
    /// Backend failures.
    async fn spent(&self, pipeline: &PipelineId) -> Result<Cost>;

    /// What `agent` of `pipeline` spent (settled plus in flight).
    ///
    /// # Errors
    /// Backend failures.
    async fn agent_spent(&self, pipeline: &PipelineId, agent: &AgentId) -> Result<Cost>;

    /// Raises the pipeline's counter to at least `total` and each listed agent's to at least
    /// its amount.
    ///
    /// # Errors
    /// Backend failures.
    async fn seed(
        &self,
        pipeline: &PipelineId,
        total: Cost,
        agents: &[(AgentId, Cost)],
    ) -> Result<()>;
}

/// The refusal both ledgers give: which limit, what the call needed, what was counted.
#[must_use]
pub fn refusal(limit_name: &str, counted: Cost, amount: Cost, limit: Cost) -> Error {
    Error::BudgetExceeded(format!(
        "the call's worst case {amount} on top of {counted} spent would pass \
         {limit_name} {limit}"
    ))
}

#[derive(Debug, Default)]
struct Counters {
    total: u64,
    agents: HashMap<AgentId, u64>,
}

/// A [`CostLedger`] in this process's memory (one engine; the default, one per pipeline).
#[derive(Debug, Default)]
pub struct MemoryCostLedger {
    pipelines: Mutex<HashMap<PipelineId, Counters>>,
}

impl MemoryCostLedger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// [`CostLedger::seed`] without waiting (the memory ledger never blocks).
    pub fn seed_now(&self, pipeline: &PipelineId, total: Cost, agents: &[(AgentId, Cost)]) {
        let mut all = self.pipelines.lock();
        let c = all.entry(pipeline.clone()).or_default();
        c.total = c.total.max(total.nanos());
        for (agent, amount) in agents {
            let a = c.agents.entry(agent.clone()).or_default();
            *a = (*a).max(amount.nanos());
        }
    }
}

#[async_trait]
impl CostLedger for MemoryCostLedger {
    async fn reserve(
        &self,
        pipeline: &PipelineId,
        agent: &AgentId,
        amount: Cost,
        pipeline_limit: Option<Cost>,
        agent_limit: Option<Cost>,
    ) -> Result<CostReservation> {
        let mut all = self.pipelines.lock();
        let c = all.entry(pipeline.clone()).or_default();
        let mine = c.agents.get(agent).copied().unwrap_or(0);
        if let Some(limit) = pipeline_limit
            && c.total.saturating_add(amount.nanos()) > limit.nanos()
        {
            return Err(refusal(
                "max_cost_per_pipeline_usd",
                Cost(c.total),
                amount,
                limit,
            ));
        }
        if let Some(limit) = agent_limit
            && mine.saturating_add(amount.nanos()) > limit.nanos()
        {
            return Err(refusal("max_cost_per_agent_usd", Cost(mine), amount, limit));
        }
        c.total = c.total.saturating_add(amount.nanos());
        *c.agents.entry(agent.clone()).or_default() = mine.saturating_add(amount.nanos());
        Ok(CostReservation {
            pipeline: pipeline.clone(),
            agent: agent.clone(),
            amount,
        })
    }

    async fn settle(&self, reservation: CostReservation, actual: Cost) -> Result<()> {
        let mut all = self.pipelines.lock();
        let c = all.entry(reservation.pipeline).or_default();
        let adjust = |v: u64| {
            v.saturating_sub(reservation.amount.nanos())
                .saturating_add(actual.nanos())
        };
        c.total = adjust(c.total);
        let a = c.agents.entry(reservation.agent).or_default();
        *a = adjust(*a);
        Ok(())
    }

    async fn spent(&self, pipeline: &PipelineId) -> Result<Cost> {
        Ok(Cost(
            self.pipelines.lock().get(pipeline).map_or(0, |c| c.total),
        ))
    }

    async fn agent_spent(&self, pipeline: &PipelineId, agent: &AgentId) -> Result<Cost> {
        Ok(Cost(
            self.pipelines
                .lock()
                .get(pipeline)
                .and_then(|c| c.agents.get(agent).copied())
                .unwrap_or(0),
        ))
    }

    async fn seed(
        &self,
        pipeline: &PipelineId,
        total: Cost,
        agents: &[(AgentId, Cost)],
    ) -> Result<()> {
        self.seed_now(pipeline, total, agents);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (PipelineId, AgentId, AgentId) {
        (
            PipelineId::generate(),
            "ALPHA".parse().unwrap(),
            "BETA".parse().unwrap(),
        )
    }

    #[test]
    fn prices_are_exact_in_nanos() {
        let p = ModelPrice::from_usd_per_token(0.000_003, 0.000_015, 0.0);
        assert_eq!(p.prompt_per_token, Cost::from_nanos(3_000));
        assert_eq!(p.completion_per_token, Cost::from_nanos(15_000));
        assert_eq!(p.worst_case(1000, 100), Cost::from_nanos(4_500_000));
        assert_eq!(
            ModelPrice::from_usd_per_million(3.0, 15.0),
            ModelPrice::from_usd_per_token(0.000_003, 0.000_015, 0.0)
        );
        assert_eq!(Cost::from_usd(0.0045).nanos(), 4_500_000);
        assert!((Cost::from_nanos(4_500_000).as_usd() - 0.0045).abs() < 1e-15);
        assert_eq!(Cost::from_usd(-1.0), Cost::ZERO);
        assert_eq!(Cost::from_usd(f64::NAN), Cost::ZERO);
    }

    #[tokio::test]
    async fn refuses_what_would_pass_either_limit_and_settles_the_difference() {
        let (p, a, b) = ids();
        let l = MemoryCostLedger::new();
        let lim = Some(Cost::from_nanos(1000));
        let r = l
            .reserve(
                &p,
                &a,
                Cost::from_nanos(600),
                lim,
                Some(Cost::from_nanos(700)),
            )
            .await
            .unwrap();
        let e = l
            .reserve(
                &p,
                &a,
                Cost::from_nanos(200),
                lim,
                Some(Cost::from_nanos(700)),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("max_cost_per_agent_usd"), "{e}");
        let e = l
            .reserve(&p, &b, Cost::from_nanos(500), lim, None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("max_cost_per_pipeline_usd"), "{e}");
        assert_eq!(l.spent(&p).await.unwrap(), Cost::from_nanos(600));
        l.settle(r, Cost::from_nanos(100)).await.unwrap();
        assert_eq!(l.spent(&p).await.unwrap(), Cost::from_nanos(100));
        assert_eq!(l.agent_spent(&p, &a).await.unwrap(), Cost::from_nanos(100));
        let _kept = l
            .reserve(&p, &b, Cost::from_nanos(900), lim, None)
            .await
            .unwrap();
        // dropped unsettled: stays counted
        assert_eq!(l.spent(&p).await.unwrap(), Cost::from_nanos(1000));
        l.seed(
            &p,
            Cost::from_nanos(10),
            &[(a.clone(), Cost::from_nanos(5))],
        )
        .await
        .unwrap();
        assert_eq!(l.spent(&p).await.unwrap(), Cost::from_nanos(1000));
        assert_eq!(l.agent_spent(&p, &a).await.unwrap(), Cost::from_nanos(100));
    }
}
