//! The per-role settings of `governance run` / `serve`: the configuration file named by
//! `GOVERNANCE_CONFIG` (TOML, a `[roles.<ROLE>]` table per role), then
//! `GOVERNANCE_ROLE_<ROLE>_<FIELD>` environment variables over it, field by field. The engine
//! checks the result when it is built (unknown role, bad value: the binary refuses to start).
//!
//! | variable | value |
//! |---|---|
//! | `GOVERNANCE_CONFIG` | path of the TOML file (unset: no file) |
//! | `GOVERNANCE_ROLE_<ROLE>_MODEL` | the role's model |
//! | `GOVERNANCE_ROLE_<ROLE>_FALLBACK_MODELS` | comma-separated fallback models |
//! | `GOVERNANCE_ROLE_<ROLE>_TEMPERATURE` | 0.0–2.0 |
//! | `GOVERNANCE_ROLE_<ROLE>_MAX_TOKENS` | completion-token cap per call |
//! | `GOVERNANCE_ROLE_<ROLE>_INSTRUCTIONS` | appended to the role's system prompt |
//! | `GOVERNANCE_ROLE_<ROLE>_VOTES` | `true` / `false` (custom roles only) |
//! | `GOVERNANCE_ROLE_<ROLE>_REQUIRED` | `true` / `false`: its approval is required for consensus (default `true` for BETA only) |
//!
//! `<ROLE>` is the role's name as written (`ALPHA`, `BETA`, `GAMMA`, `REPORTER`, a custom
//! role's name); a name with `-` can only be set in the file.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use governance_core::{RoleSettings, RoleSettingsMap};
use serde::Deserialize;

/// The configuration file (`GOVERNANCE_CONFIG`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Settings by role name.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSettings>,
    /// Model prices for money budgets (`crate::prices`), by model id.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::prices::PriceEntry>,
}

impl ConfigFile {
    /// Parses the file's text; `origin` names it in errors.
    ///
    /// # Errors
    /// Invalid TOML, an unknown key, or a value of the wrong type (the message says where).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        toml::from_str(text).with_context(|| format!("reading {origin}"))
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, or [`parse`](Self::parse) fails.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("GOVERNANCE_CONFIG: cannot read {}", path.display()))?;
        Self::parse(&text, &format!("GOVERNANCE_CONFIG {}", path.display()))
    }
}

