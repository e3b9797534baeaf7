//! # governance-openrouter
//!
//! Real LLM calls for governance pipelines through [OpenRouter](https://openrouter.ai)'s
//! OpenAI-compatible chat completions, and the secrets they need.
//!
//! - [`OpenRouterClient`] implements [`governance_core::LlmClient`]: one attempt per call, every
//!   failure typed (see [`failure`] for the table), usage and cost recorded, streaming over SSE.
//!   Wrap it in [`governance_core::BreakerLlm`]; the orchestrator retries retryable errors
//!   within a bound and honours [`governance_core::Error::retry_after`].
//! - [`SecretSource`] with [`EnvSecretSource`], [`VaultSecretSource`] (HashiCorp Vault KV v2) and
//!   [`ChainSecretSource`]; [`resolve_openrouter_key`] finds the key.
//! - [`LlmMode`] and [`select_mode`]: `local` or `openrouter`, never a silent fallback.
//!
//! ## Mode selection at the server
//! A server picks its default mode once, at start: `GOVERNANCE_LLM_MODE` (`local` or
//! `openrouter`, case-insensitive; anything else is a configuration error naming the variable)
//! wins when set. When it is unset, the server looks for a key ([`resolve_openrouter_key`]:
//! `OPENROUTER_API_KEY`, then Vault at `secret/data/api-keys/openrouter` when `VAULT_ADDR` and
//! `VAULT_TOKEN` are set) and runs `openrouter` when one is found, else `local`, saying which and
//! why in one log line. Asking for `openrouter` explicitly without a key is a start-up error
//! ([`governance_core::Error::Config`]), never a silent fallback to the local LLM. The chosen mode
//! is only the default: a pipeline can still name its own (`mode` on spawn or continue) among
//! the modes the server registered.
//!
//! ```no_run
//! # async fn run() -> governance_core::Result<()> {
//! use std::sync::Arc;
//! use governance_core::{BreakerConfig, BreakerLlm, CircuitBreaker, LlmClient};
//! use governance_openrouter::{
//!     ChainSecretSource, LlmMode, OpenRouterClient, OpenRouterConfig, resolve_openrouter_key,
//!     select_mode,
//! };
//!
//! // this crate never reads the environment: the caller says where settings come from
//! let env = |k: &str| std::env::var(k).ok();
//! let secrets = ChainSecretSource::from_lookup(env)?;
//! let key = resolve_openrouter_key(&secrets).await?;
//! let (mode, why) = select_mode(LlmMode::from_lookup(env)?, key.is_some())?;
//! tracing::info!(mode = %mode, reason = why, "LLM mode");
//! if let (LlmMode::OpenRouter, Some(key)) = (mode, key) {
//!     let client = OpenRouterClient::new(OpenRouterConfig::from_lookup(env, Some(key))?)?;
//!     let llm: Arc<dyn LlmClient> = Arc::new(BreakerLlm::new(
//!         Arc::new(client),
//!         Arc::new(CircuitBreaker::new(BreakerConfig::default())),
//!     ));
//!     # let _ = llm;
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod completion;
mod config;
pub mod failure;
mod format_memo;
mod mode;
mod models;
mod prices;
mod secret_source;
mod secrets;
mod streaming;
mod structured;
mod vault;
mod wire;

pub use client::OpenRouterClient;
pub use config::{DEFAULT_BASE_URL, OpenRouterConfig};
pub use mode::{LlmMode, select_mode};
pub use secrets::{
    ChainSecretSource, DRAGONFLY_PATH, EnvSecretSource, OPENROUTER_PATH, SecretSource,
    resolve_dragonfly_password, resolve_openrouter_key,
};
pub use vault::{VaultConfig, VaultSecretSource};
