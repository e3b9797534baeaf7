//! The price table of the configuration file (`GOVERNANCE_CONFIG`): a `[prices."<model>"]`
//! table per model, in USD per million tokens, which overrides OpenRouter's model list for
//! money budgets (`GOVERNANCE_MAX_COST_PER_PIPELINE_USD`, `GOVERNANCE_MAX_COST_PER_AGENT_USD`):
//!
//! ```toml
//! [prices."anthropic/claude-sonnet-4"]
//! prompt = 3.0        # USD per million prompt tokens
//! completion = 15.0   # USD per million completion tokens
//! request = 0.0       # USD per request (optional)
//! ```

use std::collections::{BTreeMap, HashMap};

use anyhow::bail;
use governance_core::{Cost, ModelPrice};
use serde::Deserialize;

/// One model's row of the price table.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// USD per million prompt tokens.
    pub prompt: f64,
    /// USD per million completion tokens.
    pub completion: f64,
    /// USD per request.
    #[serde(default)]
    pub request: f64,
}

/// The table as prices by model id.
///
/// # Errors
/// A negative or non-finite price, or an empty model name (the message names the model and
/// the field).
pub fn to_prices(
    table: &BTreeMap<String, PriceEntry>,
) -> anyhow::Result<HashMap<String, ModelPrice>> {
    let mut out = HashMap::new();
    for (model, e) in table {
        if model.trim().is_empty() {
            bail!("GOVERNANCE_CONFIG [prices]: a model name is empty");
        }
        for (field, v) in [
            ("prompt", e.prompt),
            ("completion", e.completion),
            ("request", e.request),
        ] {
            if !v.is_finite() || v < 0.0 {
                bail!(
                    "GOVERNANCE_CONFIG [prices.{model:?}] {field} = {v}: a price must be a \
                     number of USD at least 0"
                );
            }
        }
        let mut price = ModelPrice::from_usd_per_million(e.prompt, e.completion);
        price.request = Cost::from_usd_ceil(e.request);
        out.insert(model.clone(), price);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role_config::ConfigFile;

    #[test]
    fn reads_usd_per_million_tokens() {
        let f = ConfigFile::parse(
            "[prices.\"vendor/model\"]\nprompt = 3.0\ncompletion = 15.0\n",
            "test",
        )
        .unwrap();
        let p = to_prices(&f.prices).unwrap();
        assert_eq!(
            p["vendor/model"],
            ModelPrice::from_usd_per_token(0.000_003, 0.000_015, 0.0)
        );
    }

    #[test]
    fn refuses_negative_prices_and_unknown_fields() {
        let f = ConfigFile::parse("[prices.m]\nprompt = -1.0\ncompletion = 1.0\n", "test").unwrap();
        let e = to_prices(&f.prices).unwrap_err().to_string();
        assert!(e.contains("prompt") && e.contains("\"m\""), "{e}");
        assert!(
            ConfigFile::parse(
                "[prices.m]\nprompt = 1.0\ncompletion = 1.0\ncost = 2\n",
                "t"
            )
            .is_err()
        );
    }
}
