//! The environment and chain implementations of [`SecretSource`], and the seed's lookups.

use std::sync::Arc;

use async_trait::async_trait;
use governance_core::Result;
use secrecy::SecretString;

pub use crate::secret_source::{DRAGONFLY_PATH, OPENROUTER_PATH, SecretSource};
use crate::vault::VaultSecretSource;

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Secrets from environment variables, read through a lookup (the `governance` binary passes
/// the process environment, `|k| std::env::var(k).ok()`).
///
/// `path` + `field` map to a variable: the seed's `secret/data/api-keys/openrouter` `api_key`
/// → `OPENROUTER_API_KEY`, `secret/data/services/dragonfly` `password` → `DRAGONFLY_PASSWORD`
/// then `REDIS_PASSWORD`; any other path → `<LAST_PATH_SEGMENT>_<FIELD>` in upper case with
/// non-alphanumerics as `_` (`secret/data/services/postgres` `password` →
/// `POSTGRES_PASSWORD`). Unset or empty variables are `Ok(None)`.
#[derive(Clone)]
pub struct EnvSecretSource {
    lookup: Lookup,
}

impl std::fmt::Debug for EnvSecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvSecretSource")
    }
}

impl EnvSecretSource {
    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Arc::new(lookup),
        }
    }

    /// The variables tried, in order, for `path` and `field`.
    #[must_use]
    pub fn variables(path: &str, field: &str) -> Vec<String> {
        let path = path.trim_matches('/');
        match (path, field) {
            (OPENROUTER_PATH, "api_key") => vec!["OPENROUTER_API_KEY".to_owned()],
            (DRAGONFLY_PATH, "password") => {
                vec!["DRAGONFLY_PASSWORD".to_owned(), "REDIS_PASSWORD".to_owned()]
            }
            _ => {
                let last = path.rsplit('/').next().unwrap_or(path);
                let name: String = format!("{last}_{field}")
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                vec![name]
            }
        }
    }
}

#[async_trait]
impl SecretSource for EnvSecretSource {
    fn describe(&self) -> String {
        "env".to_owned()
    }

    async fn get(&self, path: &str, field: &str) -> Result<Option<SecretString>> {
        for var in Self::variables(path, field) {
            if let Some(v) = (self.lookup)(&var).filter(|v| !v.trim().is_empty()) {
                tracing::debug!(var = %var, "secret found in the environment");
                return Ok(Some(SecretString::from(v.trim().to_owned())));
            }
        }
        Ok(None)
    }
}

/// Asks its sources in order; the first that has the secret wins, the first error ends it
/// (fail closed).
#[derive(Debug, Clone)]
pub struct ChainSecretSource {
    sources: Vec<Arc<dyn SecretSource>>,
}

impl ChainSecretSource {
    /// A chain of `sources`, asked in order.
    #[must_use]
    pub fn new(sources: Vec<Arc<dyn SecretSource>>) -> Self {
        Self { sources }
    }

    /// The variables first ([`EnvSecretSource`]), then Vault when `VAULT_ADDR` is set
    /// ([`VaultSecretSource::from_lookup`]), all read through `get` (the binary passes the
    /// process environment).
    ///
    /// # Errors
    /// As [`VaultSecretSource::from_lookup`] (`VAULT_ADDR` set without `VAULT_TOKEN`, ...).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static,
    ) -> Result<Self> {
        let mut sources: Vec<Arc<dyn SecretSource>> =
            vec![Arc::new(EnvSecretSource::from_lookup(get.clone()))];
        if let Some(vault) = VaultSecretSource::from_lookup(get)? {
            sources.push(Arc::new(vault));
        }
        Ok(Self::new(sources))
    }
}

#[async_trait]
impl SecretSource for ChainSecretSource {
    fn describe(&self) -> String {
        let parts: Vec<String> = self.sources.iter().map(|s| s.describe()).collect();
        parts.join(" → ")
    }

    async fn get(&self, path: &str, field: &str) -> Result<Option<SecretString>> {
        for source in &self.sources {
            if let Some(secret) = source.get(path, field).await? {
                tracing::info!(source = %source.describe(), path, field, "secret resolved");
                return Ok(Some(secret));
            }
        }
        Ok(None)
    }
}

/// The OpenRouter API key (`secret/data/api-keys/openrouter`, field `api_key`), if `source`
/// has one.
///
/// # Errors
/// The source's error (e.g. Vault sealed or the token refused).
pub async fn resolve_openrouter_key(source: &dyn SecretSource) -> Result<Option<SecretString>> {
    source.get(OPENROUTER_PATH, "api_key").await
}

/// The DragonflyDB / Redis password (`secret/data/services/dragonfly`, field `password`), if
/// `source` has one.
///
/// # Errors
/// The source's error.
pub async fn resolve_dragonfly_password(source: &dyn SecretSource) -> Result<Option<SecretString>> {
    source.get(DRAGONFLY_PATH, "password").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> EnvSecretSource {
        EnvSecretSource::from_lookup(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[tokio::test]
    async fn maps_the_seed_paths_to_variables() {
        let s = env(&[("OPENROUTER_API_KEY", "sk-1"), ("REDIS_PASSWORD", "pw")]);
        let key = resolve_openrouter_key(&s).await.unwrap().unwrap();
        assert_eq!(key.expose_secret(), "sk-1");
        let pw = resolve_dragonfly_password(&s).await.unwrap().unwrap();
        assert_eq!(pw.expose_secret(), "pw", "REDIS_PASSWORD is the fallback");
        assert_eq!(
            EnvSecretSource::variables("secret/data/services/postgres", "password"),
            vec!["POSTGRES_PASSWORD"]
        );
    }

    #[tokio::test]
    async fn dragonfly_password_wins_over_redis_password_and_empty_is_absent() {
        let s = env(&[("DRAGONFLY_PASSWORD", "d"), ("REDIS_PASSWORD", "r")]);
        let pw = resolve_dragonfly_password(&s).await.unwrap().unwrap();
        assert_eq!(pw.expose_secret(), "d");
        let empty = env(&[("OPENROUTER_API_KEY", "  ")]);
        assert!(resolve_openrouter_key(&empty).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_chain_takes_the_first_source_that_has_it() {
        let chain = ChainSecretSource::new(vec![
            Arc::new(env(&[])),
            Arc::new(env(&[("OPENROUTER_API_KEY", "second")])),
        ]);
        let key = resolve_openrouter_key(&chain).await.unwrap().unwrap();
        assert_eq!(key.expose_secret(), "second");
        assert_eq!(chain.describe(), "env → env");
    }
}
