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
//! ```no_run
//! # async fn run() -> governance_core::Result<()> {
//! use std::sync::Arc;
//! use governance_core::{BreakerConfig, BreakerLlm, CircuitBreaker, LlmClient};
//! use governance_openrouter::{
//!     ChainSecretSource, LlmMode, OpenRouterClient, OpenRouterConfig, resolve_openrouter_key,
//!     select_mode,
//! };
//!
//! let secrets = ChainSecretSource::from_env()?;
//! let key = resolve_openrouter_key(&secrets).await?;
//! let (mode, why) = select_mode(LlmMode::from_env()?, key.is_some())?;
//! tracing::info!(mode = %mode, reason = why, "LLM mode");
//! if let (LlmMode::OpenRouter, Some(key)) = (mode, key) {
//!     let client = OpenRouterClient::new(OpenRouterConfig::from_env_with_key(key)?)?;
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
mod config;
pub mod failure;
mod mode;
mod secrets;
mod streaming;
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
