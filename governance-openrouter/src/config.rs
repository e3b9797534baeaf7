//! [`OpenRouterConfig`]: where to send requests, with which key, model and timeouts.

use std::time::Duration;

use governance_core::{DEFAULT_MODEL, parse_secs};
use governance_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};

/// OpenRouter's public API root.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";

/// Settings of an [`OpenRouterClient`](crate::OpenRouterClient).
///
/// `Debug` shows everything but the API key, which prints as `[REDACTED]`.
///
/// | field | variable | default |
/// |---|---|---|
/// | `base_url` | `OPENROUTER_BASE_URL` | `https://openrouter.ai/api/v1` |
/// | `api_key` | `OPENROUTER_API_KEY` (or a [`SecretSource`](crate::SecretSource)) | required |
/// | `model` | `OPENROUTER_MODEL` | `anthropic/claude-sonnet-4` |
/// | `fallback_models` | `OPENROUTER_FALLBACK_MODELS` (comma-separated) | none |
/// | `http_referer` | `OPENROUTER_HTTP_REFERER` | none |
/// | `app_title` | `OPENROUTER_APP_TITLE` | none |
/// | `connect_timeout` | `OPENROUTER_CONNECT_TIMEOUT` (seconds) | 10 s |
/// | `request_timeout` | `OPENROUTER_REQUEST_TIMEOUT` (seconds) | 120 s |
/// | `stream_idle_timeout` | `OPENROUTER_STREAM_IDLE_TIMEOUT` (seconds) | 60 s |
/// | `models_refresh` | `OPENROUTER_MODELS_REFRESH` (whole seconds; 0: never) | 3600 s |
#[derive(Clone)]
#[non_exhaustive]
pub struct OpenRouterConfig {
    /// API root without a trailing slash; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// The API key, sent as `Authorization: Bearer <key>`.
    pub api_key: SecretString,
    /// The model used when a request names none.
    pub model: String,
    /// Models OpenRouter tries, in order, when the primary one fails or is unavailable
    /// (sent as its `models` list, after the primary model).
    pub fallback_models: Vec<String>,
    /// `HTTP-Referer` attribution header (your site's URL), when set.
    pub http_referer: Option<String>,
    /// `X-Title` attribution header (your app's name), when set.
    pub app_title: Option<String>,
    /// How long establishing a connection (TCP + TLS) may take.
    pub connect_timeout: Duration,
    /// How long a non-streaming call may take in all (send + whole body); for a streaming call,
    /// how long until the response headers arrive.
    pub request_timeout: Duration,
    /// For a streaming call: the longest silence between two pieces of the stream (OpenRouter's
    /// keep-alive comments count as activity).
    pub stream_idle_timeout: Duration,
    /// How often the model list (prices for money budgets) is fetched again; zero: only at
    /// start ([`OpenRouterClient::start_model_prices`](crate::OpenRouterClient::start_model_prices)).
    pub models_refresh: Duration,
}

impl std::fmt::Debug for OpenRouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRouterConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .field("model", &self.model)
            .field("fallback_models", &self.fallback_models)
            .field("http_referer", &self.http_referer)
            .field("app_title", &self.app_title)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("models_refresh", &self.models_refresh)
            .finish()
    }
}

