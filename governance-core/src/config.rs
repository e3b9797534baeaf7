//! Configuration: plain structs with the seed's defaults and `from_env()`.

use std::time::Duration;

use crate::error::{Error, Result};

/// Limits of one agent's error budget (seed: 8 / 2 / 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorBudgetLimits {
    /// Errors of any kind tolerated; the next one revokes.
    pub max_total_errors: u32,
    /// Repeats of one identical error tolerated; the next one revokes.
    pub max_same_error_repeats: u32,
    /// Procedure violations tolerated; the next one revokes.
    pub max_procedure_violations: u32,
}

impl Default for ErrorBudgetLimits {
    fn default() -> Self {
        Self {
            max_total_errors: 8,
            max_same_error_repeats: 2,
            max_procedure_violations: 1,
        }
    }
}

/// When GAMMA is spawned (seed: 30 s / 3 proposals / 0.8).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct GammaThresholds {
    /// STUCK: this long without progress.
    pub stuck: Duration,
    /// CONFLICT: this many unresolved proposals or more.
    pub conflict: usize,
    /// COMPLEXITY: a score strictly above this.
    pub complexity: f64,
    /// At most this many GAMMA spawns per pipeline.
    pub max_spawns: u32,
}

impl Default for GammaThresholds {
    fn default() -> Self {
        Self {
            stuck: Duration::from_secs(30),
            conflict: 3,
            complexity: 0.8,
            max_spawns: 1,
        }
    }
}

/// Circuit-breaker settings (seed: 5 consecutive failures → open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before letting one trial call through (half-open).
    pub cooldown: Duration,
}

impl BreakerConfig {
    /// Settings that open the breaker after `failure_threshold` consecutive failures and keep
    /// it open for `cooldown` (usable in a `const`).
    #[must_use]
    pub const fn new(failure_threshold: u32, cooldown: Duration) -> Self {
        Self {
            failure_threshold,
            cooldown,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Human approval of a pipeline's outcome (`GOVERNANCE_REQUIRE_APPROVAL`,
/// `GOVERNANCE_MAX_REVISIONS`, `GOVERNANCE_APPROVAL_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalSettings {
    /// Whether a pipeline spawned without saying rests at `AWAITING_APPROVAL` after consensus
    /// and solution instead of completing (default false).
    pub required: bool,
    /// Rejections that start a revision round; the next one ends the pipeline FAILED
    /// (default 2).
    pub max_revisions: u32,
    /// How long a pipeline waits for a decision before it ends TIMEOUT, counted from its
    /// `approval_requested` (default: no limit).
    pub timeout: Option<Duration>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            required: false,
            max_revisions: 2,
            timeout: None,
        }
    }
}

/// Token and cost budgets (fail closed: a call that would pass one is not sent).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TokenBudgetConfig {
    /// Tokens (prompt + completion) one agent may use.
    pub max_tokens_per_agent: u64,
    /// Tokens one pipeline may use (all agents).
    pub max_tokens_per_pipeline: u64,
    /// USD one pipeline may spend (`GOVERNANCE_MAX_COST_PER_PIPELINE_USD`): each call's
    /// worst case is reserved before it is sent (see [`crate::cost`]).
    pub max_cost_per_pipeline_usd: Option<f64>,
    /// USD one agent may spend (`GOVERNANCE_MAX_COST_PER_AGENT_USD`), reserved the same way.
    pub max_cost_per_agent_usd: Option<f64>,
    /// `max_tokens` of each completion request.
    pub max_completion_tokens: u32,
}

impl Default for TokenBudgetConfig {
    fn default() -> Self {
        Self {
            max_tokens_per_agent: 200_000,
            max_tokens_per_pipeline: 1_000_000,
            max_cost_per_pipeline_usd: None,
            max_cost_per_agent_usd: None,
            max_completion_tokens: 1024,
        }
    }
}

