//! [`SecretSource`]: the contract every place secrets come from implements.

use async_trait::async_trait;
use governance_core::Result;
use secrecy::SecretString;

/// The seed's Vault path of the OpenRouter key (field `api_key`).
pub const OPENROUTER_PATH: &str = "secret/data/api-keys/openrouter";
/// The seed's Vault path of the DragonflyDB / Redis password (field `password`).
pub const DRAGONFLY_PATH: &str = "secret/data/services/dragonfly";

/// A place secrets are read from, addressed like Vault KV v2: a `path`
/// (`secret/data/api-keys/openrouter`) and a `field` in it (`api_key`).
///
/// # Contract
/// - `Ok(Some(secret))`: found. `Ok(None)`: this source does not hold it (an unset
///   environment variable) and another source may be asked.
/// - `Err(_)`: the source holds secrets but could not give this one (Vault refused the token,
///   is sealed, has no secret at the path, or the field is missing). Callers fail closed: a
///   configured but broken source is never treated as "no secret".
/// - No secret (nor a Vault token) ever appears in an error, a log line or `Debug`.
#[async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// A short description for logs (`env`, `vault https://vault:8200`).
    fn describe(&self) -> String;

    /// Reads `field` of the secret at `path`.
    ///
    /// # Errors
    /// As the contract says; the message names the path and field, never the value.
    async fn get(&self, path: &str, field: &str) -> Result<Option<SecretString>>;
}
