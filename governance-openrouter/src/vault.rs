//! [`VaultSecretSource`]: secrets from HashiCorp Vault's KV v2 engine over HTTP.

use std::time::Duration;

use async_trait::async_trait;
use governance_core::{Error, Result};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::secret_source::SecretSource;
use crate::wire::truncate;

/// Where Vault is and how to log in. `Debug` never shows the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct VaultConfig {
    /// `VAULT_ADDR`, e.g. `https://vault.internal:8200` (no trailing `/`).
    pub addr: String,
    /// `VAULT_TOKEN`, sent as `X-Vault-Token`.
    pub token: SecretString,
    /// `VAULT_NAMESPACE` (Vault Enterprise / HCP), sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// How long one read may take (connect included). Default 10 s.
    pub timeout: Duration,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("addr", &self.addr)
            .field("token", &"[REDACTED]")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl VaultConfig {
    /// A configuration with the default timeout.
    #[must_use]
    pub fn new(addr: impl Into<String>, token: SecretString) -> Self {
        Self {
            addr: addr.into().trim().trim_end_matches('/').to_owned(),
            token,
            namespace: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE` through `get`; `None` when `VAULT_ADDR`
    /// is unset (Vault not used).
    ///
    /// # Errors
    /// [`Error::Config`] naming `VAULT_TOKEN` when `VAULT_ADDR` is set without it, or
    /// `VAULT_ADDR` when it is not an http(s) URL.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(addr) = get("VAULT_ADDR") else {
            return Ok(None);
        };
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(Error::config(
                "VAULT_ADDR",
                format!("{addr:?} is not an http(s) URL"),
            ));
        }
        let token = get("VAULT_TOKEN").ok_or_else(|| {
            Error::config(
                "VAULT_TOKEN",
                "not set, but VAULT_ADDR is: give a Vault token",
            )
        })?;
        let mut c = Self::new(addr, SecretString::from(token));
        c.namespace = get("VAULT_NAMESPACE");
        Ok(Some(c))
    }
}

/// Reads secrets from Vault KV v2: `GET {VAULT_ADDR}/v1/{path}` with `X-Vault-Token`, the value
/// at `data.data.<field>`. `path` includes the mount and `data/`, as the seed writes it
/// (`secret/data/api-keys/openrouter`).
///
/// Errors (all [`Error::Backend`] with backend `vault`, never containing the token):
/// 403 → permission denied, check the `VAULT_TOKEN` policy; 404 → no secret at the path;
/// 503 → Vault is sealed or unavailable (retryable); a missing field names the field and
/// lists the fields present (names only); unreachable → retryable.
#[derive(Debug, Clone)]
pub struct VaultSecretSource {
    http: reqwest::Client,
    config: VaultConfig,
}

impl VaultSecretSource {
    /// A source for `config`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `VAULT_NAMESPACE` when it is not a valid header value;
    /// [`Error::Internal`] when the HTTP client cannot be built.
    pub fn new(config: VaultConfig) -> Result<Self> {
        if let Some(ns) = &config.namespace {
            HeaderValue::from_str(ns)
                .map_err(|_| Error::config("VAULT_NAMESPACE", "is not a valid header value"))?;
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, config })
    }

    /// From `VAULT_ADDR` / `VAULT_TOKEN` / `VAULT_NAMESPACE` read through `get` (the binary
    /// passes the process environment); `None` when `VAULT_ADDR` is unset.
    ///
    /// # Errors
    /// As [`VaultConfig::from_lookup`] and [`new`](Self::new).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        VaultConfig::from_lookup(get)?.map(Self::new).transpose()
    }

    fn error(message: String, retryable: bool) -> Error {
        Error::backend("vault", message, retryable)
    }

    /// Reads the whole secret at `path` as JSON (`data.data`).
    async fn read(&self, path: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let path = path.trim_matches('/');
        let url = format!("{}/v1/{path}", self.config.addr);
        let mut token = HeaderValue::from_str(self.config.token.expose_secret())
            .map_err(|_| Error::config("VAULT_TOKEN", "is not a valid header value"))?;
        token.set_sensitive(true);
        let mut req = self.http.get(&url).header("X-Vault-Token", token);
        if let Some(ns) = &self.config.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        // the reqwest error (its text names the URL, never the token) stays as the source
        let resp = req.send().await.map_err(|e| {
            Self::error(
                format!("cannot reach Vault at {}: {e}", self.config.addr),
                true,
            )
            .with_source(e)
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| {
            Self::error(
                format!("reading Vault's answer for {path} failed: {e}"),
                true,
            )
            .with_source(e)
        })?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let vault_errors = json
            .as_ref()
            .and_then(|j| j.get("errors"))
            .and_then(|e| e.as_array())
            .map(|a| {
                let v: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
                truncate(&v.join("; "), 300)
            })
            .filter(|s| !s.is_empty());
        let said = vault_errors
            .map(|e| format!(" (Vault says: {e})"))
            .unwrap_or_default();
        match status {
            200 => {}
            403 => {
                return Err(Self::error(
                    format!(
                        "permission denied reading {path}: check VAULT_TOKEN policy (the token \
                         needs read on this path) and that it has not expired{said}"
                    ),
                    false,
                ));
            }
            404 => {
                return Err(Self::error(
                    format!(
                        "no secret at path {path} (HTTP 404): check the KV v2 mount and that \
                         the path includes data/, e.g. secret/data/api-keys/openrouter{said}"
                    ),
                    false,
                ));
            }
            503 => {
                return Err(Self::error(
                    format!("Vault is sealed or unavailable (HTTP 503) reading {path}{said}"),
                    true,
                ));
            }
            s => {
                return Err(Self::error(
                    format!("Vault answered HTTP {s} reading {path}{said}"),
                    s == 429 || s >= 500,
                ));
            }
        }
        let Some(serde_json::Value::Object(data)) = json.and_then(|mut j| {
            j.get_mut("data")
                .and_then(|d| d.get_mut("data"))
                .map(serde_json::Value::take)
        }) else {
            return Err(Self::error(
                format!(
                    "the answer for {path} has no data.data object: is the mount KV version 2?"
                ),
                false,
            ));
        };
        Ok(data)
    }
}

#[async_trait]
impl SecretSource for VaultSecretSource {
    fn describe(&self) -> String {
        format!("vault {}", self.config.addr)
    }

    async fn get(&self, path: &str, field: &str) -> Result<Option<SecretString>> {
        let mut data = self.read(path).await?;
        match data.remove(field) {
            Some(serde_json::Value::String(v)) if !v.is_empty() => Ok(Some(SecretString::from(v))),
            Some(serde_json::Value::String(_)) => Err(Self::error(
                format!("the secret at {path} has an empty field {field:?}"),
                false,
            )),
            Some(_) => Err(Self::error(
                format!("field {field:?} of the secret at {path} is not a string"),
                false,
            )),
            None => {
                let mut present: Vec<&str> = data.keys().map(String::as_str).collect();
                present.sort_unstable();
                Err(Self::error(
                    format!(
                        "the secret at {path} has no field {field:?} (fields present: {})",
                        if present.is_empty() {
                            "none".to_owned()
                        } else {
                            present.join(", ")
                        }
                    ),
                    false,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lookup_needs_a_token_when_vault_is_configured() {
        assert!(VaultConfig::from_lookup(|_| None).unwrap().is_none());
        let e = VaultConfig::from_lookup(|k| (k == "VAULT_ADDR").then(|| "http://v:8200".into()))
            .unwrap_err();
        assert!(e.to_string().contains("VAULT_TOKEN"), "{e}");
        let c = VaultConfig::from_lookup(|k| match k {
            "VAULT_ADDR" => Some("http://v:8200/".into()),
            "VAULT_TOKEN" => Some("hvs.topsecret".into()),
            "VAULT_NAMESPACE" => Some("admin".into()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(c.addr, "http://v:8200");
        assert_eq!(c.namespace.as_deref(), Some("admin"));
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
