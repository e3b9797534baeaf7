//! Which LLM a pipeline uses: the deterministic local one or OpenRouter.

use std::str::FromStr;

use governance_core::{Error, Result};

/// The seed's `mode`: `local` (the deterministic `LocalLlm` of governance-core, no network) or
/// `openrouter` (real calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LlmMode {
    /// The deterministic local LLM.
    Local,
    /// Real calls through OpenRouter.
    OpenRouter,
}

impl LlmMode {
    /// `local` or `openrouter`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::OpenRouter => "openrouter",
        }
    }

    /// `GOVERNANCE_LLM_MODE` read through `get` (the binary passes the process environment),
    /// when set and not empty.
    ///
    /// # Errors
    /// [`Error::Config`] naming `GOVERNANCE_LLM_MODE` when it is neither `local` nor
    /// `openrouter`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        match get("GOVERNANCE_LLM_MODE") {
            Some(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }
}

impl std::fmt::Display for LlmMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LlmMode {
    type Err = Error;

    /// Case-insensitive `local` or `openrouter`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "openrouter" => Ok(Self::OpenRouter),
            _ => Err(Error::config(
                "GOVERNANCE_LLM_MODE",
                format!("{s:?} is not a mode: use \"local\" or \"openrouter\""),
            )),
        }
    }
}

/// Chooses the mode: an explicit choice wins; unset means `openrouter` when a key was found
/// (environment or Vault), else `local`. Returns the reason, for the one start-up log line.
///
/// # Errors
/// [`Error::Config`] naming `GOVERNANCE_LLM_MODE` when `openrouter` is asked for without a
/// key: a missing key is never silently replaced by the local LLM.
pub fn select_mode(explicit: Option<LlmMode>, key_found: bool) -> Result<(LlmMode, &'static str)> {
    match (explicit, key_found) {
        (Some(LlmMode::OpenRouter), true) => {
            Ok((LlmMode::OpenRouter, "GOVERNANCE_LLM_MODE=openrouter"))
        }
        (Some(LlmMode::OpenRouter), false) => Err(Error::config(
            "GOVERNANCE_LLM_MODE",
            "openrouter mode needs an OpenRouter API key and none was found: set \
             OPENROUTER_API_KEY or store it in Vault at secret/data/api-keys/openrouter (field \
             api_key, with VAULT_ADDR and VAULT_TOKEN set); not falling back to local",
        )),
        (Some(LlmMode::Local), _) => Ok((LlmMode::Local, "GOVERNANCE_LLM_MODE=local")),
        (None, true) => Ok((
            LlmMode::OpenRouter,
            "GOVERNANCE_LLM_MODE unset and an OpenRouter key was found",
        )),
        (None, false) => Ok((
            LlmMode::Local,
            "GOVERNANCE_LLM_MODE unset and no OpenRouter key was found",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_modes_and_names_the_variable_otherwise() {
        assert_eq!("local".parse::<LlmMode>().unwrap(), LlmMode::Local);
        assert_eq!(
            " OpenRouter ".parse::<LlmMode>().unwrap(),
            LlmMode::OpenRouter
        );
        let e = "remote".parse::<LlmMode>().unwrap_err();
        assert!(e.to_string().contains("GOVERNANCE_LLM_MODE"), "{e}");
    }

    #[test]
    fn explicit_openrouter_without_key_is_an_error_not_a_fallback() {
        let e = select_mode(Some(LlmMode::OpenRouter), false).unwrap_err();
        assert!(e.to_string().contains("OPENROUTER_API_KEY"), "{e}");
        assert_eq!(e.kind(), governance_core::ErrorKind::Config);
    }

    #[test]
    fn unset_mode_follows_the_key() {
        assert_eq!(select_mode(None, true).unwrap().0, LlmMode::OpenRouter);
        assert_eq!(select_mode(None, false).unwrap().0, LlmMode::Local);
        assert_eq!(
            select_mode(Some(LlmMode::Local), true).unwrap().0,
            LlmMode::Local
        );
        assert_eq!(
            select_mode(Some(LlmMode::OpenRouter), true).unwrap().0,
            LlmMode::OpenRouter
        );
    }
}
