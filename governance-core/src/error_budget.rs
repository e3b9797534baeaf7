//! Per-agent error budgets (seed: `max_total_errors` 8, `max_same_error_repeats` 2,
//! `max_procedure_violations` 1). The error that goes *past* a maximum revokes the agent:
//! the 9th error, the 3rd identical one, the 2nd procedure violation.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::ErrorBudgetLimits;

/// What the budget says after an error was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BudgetVerdict {
    /// Still within budget.
    Continue,
    /// A maximum was passed: the agent must be revoked.
    Revoke(String),
}

/// Counts of a budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Errors of any kind (violations included).
    pub total: u32,
    /// Procedure violations.
    pub violations: u32,
    /// The highest repeat count of one identical error.
    pub max_repeats: u32,
}

/// One agent's error budget. Synchronous and cheap: called on every agent error.
///
/// # Contract
/// - `record` counts the error and returns [`BudgetVerdict::Revoke`] for the error that
///   passes a maximum, and for every error after that.
/// - `signature` identifies "the same error" (see [`crate::Error::signature`]).
pub trait ErrorBudget: Send + Sync + std::fmt::Debug {
    /// Records one error; `violation` marks a procedure violation.
    fn record(&self, signature: &str, violation: bool) -> BudgetVerdict;
    /// Current counts.
    fn counts(&self) -> ErrorCounts;
}

/// The default [`ErrorBudget`]: counters checked against [`ErrorBudgetLimits`].
#[derive(Debug)]
pub struct CountingErrorBudget {
    limits: ErrorBudgetLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    counts: ErrorCounts,
    repeats: HashMap<String, u32>,
    revoked: Option<String>,
}

impl CountingErrorBudget {
    /// A fresh budget.
    #[must_use]
    pub fn new(limits: ErrorBudgetLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }
}

impl ErrorBudget for CountingErrorBudget {
    fn record(&self, signature: &str, violation: bool) -> BudgetVerdict {
        let mut s = self.state.lock();
        s.counts.total = s.counts.total.saturating_add(1);
        if violation {
            s.counts.violations = s.counts.violations.saturating_add(1);
        }
        let repeats = {
            let r = s.repeats.entry(signature.to_owned()).or_insert(0);
            *r = r.saturating_add(1);
            *r
        };
        s.counts.max_repeats = s.counts.max_repeats.max(repeats);
        if let Some(reason) = &s.revoked {
            return BudgetVerdict::Revoke(reason.clone());
        }
        let l = self.limits;
        let reason = if violation && s.counts.violations > l.max_procedure_violations {
            Some(format!(
                "procedure violations {} > max_procedure_violations {}",
                s.counts.violations, l.max_procedure_violations
            ))
        } else if repeats > l.max_same_error_repeats {
            Some(format!(
                "error {signature:?} repeated {repeats} times > max_same_error_repeats {}",
                l.max_same_error_repeats
            ))
        } else if s.counts.total > l.max_total_errors {
            Some(format!(
                "{} errors > max_total_errors {}",
                s.counts.total, l.max_total_errors
            ))
        } else {
            None
        };
        match reason {
            Some(r) => {
                s.revoked = Some(r.clone());
                BudgetVerdict::Revoke(r)
            }
            None => BudgetVerdict::Continue,
        }
    }

    fn counts(&self) -> ErrorCounts {
        self.state.lock().counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn budget() -> CountingErrorBudget {
        CountingErrorBudget::new(ErrorBudgetLimits::default())
    }

    #[test]
    fn revokes_agent_on_third_identical_error() {
        let b = budget();
        assert_eq!(b.record("llm:503:", false), BudgetVerdict::Continue);
        assert_eq!(b.record("llm:503:", false), BudgetVerdict::Continue);
        assert!(
            matches!(b.record("llm:503:", false), BudgetVerdict::Revoke(r) if r.contains("max_same_error_repeats"))
        );
    }

    #[test]
    fn revokes_agent_on_ninth_error() {
        let b = budget();
        for i in 0..8 {
            // two of each signature: never three identical
            assert_eq!(
                b.record(&format!("e{}", i / 2), false),
                BudgetVerdict::Continue,
                "error {i}"
            );
        }
        assert!(
            matches!(b.record("e9", false), BudgetVerdict::Revoke(r) if r.contains("max_total_errors"))
        );
    }

    #[test]
    fn revokes_agent_on_second_procedure_violation() {
        let b = budget();
        assert_eq!(b.record("violation:a", true), BudgetVerdict::Continue);
        assert!(
            matches!(b.record("violation:b", true), BudgetVerdict::Revoke(r) if r.contains("procedure"))
        );
    }

    proptest! {
        /// Whatever the sequence, the first revoking error is exactly the first one that passes a
        /// maximum (computed independently here), and every later error also revokes.
        #[test]
        fn revokes_exactly_when_a_maximum_is_passed(errors in proptest::collection::vec((0u8..4, any::<bool>()), 1..40)) {
            let limits = ErrorBudgetLimits::default();
            let b = CountingErrorBudget::new(limits);
            let (mut total, mut viol) = (0u32, 0u32);
            let mut reps: HashMap<u8, u32> = HashMap::new();
            let mut revoked = false;
            for (sig, v) in errors {
                total += 1;
                if v { viol += 1; }
                let r = reps.entry(sig).or_default();
                *r += 1;
                let passes = total > limits.max_total_errors || *r > limits.max_same_error_repeats || (v && viol > limits.max_procedure_violations);
                revoked |= passes;
                let verdict = b.record(&format!("sig{sig}"), v);
                prop_assert_eq!(matches!(verdict, BudgetVerdict::Revoke(_)), revoked);
            }
            prop_assert_eq!(b.counts().total, total);
            prop_assert_eq!(b.counts().violations, viol);
        }
    }
}
