//! Model prices for money budgets: OpenRouter's model list (`GET {base}/models`, prices per
//! token as strings in `pricing.prompt` / `pricing.completion` / `pricing.request`), fetched
//! at start and refreshed every `OPENROUTER_MODELS_REFRESH` seconds, under a price table from
//! the config file that overrides it.

use std::collections::HashMap;
use std::sync::Arc;

use governance_core::{Error, ModelPrice, Result};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::client::OpenRouterClient;
use crate::failure;

#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
struct ModelEntry {
    id: String,
    #[serde(default)]
    pricing: Option<Pricing>,
}

#[derive(Debug, Deserialize)]
struct Pricing {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    completion: Option<String>,
    #[serde(default)]
    request: Option<String>,
}

/// One price component in USD: a missing one is free; a negative (OpenRouter's `-1`,
/// "variable", e.g. `openrouter/auto`) or unparseable one makes the model's price unknown.
fn component(v: Option<&str>) -> Option<f64> {
    match v {
        None => Some(0.0),
        Some(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0),
    }
}

/// The prices in a `GET /models` body (models of unknown price are left out).
fn parse_models(body: &[u8]) -> Result<HashMap<String, ModelPrice>> {
    let list: ModelList = serde_json::from_slice(body).map_err(|e| {
        Error::MalformedOutput(format!(
            "OpenRouter's model list is not the expected JSON: {e}"
        ))
    })?;
    Ok(list
        .data
        .into_iter()
        .filter_map(|m| {
            let p = m.pricing?;
            let price = ModelPrice::from_usd_per_token(
                component(p.prompt.as_deref())?,
                component(p.completion.as_deref())?,
                component(p.request.as_deref())?,
            );
            Some((m.id, price))
        })
        .collect())
}

impl OpenRouterClient {
    /// Sets prices that override OpenRouter's model list (the config file's price table),
    /// by model id.
    pub fn set_prices(&self, prices: HashMap<String, ModelPrice>) {
        *self.prices().overrides.write() = prices;
    }

    /// Fetches OpenRouter's model list (`GET {base}/models`) and replaces the catalog prices
    /// with it. Returns how many models have a known price.
    ///
    /// # Errors
    /// The request failed, timed out (`OPENROUTER_REQUEST_TIMEOUT`) or the body is not a model
    /// list; the previous catalog is kept then.
    pub async fn refresh_models(&self) -> Result<usize> {
        let url = format!("{}/models", self.config().base_url);
        let mut auth = reqwest::header::HeaderValue::from_str(&format!(
            "Bearer {}",
            self.config().api_key.expose_secret()
        ))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        let call = async {
            let resp = self
                .http()
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, auth)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.config().request_timeout, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(failure::from_reqwest(&e, &self.timeouts_text())),
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "OpenRouter's model list did not come within {:?} \
                     (OPENROUTER_REQUEST_TIMEOUT)",
                    self.config().request_timeout
                )));
            }
        };
        if !status.is_success() {
            return Err(failure::from_response_body(status.as_u16(), &body, None));
        }
        let prices = parse_models(&body)?;
        let n = prices.len();
        *self.prices().catalog.write() = prices;
        Ok(n)
    }

    /// Fetches the model list now and then every `OPENROUTER_MODELS_REFRESH`
    /// (`config().models_refresh`; zero: only now), in a background task that ends when the
    /// last clone of this client is dropped. A failed fetch is logged (without the key) and
    /// the previous prices are kept.
    pub async fn start_model_prices(&self) {
        log_refresh(self.refresh_models().await);
        let every = self.config().models_refresh;
        if every.is_zero() {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if Arc::strong_count(client.prices()) <= 1 {
                    return; // only this task's clone is left: nobody asks for prices any more
                }
                log_refresh(client.refresh_models().await);
            }
        });
    }
}

fn log_refresh(r: Result<usize>) {
    match r {
        Ok(n) => tracing::info!(models = n, "OpenRouter model prices loaded"),
        Err(e) => tracing::warn!(
            error.kind = %e.kind(),
            error = %e,
            "cannot load OpenRouter's model list; keeping the prices known so far \
             (a money budget refuses calls to models of unknown price)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_per_token_prices_and_skips_variable_ones() {
        let body = br#"{"data":[
            {"id":"a/cheap","pricing":{"prompt":"0.000003","completion":"0.000015","request":"0"}},
            {"id":"b/free","pricing":{"prompt":"0","completion":"0"}},
            {"id":"openrouter/auto","pricing":{"prompt":"-1","completion":"-1"}},
            {"id":"c/none"}
        ]}"#;
        let m = parse_models(body).unwrap();
        assert_eq!(
            m["a/cheap"],
            ModelPrice::from_usd_per_token(0.000_003, 0.000_015, 0.0)
        );
        assert_eq!(m["b/free"], ModelPrice::FREE);
        assert!(!m.contains_key("openrouter/auto"));
        assert!(!m.contains_key("c/none"));
        assert!(parse_models(b"<html>").is_err());
    }
}
