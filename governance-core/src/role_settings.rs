//! Per-role settings: each role's model, fallback models, temperature, completion-token cap
//! and extra instructions, whether its votes count and whether its approval is required for
//! consensus.
//!
//! Three layers, each overriding the one before field by field: the built-in defaults (the
//! pipeline's model, temperature 0.2, `Config::budgets.max_completion_tokens`, the built-in
//! prompts, every role votes), the engine's settings
//! ([`GovernanceBuilder::role_settings`](crate::GovernanceBuilder::role_settings), which the
//! `governance` binary reads from `GOVERNANCE_CONFIG` and `GOVERNANCE_ROLE_*`), and the
//! spawn request's [`SpawnRequest::roles`](crate::SpawnRequest::roles). The resolved settings
//! are stored in the pipeline's record (`PipelineRecord::roles`), so a resumed pipeline runs
//! with the settings it was spawned with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The highest temperature accepted (OpenRouter's range is 0–2).
pub const MAX_TEMPERATURE: f64 = 2.0;

/// The longest `instructions` accepted (characters).
pub const MAX_INSTRUCTIONS_LEN: usize = 8000;

/// Settings of one role; every field is optional (unset: the layer below decides).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    /// Model the role asks (default: the pipeline's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Models tried in order when the primary one fails (OpenRouter's `models` list; default:
    /// the client's `OPENROUTER_FALLBACK_MODELS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_models: Option<Vec<String>>,
    /// Sampling temperature, 0.0–2.0 (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Upper bound on completion tokens per call, 1 up to
    /// `GOVERNANCE_MAX_COMPLETION_TOKENS` (default: that maximum). A whole number (`300` or
    /// `300.0`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_u32"
    )]
    pub max_tokens: Option<u32>,
    /// Text appended to the role's system prompt (the built-in prompt stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Whether the role's votes count (default `true`). Only custom roles may be set to
    /// `false`: ALPHA, BETA and GAMMA always vote. A role whose votes do not count is refused
    /// by [`AgentContext::vote`](crate::AgentContext::vote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<bool>,
    /// Whether the role's approval is required for consensus (default: `true` for BETA, the
    /// evaluator, `false` for every other role; see [`ConsensusRule`](crate::ConsensusRule)).
    /// A role whose votes do not count cannot be required; neither can GAMMA (the mediator,
    /// spawned only when needed) nor REPORTER (it does not vote).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "required_bool"
    )]
    pub required: Option<bool>,
}

/// Settings by role name (`ALPHA`, `BETA`, `GAMMA`, `REPORTER`, or a custom role's name).
pub type RoleSettingsMap = BTreeMap<String, RoleSettings>;

impl RoleSettings {
    /// `self` with every field `over` sets replaced by `over`'s.
    #[must_use]
    pub fn overlay(&self, over: &Self) -> Self {
        Self {
            model: over.model.clone().or_else(|| self.model.clone()),
            fallback_models: over
                .fallback_models
                .clone()
                .or_else(|| self.fallback_models.clone()),
            temperature: over.temperature.or(self.temperature),
            max_tokens: over.max_tokens.or(self.max_tokens),
            instructions: over
                .instructions
                .clone()
                .or_else(|| self.instructions.clone()),
            votes: over.votes.or(self.votes),
            required: over.required.or(self.required),
        }
    }

    /// Whether the approval of `role` (whose settings these are) is required for consensus:
    /// the `required` setting, else `true` for BETA only.
    #[must_use]
    pub fn is_required(&self, role: &str) -> bool {
        self.required.unwrap_or(role == "BETA")
    }

    /// Whether the role's votes count.
    #[must_use]
    pub fn counts_votes(&self) -> bool {
        self.votes.unwrap_or(true)
    }