/// The price table of the file named by `GOVERNANCE_CONFIG` in `vars` (empty without one).
///
/// # Errors
/// The file cannot be read or parsed; a price is invalid.
pub fn load_prices(
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<std::collections::HashMap<String, governance_core::ModelPrice>> {
    let vars: BTreeMap<String, String> = vars.into_iter().collect();
    match vars
        .get("GOVERNANCE_CONFIG")
        .filter(|p| !p.trim().is_empty())
    {
        Some(path) => crate::prices::to_prices(&ConfigFile::read(Path::new(path.trim()))?.prices),
        None => Ok(std::collections::HashMap::new()),
    }
}

/// The fields a `GOVERNANCE_ROLE_<ROLE>_<FIELD>` variable may set (longest suffixes first,
/// so `_FALLBACK_MODELS` is not read as `_MODEL...`).
const FIELDS: [&str; 7] = [
    "FALLBACK_MODELS",
    "INSTRUCTIONS",
    "TEMPERATURE",
    "MAX_TOKENS",
    "REQUIRED",
    "MODEL",
    "VOTES",
];

/// The per-role settings from `vars` (the process environment): the file named by
/// `GOVERNANCE_CONFIG`, then the `GOVERNANCE_ROLE_*` variables over it.
///
/// # Errors
/// The file cannot be read or parsed; a `GOVERNANCE_ROLE_*` variable names no known field or
/// holds a value of the wrong type (the message names the variable).
pub fn load(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<RoleSettingsMap> {
    let vars: BTreeMap<String, String> = vars.into_iter().collect();
    let mut roles = match vars
        .get("GOVERNANCE_CONFIG")
        .filter(|p| !p.trim().is_empty())
    {
        Some(path) => ConfigFile::read(Path::new(path.trim()))?.roles,
        None => RoleSettingsMap::new(),
    };
    for (name, value) in &vars {
        let Some(rest) = name.strip_prefix("GOVERNANCE_ROLE_") else {
            continue;
        };
        let Some((role, field)) = FIELDS.iter().find_map(|f| {
            rest.strip_suffix(f)
                .and_then(|r| r.strip_suffix('_'))
                .filter(|r| !r.is_empty())
                .map(|r| (r, *f))
        }) else {
            bail!(
                "{name}: not a role setting (GOVERNANCE_ROLE_<ROLE>_<FIELD>, FIELD one of {})",
                FIELDS.join(", ")
            );
        };
        let over = env_field(field, value).with_context(|| format!("{name}={value:?}"))?;
        let entry = roles.entry(role.to_owned()).or_default();
        *entry = entry.overlay(&over);
    }
    Ok(roles)
}

fn env_field(field: &str, value: &str) -> anyhow::Result<RoleSettings> {
    let v = value.trim();
    let mut s = RoleSettings::default();
    match field {
        "MODEL" => s.model = Some(v.to_owned()),
        "FALLBACK_MODELS" => {
            s.fallback_models = Some(
                v.split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
        "TEMPERATURE" => s.temperature = Some(v.parse().context("expected a number")?),
        "MAX_TOKENS" => s.max_tokens = Some(v.parse().context("expected a whole number")?),
        // the text as given: leading/trailing spaces may matter to nobody, but newlines do
        "INSTRUCTIONS" => s.instructions = Some(value.to_owned()),
        "VOTES" => s.votes = Some(v.parse().context("expected true or false")?),
        "REQUIRED" => s.required = Some(v.parse().context("expected true or false")?),
        other => bail!("unknown field {other}"),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[roles.ALPHA]
model = "openai/gpt-4o-mini"
temperature = 0.7

[roles.BETA]
model = "anthropic/claude-sonnet-4"
fallback_models = ["openai/gpt-4o"]
temperature = 0.0
max_tokens = 800
instructions = """
Reject any proposal without a rollback plan."""

[roles.CRITIC]
votes = false

[roles.AUDITOR]
required = true
"#;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_every_key_of_the_file() {
        let f = ConfigFile::parse(EXAMPLE, "example").unwrap();
        let beta = &f.roles["BETA"];
        assert_eq!(beta.model.as_deref(), Some("anthropic/claude-sonnet-4"));
        assert_eq!(
            beta.fallback_models.as_deref(),
            Some(&["openai/gpt-4o".to_owned()][..])
        );
        assert_eq!(beta.temperature, Some(0.0));
        assert_eq!(beta.max_tokens, Some(800));
        assert_eq!(
            beta.instructions.as_deref(),
            Some("Reject any proposal without a rollback plan.")
        );
        assert_eq!(f.roles["ALPHA"].temperature, Some(0.7));
        assert_eq!(f.roles["CRITIC"].votes, Some(false));
        assert_eq!(f.roles["AUDITOR"].required, Some(true));
    }

    #[test]
    fn refuses_unknown_keys_and_wrong_types() {
        let e = ConfigFile::parse("[roles.BETA]\nmodle = \"x\"\n", "f").unwrap_err();
        assert!(format!("{e:#}").contains("modle"), "{e:#}");
        let e = ConfigFile::parse("[role.BETA]\nmodel = \"x\"\n", "f").unwrap_err();
        assert!(format!("{e:#}").contains("role"), "{e:#}");
        let e = ConfigFile::parse("[roles.BETA]\nmax_tokens = \"many\"\n", "f").unwrap_err();
        assert!(format!("{e:#}").contains("max_tokens"), "{e:#}");
    }

    #[test]
    fn the_environment_overrides_the_file_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("governance.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let roles = load(vars(&[
            ("GOVERNANCE_CONFIG", path.to_str().unwrap()),
            ("GOVERNANCE_ROLE_BETA_MODEL", "google/gemini-2.5-pro"),
            ("GOVERNANCE_ROLE_BETA_FALLBACK_MODELS", "a/one, b/two"),
            ("GOVERNANCE_ROLE_GAMMA_MAX_TOKENS", "512"),
            ("GOVERNANCE_ROLE_MY_CRITIC_VOTES", "false"),
            ("GOVERNANCE_ROLE_BETA_REQUIRED", "false"),
            ("GOVERNANCE_ROLE_AUDITOR_REQUIRED", "false"),
            ("GOVERNANCE_MODE", "ignored"),
        ]))
        .unwrap();
        let beta = &roles["BETA"];
        assert_eq!(beta.model.as_deref(), Some("google/gemini-2.5-pro"));
        assert_eq!(
            beta.fallback_models.as_deref(),
            Some(&["a/one".to_owned(), "b/two".to_owned()][..])
        );
        assert_eq!(beta.max_tokens, Some(800), "the file's, not overridden");
        assert_eq!(roles["GAMMA"].max_tokens, Some(512));
        assert_eq!(roles["MY_CRITIC"].votes, Some(false));
        assert_eq!(beta.required, Some(false));
        assert_eq!(
            roles["AUDITOR"].required,
            Some(false),
            "the variable over the file"
        );
        assert_eq!(roles["ALPHA"].model.as_deref(), Some("openai/gpt-4o-mini"));
    }

    #[test]
    fn bad_variables_name_themselves() {
        let e = load(vars(&[("GOVERNANCE_ROLE_BETA_TEMPERATURE", "hot")])).unwrap_err();
        assert!(
            format!("{e:#}").contains("GOVERNANCE_ROLE_BETA_TEMPERATURE"),
            "{e:#}"
        );
        let e = load(vars(&[("GOVERNANCE_ROLE_BETA_REQUIRED", "yes")])).unwrap_err();
        assert!(
            format!("{e:#}").contains("GOVERNANCE_ROLE_BETA_REQUIRED"),
            "{e:#}"
        );
        let e = load(vars(&[("GOVERNANCE_ROLE_BETA_COLOUR", "red")])).unwrap_err();
        assert!(
            format!("{e:#}").contains("GOVERNANCE_ROLE_BETA_COLOUR"),
            "{e:#}"
        );
        let e = load(vars(&[("GOVERNANCE_ROLE_MODEL", "x/y")])).unwrap_err();
        assert!(format!("{e:#}").contains("GOVERNANCE_ROLE_MODEL"), "{e:#}");
        let e = load(vars(&[(
            "GOVERNANCE_CONFIG",
            "/nonexistent/governance.toml",
        )]))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/governance.toml"),
            "{e:#}"
        );
        assert!(load(vars(&[])).unwrap().is_empty());
    }
}
