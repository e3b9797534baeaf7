//! Token and cost budgets that fail closed: a call is reserved *before* it is sent, from the
//! request's estimated prompt size plus its `max_tokens`, and settled from the reported usage.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::TokenBudgetConfig;
use crate::cost::{Cost, CostLedger, MemoryCostLedger};
use crate::error::{Error, Result};
use crate::llm::Usage;

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    used: u64,
    reserved: u64,
}

/// A pipeline-wide budget shared by its agents (tokens and USD).
#[derive(Debug)]
pub struct PipelineBudget {
    config: TokenBudgetConfig,
    tokens: Mutex<Counter>,
    cost_usd: Mutex<f64>,
    ledger: Arc<dyn CostLedger>,
}

impl PipelineBudget {
    /// A fresh budget whose money is counted in a ledger of its own (this process only).
    #[must_use]
    pub fn new(config: TokenBudgetConfig) -> Arc<Self> {
        Self::with_cost_ledger(config, Arc::new(MemoryCostLedger::new()))
    }

    /// A fresh budget whose money is reserved and settled in `ledger` (shared with other
    /// processes when it is the store's).
    #[must_use]
    pub fn with_cost_ledger(config: TokenBudgetConfig, ledger: Arc<dyn CostLedger>) -> Arc<Self> {
        Arc::new(Self {
            config,
            tokens: Mutex::new(Counter::default()),
            cost_usd: Mutex::new(0.0),
            ledger,
        })
    }

    /// The ledger money budgets are reserved in.
    #[must_use]
    pub fn cost_ledger(&self) -> &Arc<dyn CostLedger> {
        &self.ledger
    }

    /// The money limits (pipeline, agent), when set.
    #[must_use]
    pub fn cost_limits(&self) -> (Option<Cost>, Option<Cost>) {
        (
            self.config.max_cost_per_pipeline_usd.map(Cost::from_usd),
            self.config.max_cost_per_agent_usd.map(Cost::from_usd),
        )
    }

    /// Tokens used so far by the whole pipeline.
    #[must_use]
    pub fn tokens_used(&self) -> u64 {
        self.tokens.lock().used
    }

    /// USD spent so far.
    #[must_use]
    pub fn cost_usd(&self) -> f64 {
        *self.cost_usd.lock()
    }

    /// The limits.
    #[must_use]
    pub fn config(&self) -> &TokenBudgetConfig {
        &self.config
    }

    /// Counts usage that happened elsewhere (before a remote agent's work was handed to this
    /// process) as already spent.
    pub fn preload(&self, tokens: u64, cost_usd: f64) {
        self.tokens.lock().used += tokens;
        *self.cost_usd.lock() += cost_usd.max(0.0);
    }

    /// Whether the pipeline has used up its token or cost budget.
    #[must_use]
    pub fn exhausted(&self) -> Option<String> {
        let used = self.tokens_used();
        if used >= self.config.max_tokens_per_pipeline {
            return Some(format!(
                "pipeline used {used} tokens of max_tokens_per_pipeline {}",
                self.config.max_tokens_per_pipeline
            ));
        }
        match self.config.max_cost_per_pipeline_usd {
            Some(max) if self.cost_usd() >= max => Some(format!(
                "pipeline spent ${:.4} of max_cost_per_pipeline_usd ${max:.4}",
                self.cost_usd()
            )),
            _ => None,
        }
    }

    /// A budget for one agent of this pipeline.
    #[must_use]
    pub fn agent(self: &Arc<Self>) -> AgentBudget {
        AgentBudget {
            pipeline: Arc::clone(self),
            tokens: Mutex::new(Counter::default()),
            cost_usd: Mutex::new(0.0),
        }
    }
}

/// One agent's token budget, inside its pipeline's budget.
#[derive(Debug)]
pub struct AgentBudget {
    pipeline: Arc<PipelineBudget>,
    tokens: Mutex<Counter>,
    cost_usd: Mutex<f64>,
}

/// Tokens held for a call in flight; give it back with [`AgentBudget::settle`].
#[derive(Debug)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    tokens: u64,
}

impl AgentBudget {
    /// Tokens this agent used.
    #[must_use]
    pub fn tokens_used(&self) -> u64 {
        self.tokens.lock().used
    }

    /// USD this agent spent (the providers' figures of its settled calls).
    #[must_use]
    pub fn cost_usd(&self) -> f64 {
        *self.cost_usd.lock()
    }