    /// Checks the settings of `role`; `max_completion_tokens` is the engine's cap. Errors name
    /// the field as `roles.<ROLE>.<field>`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or over-long model name, an empty fallback model,
    /// a temperature outside 0.0–2.0, `max_tokens` 0 or above the cap, over-long
    /// instructions, `votes: false` on a built-in role, or `required: true` on a role whose
    /// votes do not count, on GAMMA or on REPORTER.
    pub fn validate(&self, role: &str, max_completion_tokens: u32) -> Result<()> {
        let bad = |field: &str, why: &str| {
            Err(Error::InvalidInput(format!("roles.{role}.{field} {why}")))
        };
        if let Some(m) = &self.model
            && !valid_model(m)
        {
            return bad(
                "model",
                "must be a model name (1-200 printable ASCII characters without spaces)",
            );
        }
        if let Some(f) = &self.fallback_models {
            if f.len() > 8 {
                return bad("fallback_models", "may name at most 8 models");
            }
            if !f.iter().all(|m| valid_model(m)) {
                return bad(
                    "fallback_models",
                    "must be model names (1-200 printable ASCII characters without spaces)",
                );
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=MAX_TEMPERATURE).contains(&t)
        {
            return bad("temperature", "must be between 0.0 and 2.0");
        }
        if let Some(n) = self.max_tokens
            && (n == 0 || n > max_completion_tokens)
        {
            return bad(
                "max_tokens",
                &format!(
                    "must be between 1 and {max_completion_tokens} (GOVERNANCE_MAX_COMPLETION_TOKENS)"
                ),
            );
        }
        if let Some(i) = &self.instructions
            && i.chars().count() > MAX_INSTRUCTIONS_LEN
        {
            return bad(
                "instructions",
                &format!("must be at most {MAX_INSTRUCTIONS_LEN} characters"),
            );
        }
        let builtin = matches!(role, "ALPHA" | "BETA" | "GAMMA" | "REPORTER");
        if self.votes == Some(false) && builtin {
            return bad(
                "votes",
                "cannot be false for a built-in role (ALPHA, BETA and GAMMA always vote)",
            );
        }
        if self.required == Some(true) {
            if self.votes == Some(false) {
                return bad(
                    "required",
                    "cannot be true for a role whose votes do not count (votes = false)",
                );
            }
            if role == "GAMMA" || role == "REPORTER" {
                return bad(
                    "required",
                    "cannot be true for GAMMA (the mediator, spawned only when needed) or \
                     REPORTER (it does not vote)",
                );
            }
        }
        Ok(())
    }
}

/// 1-200 printable ASCII characters without spaces (as `POST /api/spawn`'s `model`).
fn valid_model(m: &str) -> bool {
    !m.is_empty() && m.len() <= 200 && m.bytes().all(|b| b.is_ascii_graphic())
}

/// `true`, `false` or null, an error naming the field otherwise (serde's own does not).
fn required_bool<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<bool>, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
        Some(other) => Err(D::Error::custom(format!(
            "required must be true or false, not {other}"
        ))),
    }
}

/// A whole number that fits `u32`: JSON does not tell `300` from `300.0`, so both are read.
fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    use serde::de::Error as _;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let u = f as u64;
                u
            })
    });
    whole
        .and_then(|u| u32::try_from(u).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "max_tokens must be a whole number from 0 to {}, not {n}",
                u32::MAX
            ))
        })
}

/// Checks a whole map: every role is one the engine knows (`known`) and every role's settings
/// are valid.
///
/// # Errors
/// [`Error::InvalidInput`] naming the first offending field (`roles.<ROLE>` for an unknown
/// role).
pub(crate) fn validate_map(
    map: &RoleSettingsMap,
    known: &[String],
    max_completion_tokens: u32,
) -> Result<()> {
    for (role, s) in map {
        if !known.iter().any(|k| k == role) {
            return Err(Error::InvalidInput(format!(
                "roles.{role} is not a role of this engine (known: {})",
                known.join(", ")
            )));
        }
        s.validate(role, max_completion_tokens)?;
    }
    Ok(())
}

/// Checks a spawn request's settings (`over`) alone, then laid over the engine's (`base`):
/// a contradiction between the layers (the engine's `votes = false` with the request's
/// `required = true`) is refused too, naming the field.
///
/// # Errors
/// As [`validate_map`].
pub(crate) fn validate_over(
    base: &RoleSettingsMap,
    over: &RoleSettingsMap,
    known: &[String],
    max_completion_tokens: u32,
) -> Result<()> {
    validate_map(over, known, max_completion_tokens)?;
    validate_map(&overlay_map(base, over), known, max_completion_tokens)
}

