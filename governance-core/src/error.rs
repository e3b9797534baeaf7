//! The one error type of `governance-core` and every backend built on it.

use std::sync::Arc;
use std::time::Duration;

/// Result alias used throughout the governance crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying cause of an [`Error`] (a Redis, SQLite, I/O, HTTP or JSON error), shared so
/// that `Error` stays `Clone`. Read it with [`std::error::Error::source`], which returns the
/// original error (so `downcast_ref` finds its type); its text, like the error's message,
/// never contains a secret.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

// Deliberately not `std::error::Error` itself: `Error::source` then hands out the wrapped
// error, not this wrapper.
impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

/// What kind of failure an [`Error`] is, independent of its message.
///
/// Callers branch on the kind (and on [`Error::is_retryable`]); messages are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller passed something invalid (an id, a config value, a request body).
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// The operation conflicts with the current state (duplicate id, already claimed).
    Conflict,
    /// A pipeline status transition that the state machine does not allow.
    InvalidTransition,
    /// A backend (Redis, SQLite, ...) failed or is unreachable.
    Backend,
    /// The LLM provider failed.
    Llm,
    /// The provider refused the credentials (bad or missing key).
    Unauthorized,
    /// A token or cost budget would be exceeded; the call was not sent.
    BudgetExceeded,
    /// The circuit breaker is open; the call was not sent.
    CircuitOpen,
    /// An LLM answer could not be understood.
    MalformedOutput,
    /// An agent broke the procedure it must follow.
    ProcedureViolation,
    /// The agent's error budget is exhausted and it was revoked.
    Revoked,
    /// The work was cancelled (stop or timeout).
    Cancelled,
    /// The work took too long.
    Timeout,
    /// A configuration value is missing or invalid.
    Config,
    /// Something that should not happen; a bug.
    Internal,
}