/// Settings of the orchestrator (everything a pipeline run needs besides its backends).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `AUTO_ORCHESTRATE`: continue from REPORT into orchestration automatically (default true).
    pub auto_orchestrate: bool,
    /// `OPENROUTER_MODEL`: default model of the OpenRouter client (default
    /// `anthropic/claude-sonnet-4`). A pipeline spawned without a model uses the default model of
    /// its mode's client (`local/deterministic` for the local LLM); this one only for contexts
    /// without a client at hand (detached agents).
    pub model: String,
    /// `ORCHESTRATION_TIMEOUT`: seconds (default 120).
    pub orchestration_timeout: Duration,
    /// `GAMMA_STUCK_THRESHOLD`, `GAMMA_CONFLICT_THRESHOLD`, `GAMMA_COMPLEXITY_THRESHOLD`,
    /// `GAMMA_MAX_PER_PIPELINE`.
    pub gamma: GammaThresholds,
    /// `GOVERNANCE_MAX_TOTAL_ERRORS`, `GOVERNANCE_MAX_SAME_ERROR_REPEATS`,
    /// `GOVERNANCE_MAX_PROCEDURE_VIOLATIONS`.
    pub error_budget: ErrorBudgetLimits,
    /// `GOVERNANCE_BREAKER_THRESHOLD`, `GOVERNANCE_BREAKER_COOLDOWN_SECS`.
    pub breaker: BreakerConfig,
    /// `GOVERNANCE_BREAKER_TRIALS`: half-open trials a pipeline's open breaker may fail before
    /// the pipeline gives up on its provider and ends FAILED with the cause (default 2; 0 =
    /// give up as soon as the breaker opens). A pipeline whose provider is down thus ends
    /// `trials` cool-downs after its breaker opened instead of waiting out
    /// `ORCHESTRATION_TIMEOUT`.
    pub breaker_trials: u32,
    /// `GOVERNANCE_MAX_TOKENS_PER_AGENT`, `GOVERNANCE_MAX_TOKENS_PER_PIPELINE`,
    /// `GOVERNANCE_MAX_COST_PER_PIPELINE_USD`, `GOVERNANCE_MAX_COMPLETION_TOKENS`.
    pub budgets: TokenBudgetConfig,
    /// `GOVERNANCE_LLM_MAX_ATTEMPTS`: attempts per LLM call for retryable errors (default 3).
    pub llm_max_attempts: u32,
    /// `GOVERNANCE_MAX_PROPOSALS`: proposals one agent writes before it gives up (default 8).
    pub max_proposals_per_agent: u32,
    /// How often an idle agent re-reads the blackboard when no message woke it (default 200 ms).
    pub agent_poll_interval: Duration,
    /// `GOVERNANCE_LLM_STREAM`: stream model answers and publish them as they arrive as
    /// `agent_message` events to `stream` (default false).
    pub stream_llm: bool,
    /// `GOVERNANCE_REQUIRE_APPROVAL`, `GOVERNANCE_MAX_REVISIONS`, `GOVERNANCE_APPROVAL_TIMEOUT`.
    pub approval: ApprovalSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            auto_orchestrate: true,
            model: DEFAULT_MODEL.to_owned(),
            orchestration_timeout: Duration::from_secs(120),
            gamma: GammaThresholds::default(),
            error_budget: ErrorBudgetLimits::default(),
            breaker: BreakerConfig::default(),
            breaker_trials: 2,
            budgets: TokenBudgetConfig::default(),
            llm_max_attempts: 3,
            max_proposals_per_agent: 8,
            agent_poll_interval: Duration::from_millis(200),
            stream_llm: false,
            approval: ApprovalSettings::default(),
        }
    }
}

/// The seed's default model.
pub const DEFAULT_MODEL: &str = "anthropic/claude-sonnet-4";