/// `base` with `over` laid on top, role by role.
#[must_use]
pub(crate) fn overlay_map(base: &RoleSettingsMap, over: &RoleSettingsMap) -> RoleSettingsMap {
    let mut out = base.clone();
    for (role, s) in over {
        let merged = out.get(role).map_or_else(|| s.clone(), |b| b.overlay(s));
        out.insert(role.clone(), merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["ALPHA", "BETA", "GAMMA", "REPORTER", "CRITIC"]
            .map(String::from)
            .to_vec()
    }

    fn err(map: &RoleSettingsMap) -> String {
        validate_map(map, &known(), 4096).unwrap_err().to_string()
    }

    #[test]
    fn overlay_replaces_only_what_is_set() {
        let base = RoleSettings {
            model: Some("a/base".into()),
            temperature: Some(0.5),
            instructions: Some("be brief".into()),
            ..RoleSettings::default()
        };
        let over = RoleSettings {
            model: Some("b/over".into()),
            votes: Some(false),
            ..RoleSettings::default()
        };
        let m = base.overlay(&over);
        assert_eq!(m.model.as_deref(), Some("b/over"));
        assert_eq!(m.temperature, Some(0.5));
        assert_eq!(m.instructions.as_deref(), Some("be brief"));
        assert!(!m.counts_votes());
    }

    #[test]
    fn overlay_map_merges_role_by_role() {
        let base = RoleSettingsMap::from([(
            "BETA".to_owned(),
            RoleSettings {
                model: Some("a/m".into()),
                max_tokens: Some(100),
                ..RoleSettings::default()
            },
        )]);
        let over = RoleSettingsMap::from([
            (
                "BETA".to_owned(),
                RoleSettings {
                    max_tokens: Some(50),
                    ..RoleSettings::default()
                },
            ),
            (
                "ALPHA".to_owned(),
                RoleSettings {
                    temperature: Some(1.0),
                    ..RoleSettings::default()
                },
            ),
        ]);
        let m = overlay_map(&base, &over);
        assert_eq!(m["BETA"].model.as_deref(), Some("a/m"));
        assert_eq!(m["BETA"].max_tokens, Some(50));
        assert_eq!(m["ALPHA"].temperature, Some(1.0));
    }

    #[test]
    fn validation_names_the_field() {
        let one = |role: &str, s: RoleSettings| RoleSettingsMap::from([(role.to_owned(), s)]);
        assert!(err(&one("NOPE", RoleSettings::default())).contains("roles.NOPE"));
        let s = RoleSettings {
            model: Some(String::new()),
            ..RoleSettings::default()
        };
        assert!(err(&one("BETA", s)).contains("roles.BETA.model"));
        let s = RoleSettings {
            temperature: Some(2.5),
            ..RoleSettings::default()
        };
        assert!(err(&one("BETA", s)).contains("roles.BETA.temperature"));
        let s = RoleSettings {
            temperature: Some(f64::NAN),
            ..RoleSettings::default()
        };
        assert!(err(&one("BETA", s)).contains("roles.BETA.temperature"));
        let s = RoleSettings {
            max_tokens: Some(0),
            ..RoleSettings::default()
        };
        assert!(err(&one("ALPHA", s)).contains("roles.ALPHA.max_tokens"));
        let s = RoleSettings {
            max_tokens: Some(5000),
            ..RoleSettings::default()
        };
        assert!(err(&one("ALPHA", s)).contains("roles.ALPHA.max_tokens"));
        let s = RoleSettings {
            fallback_models: Some(vec!["ok/m".into(), " ".into()]),
            ..RoleSettings::default()
        };
        assert!(err(&one("ALPHA", s)).contains("roles.ALPHA.fallback_models"));
        let s = RoleSettings {
            votes: Some(false),
            ..RoleSettings::default()
        };
        assert!(err(&one("BETA", s.clone())).contains("roles.BETA.votes"));
        assert!(validate_map(&one("CRITIC", s), &known(), 4096).is_ok());
        let s = RoleSettings {
            votes: Some(false),
            required: Some(true),
            ..RoleSettings::default()
        };
        assert!(err(&one("CRITIC", s)).contains("roles.CRITIC.required"));
        let s = RoleSettings {
            required: Some(true),
            ..RoleSettings::default()
        };
        assert!(err(&one("GAMMA", s.clone())).contains("roles.GAMMA.required"));
        assert!(err(&one("REPORTER", s.clone())).contains("roles.REPORTER.required"));
        assert!(validate_map(&one("CRITIC", s), &known(), 4096).is_ok());
    }

    #[test]
    fn beta_is_required_by_default_and_nobody_else() {
        let unset = RoleSettings::default();
        assert!(unset.is_required("BETA"));
        assert!(!unset.is_required("ALPHA") && !unset.is_required("CRITIC"));
        let off = RoleSettings {
            required: Some(false),
            ..RoleSettings::default()
        };
        assert!(!off.is_required("BETA"));
        let on = RoleSettings {
            required: Some(true),
            ..RoleSettings::default()
        };
        assert!(on.is_required("CRITIC"));
        assert_eq!(off.overlay(&on).required, Some(true));
    }

    #[test]
    fn max_tokens_reads_whole_numbers_only() {
        let s: RoleSettings = serde_json::from_str(r#"{"max_tokens": 300.0}"#).unwrap();
        assert_eq!(s.max_tokens, Some(300));
        assert!(serde_json::from_str::<RoleSettings>(r#"{"max_tokens": 1.5}"#).is_err());
        assert!(serde_json::from_str::<RoleSettings>(r#"{"max_tokens": -1}"#).is_err());
        assert!(serde_json::from_str::<RoleSettings>(r#"{"max_tokens": 4294967296}"#).is_err());
        let s: RoleSettings = serde_json::from_str(r#"{"max_tokens": null}"#).unwrap();
        assert_eq!(s.max_tokens, None);
    }

    #[test]
    fn required_reads_booleans_only_and_names_itself() {
        let s: RoleSettings = serde_json::from_str(r#"{"required": true}"#).unwrap();
        assert_eq!(s.required, Some(true));
        let s: RoleSettings = serde_json::from_str(r#"{"required": null}"#).unwrap();
        assert_eq!(s.required, None);
        let e = serde_json::from_str::<RoleSettings>(r#"{"required": "yes"}"#).unwrap_err();
        assert!(e.to_string().contains("required"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<RoleSettings>(r#"{"modle": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("modle"), "{e}");
    }
}