    /// Reserves `tokens` for a call.
    ///
    /// # Errors
    /// [`Error::BudgetExceeded`] naming the limit when the agent's or the pipeline's token
    /// budget, or the pipeline's cost budget, would be passed. Nothing is reserved then.
    pub fn reserve(&self, tokens: u64) -> Result<Reservation> {
        let cfg = self.pipeline.config;
        if let Some(max) = cfg.max_cost_per_pipeline_usd {
            let spent = *self.pipeline.cost_usd.lock();
            if spent >= max {
                return Err(Error::BudgetExceeded(format!(
                    "pipeline spent ${spent:.4} of max_cost_per_pipeline_usd ${max:.4}"
                )));
            }
        }
        let mut mine = self.tokens.lock();
        if mine.used + mine.reserved + tokens > cfg.max_tokens_per_agent {
            return Err(Error::BudgetExceeded(format!(
                "agent would use {} tokens > max_tokens_per_agent {}",
                mine.used + mine.reserved + tokens,
                cfg.max_tokens_per_agent
            )));
        }
        let mut all = self.pipeline.tokens.lock();
        if all.used + all.reserved + tokens > cfg.max_tokens_per_pipeline {
            return Err(Error::BudgetExceeded(format!(
                "pipeline would use {} tokens > max_tokens_per_pipeline {}",
                all.used + all.reserved + tokens,
                cfg.max_tokens_per_pipeline
            )));
        }
        mine.reserved += tokens;
        all.reserved += tokens;
        Ok(Reservation { tokens })
    }

    /// Charges a call made elsewhere (by this agent's remote half) to the agent and the
    /// pipeline, without a reservation.
    pub fn charge(&self, usage: &Usage) {
        let used = u64::from(usage.total_tokens());
        self.tokens.lock().used += used;
        self.pipeline.tokens.lock().used += used;
        if let Some(c) = usage.cost_usd {
            *self.pipeline.cost_usd.lock() += c;
            *self.cost_usd.lock() += c;
        }
    }

    /// Counts tokens this agent used elsewhere (before its work was handed to this process)
    /// as already spent by the agent (the pipeline's share is [`PipelineBudget::preload`]).
    pub fn preload(&self, tokens: u64) {
        self.tokens.lock().used += tokens;
    }

    /// The pipeline budget this agent budget is part of.
    #[must_use]
    pub fn pipeline(&self) -> &Arc<PipelineBudget> {
        &self.pipeline
    }

    /// Releases a reservation and charges what the call actually used (`None` if it failed
    /// without usage).
    #[allow(clippy::needless_pass_by_value)] // consuming the reservation is the point
    pub fn settle(&self, reservation: Reservation, usage: Option<&Usage>) {
        let used = usage.map_or(0, |u| u64::from(u.total_tokens()));
        {
            let mut mine = self.tokens.lock();
            mine.reserved = mine.reserved.saturating_sub(reservation.tokens);
            mine.used += used;
        }
        {
            let mut all = self.pipeline.tokens.lock();
            all.reserved = all.reserved.saturating_sub(reservation.tokens);
            all.used += used;
        }
        if let Some(c) = usage.and_then(|u| u.cost_usd) {
            *self.pipeline.cost_usd.lock() += c;
            *self.cost_usd.lock() += c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(agent: u64, pipeline: u64) -> TokenBudgetConfig {
        TokenBudgetConfig {
            max_tokens_per_agent: agent,
            max_tokens_per_pipeline: pipeline,
            ..TokenBudgetConfig::default()
        }
    }

    #[test]
    fn refuses_a_call_that_would_pass_the_agent_budget() {
        let p = PipelineBudget::new(cfg(1000, 10_000));
        let a = p.agent();
        let r = a.reserve(600).unwrap();
        assert!(
            matches!(a.reserve(500), Err(Error::BudgetExceeded(m)) if m.contains("max_tokens_per_agent"))
        );
        a.settle(
            r,
            Some(&Usage {
                prompt_tokens: 100,
                completion_tokens: 50,
                cost_usd: None,
            }),
        );
        assert_eq!(a.tokens_used(), 150);
        assert!(a.reserve(800).is_ok());
    }

    #[test]
    fn pipeline_budget_is_shared_and_cost_fails_closed() {
        let p = PipelineBudget::new(TokenBudgetConfig {
            max_cost_per_pipeline_usd: Some(0.01),
            ..cfg(1000, 1500)
        });
        let (a, b) = (p.agent(), p.agent());
        let r = a.reserve(1000).unwrap();
        assert!(
            matches!(b.reserve(600), Err(Error::BudgetExceeded(m)) if m.contains("max_tokens_per_pipeline"))
        );
        a.settle(
            r,
            Some(&Usage {
                prompt_tokens: 10,
                completion_tokens: 10,
                cost_usd: Some(0.02),
            }),
        );
        assert!(matches!(b.reserve(10), Err(Error::BudgetExceeded(m)) if m.contains("max_cost")));
    }

    proptest! {
        #[test]
        fn never_reserves_past_a_limit(calls in proptest::collection::vec((0u64..400, 0u32..200), 1..50)) {
            let p = PipelineBudget::new(cfg(1000, 1800));
            let a = p.agent();
            let b = p.agent();
            for (i, (est, used)) in calls.into_iter().enumerate() {
                let who = if i % 2 == 0 { &a } else { &b };
                if let Ok(r) = who.reserve(est) {
                    let used = used.min(u32::try_from(est).unwrap_or(u32::MAX));
                    who.settle(r, Some(&Usage { prompt_tokens: used, completion_tokens: 0, cost_usd: None }));
                }
                prop_assert!(a.tokens_used() <= 1000 && b.tokens_used() <= 1000);
                prop_assert!(p.tokens_used() <= 1800);
            }
        }
    }
}