impl Config {
    /// Reads the configuration from the process environment (unset variables keep defaults).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when a value does not parse or is out of range.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env) with a custom lookup (for tests and embedding).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when a value does not parse or is out of range.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut c = Self::default();
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("AUTO_ORCHESTRATE") {
            c.auto_orchestrate = parse_bool("AUTO_ORCHESTRATE", &v)?;
        }
        if let Some(v) = get("OPENROUTER_MODEL") {
            c.model = v;
        }
        if let Some(v) = get("ORCHESTRATION_TIMEOUT") {
            c.orchestration_timeout = parse_secs("ORCHESTRATION_TIMEOUT", &v)?;
        }
        if let Some(v) = get("GAMMA_STUCK_THRESHOLD") {
            c.gamma.stuck = parse_secs("GAMMA_STUCK_THRESHOLD", &v)?;
        }
        if let Some(v) = get("GAMMA_CONFLICT_THRESHOLD") {
            c.gamma.conflict = parse_num::<usize>("GAMMA_CONFLICT_THRESHOLD", &v, 1)?;
        }
        if let Some(v) = get("GAMMA_COMPLEXITY_THRESHOLD") {
            let x: f64 = parse_num("GAMMA_COMPLEXITY_THRESHOLD", &v, 0.0)?;
            if !(0.0..=1.0).contains(&x) {
                return Err(Error::config(
                    "GAMMA_COMPLEXITY_THRESHOLD",
                    format!("{v:?} is not between 0 and 1"),
                ));
            }
            c.gamma.complexity = x;
        }
        if let Some(v) = get("GAMMA_MAX_PER_PIPELINE") {
            c.gamma.max_spawns = parse_num("GAMMA_MAX_PER_PIPELINE", &v, 0)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_TOTAL_ERRORS") {
            c.error_budget.max_total_errors = parse_num("GOVERNANCE_MAX_TOTAL_ERRORS", &v, 0)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_SAME_ERROR_REPEATS") {
            c.error_budget.max_same_error_repeats =
                parse_num("GOVERNANCE_MAX_SAME_ERROR_REPEATS", &v, 0)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_PROCEDURE_VIOLATIONS") {
            c.error_budget.max_procedure_violations =
                parse_num("GOVERNANCE_MAX_PROCEDURE_VIOLATIONS", &v, 0)?;
        }
        if let Some(v) = get("GOVERNANCE_BREAKER_THRESHOLD") {
            c.breaker.failure_threshold = parse_num("GOVERNANCE_BREAKER_THRESHOLD", &v, 1)?;
        }
        if let Some(v) = get("GOVERNANCE_BREAKER_COOLDOWN_SECS") {
            c.breaker.cooldown = parse_secs("GOVERNANCE_BREAKER_COOLDOWN_SECS", &v)?;
        }
        if let Some(v) = get("GOVERNANCE_BREAKER_TRIALS") {
            c.breaker_trials = parse_num("GOVERNANCE_BREAKER_TRIALS", &v, 0)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_TOKENS_PER_AGENT") {
            c.budgets.max_tokens_per_agent = parse_num("GOVERNANCE_MAX_TOKENS_PER_AGENT", &v, 1)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_TOKENS_PER_PIPELINE") {
            c.budgets.max_tokens_per_pipeline =
                parse_num("GOVERNANCE_MAX_TOKENS_PER_PIPELINE", &v, 1)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_COST_PER_PIPELINE_USD") {
            c.budgets.max_cost_per_pipeline_usd =
                Some(parse_num("GOVERNANCE_MAX_COST_PER_PIPELINE_USD", &v, 0.0)?);
        }
        if let Some(v) = get("GOVERNANCE_MAX_COST_PER_AGENT_USD") {
            c.budgets.max_cost_per_agent_usd =
                Some(parse_num("GOVERNANCE_MAX_COST_PER_AGENT_USD", &v, 0.0)?);
        }
        if let Some(v) = get("GOVERNANCE_MAX_COMPLETION_TOKENS") {
            c.budgets.max_completion_tokens = parse_num("GOVERNANCE_MAX_COMPLETION_TOKENS", &v, 1)?;
        }
        if let Some(v) = get("GOVERNANCE_LLM_MAX_ATTEMPTS") {
            c.llm_max_attempts = parse_num("GOVERNANCE_LLM_MAX_ATTEMPTS", &v, 1)?;
        }
        if let Some(v) = get("GOVERNANCE_LLM_STREAM") {
            c.stream_llm = parse_bool("GOVERNANCE_LLM_STREAM", &v)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_PROPOSALS") {
            c.max_proposals_per_agent = parse_num("GOVERNANCE_MAX_PROPOSALS", &v, 1)?;
        }
        if let Some(v) = get("GOVERNANCE_REQUIRE_APPROVAL") {
            c.approval.required = parse_bool("GOVERNANCE_REQUIRE_APPROVAL", &v)?;
        }
        if let Some(v) = get("GOVERNANCE_MAX_REVISIONS") {
            c.approval.max_revisions = parse_num("GOVERNANCE_MAX_REVISIONS", &v, 0)?;
        }
        if let Some(v) = get("GOVERNANCE_APPROVAL_TIMEOUT") {
            c.approval.timeout = Some(parse_secs("GOVERNANCE_APPROVAL_TIMEOUT", &v)?);
        }
        Ok(c)
    }
}

/// Parses a boolean the way operators write them (`true/false/1/0/yes/no/on/off`).
///
/// # Errors
/// [`Error::Config`] naming `var`.
pub fn parse_bool(var: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(
            var,
            format!("{v:?} is not a boolean (true/false)"),
        )),
    }
}

