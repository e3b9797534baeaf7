//! What a caller asks of the engine: [`SpawnRequest`] and [`ContinueRequest`], and their
//! bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::role_settings::RoleSettingsMap;

/// The longest objective accepted by default (characters).
pub const DEFAULT_MAX_OBJECTIVE_LEN: usize = 4000;

/// What `spawn` needs.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use governance_core::{Governance, SpawnRequest};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> governance_core::Result<()> {
/// let mut req = SpawnRequest::new("Design a caching strategy");
/// req.mode = Some("local".into());
/// req.timeout = Some(Duration::from_secs(60));
/// let gov = Governance::builder().build()?;
/// gov.spawn(req).await?;
///
/// // an empty objective is the caller's mistake, refused before anything starts
/// let err = gov.spawn(SpawnRequest::new("  ")).await.unwrap_err();
/// assert_eq!(err.kind(), governance_core::ErrorKind::InvalidInput);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// What the pipeline should achieve.
    pub objective: String,
    /// Continue into orchestration after the report (default: `AUTO_ORCHESTRATE`).
    #[serde(default)]
    pub auto_continue: Option<bool>,
    /// LLM mode (`local`, `openrouter`; default: the engine's default mode).
    #[serde(default)]
    pub mode: Option<String>,
    /// Model (default: the default model of the mode's client: `local/deterministic` for the
    /// local LLM, `OPENROUTER_MODEL` for OpenRouter).
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout (default: `ORCHESTRATION_TIMEOUT`).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Per-role settings for this pipeline, laid over the engine's
    /// ([`GovernanceBuilder::role_settings`](crate::GovernanceBuilder::role_settings)) field
    /// by field; validated at spawn (an unknown role or a bad field is
    /// [`Error::InvalidInput`] naming `roles.<ROLE>.<field>`).
    #[serde(default, skip_serializing_if = "RoleSettingsMap::is_empty")]
    pub roles: RoleSettingsMap,
}

impl SpawnRequest {
    /// A request with just an objective.
    #[must_use]
    pub fn new(objective: impl Into<String>) -> Self {
        Self {
            objective: objective.into(),
            ..Self::default()
        }
    }
}

/// What `continue_pipeline` takes (the seed's `POST /api/pipeline/continue`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContinueRequest {
    /// LLM mode for the orchestration.
    #[serde(default)]
    pub mode: Option<String>,
    /// Model (default: the pipeline's model; with a `mode`, that mode's client's default model).
    #[serde(default)]
    pub model: Option<String>,
    /// Orchestration timeout.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A timeout a request may ask for: 1 second to 24 hours.
pub(crate) fn validate_timeout(t: Duration) -> Result<()> {
    if t.is_zero() || t > Duration::from_secs(86_400) {
        return Err(Error::InvalidInput(
            "timeout must be between 1 second and 24 hours".into(),
        ));
    }
    Ok(())
}