impl OpenRouterConfig {
    /// Defaults with the given key.
    #[must_use]
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            model: DEFAULT_MODEL.to_owned(),
            fallback_models: Vec::new(),
            http_referer: None,
            app_title: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            stream_idle_timeout: Duration::from_secs(60),
            models_refresh: Duration::from_secs(3600),
        }
    }

    /// Reads the settings (`OPENROUTER_MODEL`, `OPENROUTER_BASE_URL`, ...) through `get`; the
    /// `governance` binary passes the process environment (`|k| std::env::var(k).ok()`), an
    /// embedder may pass its own configuration. The key is `api_key` when given (e.g. from
    /// [`resolve_openrouter_key`](crate::resolve_openrouter_key)), else `OPENROUTER_API_KEY`.
    /// This crate never reads the environment itself.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that is missing or invalid.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        api_key: Option<SecretString>,
    ) -> Result<Self> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let api_key = match api_key {
            Some(k) => k,
            None => get("OPENROUTER_API_KEY")
                .map(SecretString::from)
                .ok_or_else(|| {
                    Error::config(
                        "OPENROUTER_API_KEY",
                        "not set: give the OpenRouter API key (or store it in Vault at \
                     secret/data/api-keys/openrouter, field api_key)",
                    )
                })?,
        };
        let mut c = Self::new(api_key);
        if let Some(v) = get("OPENROUTER_BASE_URL") {
            c.base_url = v;
        }
        if let Some(v) = get("OPENROUTER_MODEL") {
            c.model = v;
        }
        if let Some(v) = get("OPENROUTER_FALLBACK_MODELS") {
            c.fallback_models = v
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
        }
        c.http_referer = get("OPENROUTER_HTTP_REFERER");
        c.app_title = get("OPENROUTER_APP_TITLE");
        if let Some(v) = get("OPENROUTER_CONNECT_TIMEOUT") {
            c.connect_timeout = parse_secs("OPENROUTER_CONNECT_TIMEOUT", &v)?;
        }
        if let Some(v) = get("OPENROUTER_REQUEST_TIMEOUT") {
            c.request_timeout = parse_secs("OPENROUTER_REQUEST_TIMEOUT", &v)?;
        }
        if let Some(v) = get("OPENROUTER_MODELS_REFRESH") {
            c.models_refresh = parse_refresh(&v)?;
        }
        if let Some(v) = get("OPENROUTER_STREAM_IDLE_TIMEOUT") {
            c.stream_idle_timeout = parse_secs("OPENROUTER_STREAM_IDLE_TIMEOUT", &v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the values and normalises `base_url` (drops a trailing `/`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable of the invalid value.
    pub fn validate(&mut self) -> Result<()> {
        let url = self.base_url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::config(
                "OPENROUTER_BASE_URL",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        self.base_url = url;
        let key = self.api_key.expose_secret();
        if key.trim().is_empty() {
            return Err(Error::config("OPENROUTER_API_KEY", "is empty"));
        }
        if !key.chars().all(|ch| ch.is_ascii_graphic()) {
            // never echo the value
            return Err(Error::config(
                "OPENROUTER_API_KEY",
                "contains whitespace, control or non-ASCII characters",
            ));
        }
        if self.model.trim().is_empty() {
            return Err(Error::config("OPENROUTER_MODEL", "is empty"));
        }
        Ok(())
    }

    /// The chat-completions endpoint.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }
}

/// How long between two fetches of the model list: `OPENROUTER_MODELS_REFRESH` seconds.
fn parse_refresh(v: &str) -> Result<Duration> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            Error::config(
                "OPENROUTER_MODELS_REFRESH",
                format!("{v:?} is not a whole number of seconds (0: never refresh)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<OpenRouterConfig> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OpenRouterConfig::from_lookup(|k| m.get(k).cloned(), None)
    }

    #[test]
    fn missing_key_names_the_variable() {
        let e = cfg(&[]).unwrap_err();
        assert!(e.to_string().contains("OPENROUTER_API_KEY"), "{e}");
    }

    #[test]
    fn reads_every_variable() {
        let c = cfg(&[
            ("OPENROUTER_API_KEY", "sk-or-v1-abc"),
            ("OPENROUTER_BASE_URL", "http://localhost:9/api/v1/"),
            ("OPENROUTER_MODEL", "openai/gpt-4o"),
            ("OPENROUTER_FALLBACK_MODELS", "a/b, c/d ,"),
            ("OPENROUTER_HTTP_REFERER", "https://example.org"),
            ("OPENROUTER_APP_TITLE", "governance"),
            ("OPENROUTER_REQUEST_TIMEOUT", "5"),
            ("OPENROUTER_STREAM_IDLE_TIMEOUT", "0.5"),
        ])
        .unwrap();
        assert_eq!(c.base_url, "http://localhost:9/api/v1");
        assert_eq!(c.endpoint(), "http://localhost:9/api/v1/chat/completions");
        assert_eq!(c.model, "openai/gpt-4o");
        assert_eq!(c.fallback_models, vec!["a/b", "c/d"]);
        assert_eq!(c.http_referer.as_deref(), Some("https://example.org"));
        assert_eq!(c.app_title.as_deref(), Some("governance"));
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.stream_idle_timeout, Duration::from_millis(500));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn defaults_are_openrouter_and_the_seed_model() {
        let c = cfg(&[("OPENROUTER_API_KEY", "k")]).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.model, "anthropic/claude-sonnet-4");
        assert!(c.fallback_models.is_empty());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (k, v) in [
            ("OPENROUTER_BASE_URL", "ftp://x"),
            ("OPENROUTER_REQUEST_TIMEOUT", "soon"),
            ("OPENROUTER_CONNECT_TIMEOUT", "-1"),
            ("OPENROUTER_API_KEY", "has space"),
        ] {
            let mut pairs = vec![("OPENROUTER_API_KEY", "k")];
            pairs.retain(|(pk, _)| *pk != k);
            pairs.push((k, v));
            let e = cfg(&pairs).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
            assert!(!e.to_string().contains("has space"), "never echo the key");
        }
    }

    #[test]
    fn refresh_must_be_whole_seconds() {
        assert_eq!(parse_refresh("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_refresh("3600").unwrap(), Duration::from_secs(3600));
        let e = parse_refresh("soon").unwrap_err();
        assert!(e.to_string().contains("OPENROUTER_MODELS_REFRESH"), "{e}");
    }

    #[test]
    fn debug_hides_the_key() {
        let c = OpenRouterConfig::new(SecretString::from("sk-or-v1-topsecret"));
        let d = format!("{c:?}");
        assert!(!d.contains("topsecret"), "{d}");
        assert!(d.contains("[REDACTED]"));
    }
}