/// Parses a number of seconds (fractions allowed, must be > 0).
///
/// # Errors
/// [`Error::Config`] naming `var`.
pub fn parse_secs(var: &str, v: &str) -> Result<Duration> {
    let secs: f64 = v
        .parse()
        .map_err(|_| Error::config(var, format!("{v:?} is not a number of seconds")))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 31_536_000.0 {
        return Err(Error::config(
            var,
            format!("{v:?} must be between 0 and one year of seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a number that must be at least `min`.
///
/// # Errors
/// [`Error::Config`] naming `var`.
pub fn parse_num<T>(var: &str, v: &str, min: T) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let x: T = v
        .parse()
        .map_err(|_| Error::config(var, format!("{v:?} is not a valid number")))?;
    // anything not comparable (NaN) or below `min` is rejected
    if x.partial_cmp(&min).is_none_or(std::cmp::Ordering::is_lt) {
        return Err(Error::config(var, format!("{v:?} must be at least {min}")));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = cfg(&[]).unwrap();
        assert!(c.auto_orchestrate);
        assert_eq!(c.model, "anthropic/claude-sonnet-4");
        assert_eq!(c.orchestration_timeout, Duration::from_secs(120));
        assert_eq!(c.gamma.stuck, Duration::from_secs(30));
        assert_eq!(c.gamma.conflict, 3);
        assert!((c.gamma.complexity - 0.8).abs() < f64::EPSILON);
        assert_eq!(
            c.error_budget,
            ErrorBudgetLimits {
                max_total_errors: 8,
                max_same_error_repeats: 2,
                max_procedure_violations: 1
            }
        );
        assert_eq!(c.breaker.failure_threshold, 5);
    }

    #[test]
    fn reads_the_seed_variables() {
        let c = cfg(&[
            ("AUTO_ORCHESTRATE", "false"),
            ("ORCHESTRATION_TIMEOUT", "5"),
            ("GAMMA_CONFLICT_THRESHOLD", "4"),
            ("GAMMA_COMPLEXITY_THRESHOLD", "0.5"),
            ("OPENROUTER_MODEL", "x/y"),
        ])
        .unwrap();
        assert!(!c.auto_orchestrate);
        assert_eq!(c.orchestration_timeout, Duration::from_secs(5));
        assert_eq!(c.gamma.conflict, 4);
        assert_eq!(c.model, "x/y");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (k, v) in [
            ("AUTO_ORCHESTRATE", "maybe"),
            ("ORCHESTRATION_TIMEOUT", "-1"),
            ("ORCHESTRATION_TIMEOUT", "abc"),
            ("GAMMA_COMPLEXITY_THRESHOLD", "1.5"),
            ("GAMMA_CONFLICT_THRESHOLD", "0"),
            ("GOVERNANCE_MAX_TOKENS_PER_AGENT", "lots"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn approval_is_off_by_default_and_read_from_its_variables() {
        assert_eq!(cfg(&[]).unwrap().approval, ApprovalSettings::default());
        assert_eq!(ApprovalSettings::default().max_revisions, 2);
        let c = cfg(&[
            ("GOVERNANCE_REQUIRE_APPROVAL", "true"),
            ("GOVERNANCE_MAX_REVISIONS", "0"),
            ("GOVERNANCE_APPROVAL_TIMEOUT", "3600"),
        ])
        .unwrap();
        assert!(c.approval.required);
        assert_eq!(c.approval.max_revisions, 0);
        assert_eq!(c.approval.timeout, Some(Duration::from_secs(3600)));
        for (k, v) in [
            ("GOVERNANCE_REQUIRE_APPROVAL", "perhaps"),
            ("GOVERNANCE_MAX_REVISIONS", "-1"),
            ("GOVERNANCE_APPROVAL_TIMEOUT", "0"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn breaker_trials_default_to_two_and_zero_is_allowed() {
        assert_eq!(cfg(&[]).unwrap().breaker_trials, 2);
        let c = cfg(&[("GOVERNANCE_BREAKER_TRIALS", "0")]).unwrap();
        assert_eq!(c.breaker_trials, 0);
        let e = cfg(&[("GOVERNANCE_BREAKER_TRIALS", "-1")]).unwrap_err();
        assert!(e.to_string().contains("GOVERNANCE_BREAKER_TRIALS"), "{e}");
    }
}
