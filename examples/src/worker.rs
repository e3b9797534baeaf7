//! `governance worker --roles ALPHA,BETA,GAMMA`: plays agent roles for pipelines owned by any
//! `governance serve` node on the same Redis (those started with `GOVERNANCE_REMOTE_ROLES`).
//!
//! Reads `REDIS_URL` (required), `GOVERNANCE_NODE_ID` (the worker's consumer name; default
//! `<hostname>-<pid>`), `GOVERNANCE_LEASE_MS` (default 5000: work of a worker silent for that
//! long is taken over by another), the LLM settings of `serve` (`GOVERNANCE_LLM_MODE`,
//! `OPENROUTER_API_KEY`/Vault, `GOVERNANCE_LOCAL_LATENCY_MS`, ...) and the seed's variables.
//! Stops on SIGTERM / Ctrl-C; the work it holds then is taken over by another worker.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use governance_core::{Agent, BreakerLlm, CircuitBreaker, Config, LlmClient};
use governance_core::{Alpha, Beta, Gamma, Role};

use crate::backends::process_env;
use governance_openrouter::{
    ChainSecretSource, LlmMode, OpenRouterClient, OpenRouterConfig, resolve_openrouter_key,
    select_mode,
};
use governance_redis::Worker;

/// Arguments of `governance worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Roles to play, comma-separated (ALPHA, BETA, GAMMA).
    #[arg(long, value_delimiter = ',', default_value = "ALPHA,BETA,GAMMA")]
    roles: Vec<String>,
}

/// Runs the worker until SIGTERM / Ctrl-C.
///
/// # Errors
/// Missing `REDIS_URL`, an unknown role, invalid settings, Redis unreachable.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let telemetry = crate::telemetry::init(crate::telemetry::CLI_LOG_FILTER)?;
    let url = std::env::var("REDIS_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .context("governance worker needs REDIS_URL (it meets the servers in Redis)")?;
    let mut roles: Vec<Arc<dyn Agent>> = Vec::new();
    for r in &args.roles {
        roles.push(match r.trim() {
            r if Role::ALPHA == r => Arc::new(Alpha),
            r if Role::BETA == r => Arc::new(Beta),
            r if Role::GAMMA == r => Arc::new(Gamma),
            other => anyhow::bail!(
                "--roles: unknown role {other:?}; this binary plays ALPHA, BETA and GAMMA \
                 (custom roles are played by your own worker, see examples/python)"
            ),
        });
    }
    let config = Config::from_env().context("reading configuration")?;
    let secrets = ChainSecretSource::from_lookup(process_env).context("reading secret sources")?;
    let key = resolve_openrouter_key(&secrets)
        .await
        .context("reading the OpenRouter key")?;
    let (mode, _) = select_mode(LlmMode::from_lookup(process_env)?, key.is_some())?;
    let llm: Arc<dyn LlmClient> = match key {
        Some(key) if mode == LlmMode::OpenRouter => {
            let client =
                OpenRouterClient::new(OpenRouterConfig::from_lookup(process_env, Some(key))?)?;
            client.set_prices(crate::role_config::load_prices(std::env::vars())?);
            client.start_model_prices().await;
            Arc::new(BreakerLlm::new(
                Arc::new(client),
                Arc::new(CircuitBreaker::new(config.breaker)),
            ))
        }
        _ => Arc::new(crate::backends::local_llm(0)?),
    };
    let lease = Duration::from_millis(
        std::env::var("GOVERNANCE_LEASE_MS")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map_or(Ok(5000), |v| v.trim().parse())
            .context("GOVERNANCE_LEASE_MS is not a whole number")?,
    );
    let (redis, redacted) = crate::backends::connect_redis(&url, &secrets).await?;
    let name = crate::backends::cluster_node_id();
    let worker = Worker::new(&redis, &name, roles, llm, config, lease)?;
    println!(
        "governance worker: {name} playing {} on redis:{redacted} · LLM mode {}",
        args.roles.join(","),
        mode.as_str()
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(worker.run(cancel.clone()));
    crate::serve::shutdown_signal().await;
    cancel.cancel();
    run.await.context("the worker task failed")??;
    telemetry.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