impl ErrorKind {
    /// The stable `snake_case` name of this kind (as used in events and API errors).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::InvalidTransition => "invalid_transition",
            Self::Backend => "backend",
            Self::Llm => "llm",
            Self::Unauthorized => "unauthorized",
            Self::BudgetExceeded => "budget_exceeded",
            Self::CircuitOpen => "circuit_open",
            Self::MalformedOutput => "malformed_output",
            Self::ProcedureViolation => "procedure_violation",
            Self::Revoked => "revoked",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::Config => "config",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Details of a failed LLM call, kept whole so callers can decide what to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LlmFailure {
    /// HTTP status, when the failure came with one.
    pub status: Option<u16>,
    /// The provider's own error code, when it sent one.
    pub provider_code: Option<String>,
    /// A human-readable message (never contains a secret).
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// How long the provider asked us to wait before trying again.
    pub retry_after: Option<Duration>,
}

/// The error type of the governance crates.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An identifier failed validation (`[A-Za-z0-9_-]{1,64}`).
    #[error("invalid {what} id {value:?}: ids are 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    InvalidId {
        /// Which id (e.g. `pipeline`).
        what: &'static str,
        /// The rejected value (truncated to 80 characters).
        value: String,
    },
    /// The caller passed an invalid value.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Nothing with that id exists.
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for (e.g. `pipeline`, `proposal`).
        what: &'static str,
        /// The id that was looked for.
        id: String,
    },
    /// The operation conflicts with existing state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The pipeline state machine refused a transition.
    #[error("illegal status transition {from} -> {to}")]
    InvalidTransition {
        /// Current status.
        from: crate::PipelineStatus,
        /// Requested status.
        to: crate::PipelineStatus,
    },
    /// A storage or coordination backend failed.
    #[error("{backend} backend error: {message}")]
    Backend {
        /// Which backend (`redis`, `sqlite`, `memory`, ...).
        backend: &'static str,
        /// What went wrong (never contains a secret).
        message: String,
        /// Whether the operation was certainly not applied and may be retried.
        retryable: bool,
        /// The backend's own error, when there is one ([`Error::with_source`]).
        #[source]
        source: Option<Cause>,
    },
    /// The LLM provider failed.
    #[error("llm error{}: {}", .0.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(), .0.message)]
    Llm(LlmFailure),
    /// The provider refused our credentials.
    #[error("llm provider refused the credentials: {0}")]
    Unauthorized(String),
    /// A budget would be exceeded; the call was not sent.
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    /// The circuit breaker is open.
    #[error("circuit breaker open; retry in {}ms", .retry_after.as_millis())]
    CircuitOpen {
        /// Time until the breaker lets a trial call through.
        retry_after: Duration,
    },
    /// The LLM provider is down for this pipeline: its circuit breaker opened and stayed open
    /// through the allowed half-open trials ([`crate::Config::breaker_trials`]). Not retryable:
    /// the pipeline ends FAILED with this message as its `failure`.
    #[error("{0}")]
    ProviderDown(String),
    /// The model's answer could not be parsed.
    #[error("malformed model output: {0}")]
    MalformedOutput(String),
    /// The agent broke its procedure.
    #[error("procedure violation: {0}")]
    ProcedureViolation(String),
    /// The agent was revoked by its error budget.
    #[error("agent revoked: {0}")]
    Revoked(String),
    /// The work was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The work timed out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A configuration value is invalid; names the variable.
    #[error("invalid configuration {var}: {message}")]
    Config {
        /// The environment variable or setting name.
        var: String,
        /// Why it is invalid.
        message: String,
    },
    /// This process no longer owns the pipeline: another node took it over (its lease
    /// expired), so the write was refused. The pipeline goes on at its new owner.
    #[error("pipeline {pipeline} is owned by another node now (lease lost); write refused")]
    Fenced {
        /// The pipeline.
        pipeline: String,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The kind of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidId { .. } | Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict(_) | Self::Fenced { .. } => ErrorKind::Conflict,
            Self::InvalidTransition { .. } => ErrorKind::InvalidTransition,
            Self::Backend { .. } => ErrorKind::Backend,
            Self::Llm(_) => ErrorKind::Llm,
            Self::Unauthorized(_) => ErrorKind::Unauthorized,
            Self::BudgetExceeded(_) => ErrorKind::BudgetExceeded,
            Self::CircuitOpen { .. } | Self::ProviderDown(_) => ErrorKind::CircuitOpen,
            Self::MalformedOutput(_) => ErrorKind::MalformedOutput,
            Self::ProcedureViolation(_) => ErrorKind::ProcedureViolation,
            Self::Revoked(_) => ErrorKind::Revoked,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Config { .. } => ErrorKind::Config,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether trying the same operation again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Backend { retryable, .. } => *retryable,
            Self::Llm(f) => f.retryable,
            Self::CircuitOpen { .. } | Self::Timeout(_) => true,
            _ => false,
        }
    }

    /// How long to wait before retrying, when the failure says so.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Llm(f) => f.retry_after,
            Self::CircuitOpen { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// Why a pipeline must end when one of its LLM calls failed with this error, or `None`:
    /// the provider cannot serve the pipeline at all, so neither retrying nor handing the work
    /// to another agent can help. That is [`Error::ProviderDown`] (the breaker gave up) and an
    /// HTTP 402 (the account is out of credits).
    #[must_use]
    pub fn provider_outage(&self) -> Option<String> {
        match self {
            Self::ProviderDown(m) => Some(m.clone()),
            Self::Llm(f) if f.status == Some(402) => {
                Some(if f.message.contains("out of credits") {
                    format!(
                        "the LLM provider refused the call (HTTP 402): {}",
                        f.message
                    )
                } else {
                    format!(
                        "the LLM provider refused the call (HTTP 402): out of credits: {}",
                        f.message
                    )
                })
            }
            _ => None,
        }
    }

    /// Shorthand for a backend error (without a [`source`](std::error::Error::source); add
    /// one with [`with_source`](Self::with_source)).
    pub fn backend(backend: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Self::Backend {
            backend,
            message: message.into(),
            retryable,
            source: None,
        }
    }

    /// This error with `cause` as its [`source`](std::error::Error::source); the message, the
    /// kind and whether it is retryable stay as they are. Only a backend error
    /// ([`Error::Backend`]) holds a cause; any other error is returned unchanged. The caller
    /// makes sure `cause`'s text holds no secret.
    ///
    /// ```
    /// use std::error::Error as _;
    /// let io = std::io::Error::from(std::io::ErrorKind::StorageFull);
    /// let e = governance_core::Error::backend("sqlite", "/data/gov.db: write failed", true)
    ///     .with_source(io);
    /// assert_eq!(e.to_string(), "sqlite backend error: /data/gov.db: write failed");
    /// let cause = e.source().expect("a source");
    /// assert_eq!(
    ///     cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind),
    ///     Some(std::io::ErrorKind::StorageFull)
    /// );
    /// ```
    #[must_use]
    pub fn with_source(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.with_cause(Cause::new(cause))
    }

    /// [`with_source`](Self::with_source) with a shared [`Cause`].
    #[must_use]
    pub fn with_cause(mut self, cause: Cause) -> Self {
        if let Self::Backend { source, .. } = &mut self {
            *source = Some(cause);
        }
        self
    }

    /// Shorthand for a not-found error.
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// Shorthand for a configuration error naming the variable.
    pub fn config(var: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            var: var.into(),
            message: message.into(),
        }
    }

    /// A short signature used by error budgets to recognise "the same error" repeated:
    /// the kind plus the HTTP status / provider code when there is one.
    #[must_use]
    pub fn signature(&self) -> String {
        match self {
            Self::Llm(f) => format!(
                "llm:{}:{}",
                f.status.map(|s| s.to_string()).unwrap_or_default(),
                f.provider_code.clone().unwrap_or_default()
            ),
            other => other.kind().as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_report_their_delay() {
        let e = Error::Llm(LlmFailure {
            status: Some(429),
            provider_code: None,
            message: "rate limited".into(),
            retryable: true,
            retry_after: Some(Duration::from_secs(3)),
        });
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.kind(), ErrorKind::Llm);
        assert_eq!(e.to_string(), "llm error (HTTP 429): rate limited");
    }

    #[test]
    fn out_of_credits_and_a_provider_down_are_outages_other_errors_are_not() {
        let llm = |status, message: &str| {
            Error::Llm(LlmFailure {
                status: Some(status),
                provider_code: None,
                message: message.into(),
                retryable: status >= 500,
                retry_after: None,
            })
        };
        let said = llm(402, "out of credits: add credits").provider_outage();
        assert_eq!(
            said.as_deref(),
            Some("the LLM provider refused the call (HTTP 402): out of credits: add credits")
        );
        let bare = llm(402, "Payment Required").provider_outage().unwrap();
        assert!(bare.contains("out of credits") && bare.contains("Payment Required"));
        let down = Error::ProviderDown("openrouter is down".into());
        assert_eq!(
            down.provider_outage().as_deref(),
            Some("openrouter is down")
        );
        assert!(!down.is_retryable());
        assert_eq!(down.kind(), ErrorKind::CircuitOpen);
        for e in [
            llm(500, "x"),
            llm(400, "x"),
            Error::CircuitOpen {
                retry_after: Duration::from_secs(1),
            },
            Error::Unauthorized("x".into()),
        ] {
            assert_eq!(e.provider_outage(), None, "{e}");
        }
    }

    #[test]
    fn a_backend_error_keeps_its_cause_and_its_message() {
        use std::error::Error as _;
        let plain = Error::backend("redis", "vote: connection refused", true);
        assert!(plain.source().is_none());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let caused = plain.clone().with_source(io);
        assert_eq!(caused.to_string(), plain.to_string());
        assert_eq!(caused.kind(), ErrorKind::Backend);
        assert!(caused.is_retryable());
        let cause = caused.source().expect("the cause");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        // the clone shares it
        assert!(caused.clone().source().is_some());
        // errors without a place for a cause stay as they are
        let other = Error::Cancelled.with_source(std::io::Error::other("x"));
        assert!(other.source().is_none());
    }

    #[test]
    fn config_error_names_the_variable() {
        let e = Error::config("ORCHESTRATION_TIMEOUT", "not a number");
        assert!(e.to_string().contains("ORCHESTRATION_TIMEOUT"));
        assert!(!e.is_retryable());
    }
}
