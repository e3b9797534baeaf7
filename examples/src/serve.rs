//! `governance serve`: the HTTP API, live events and the dashboard.
//!
//! Reads `BIND` (default `127.0.0.1`), `PORT` (default `3000`), `GOVERNANCE_API_TOKEN`,
//! `GOVERNANCE_ALLOW_INSECURE`, `GOVERNANCE_ALLOWED_ORIGINS` (comma-separated extra WebSocket
//! origins) and everything [`crate::backends::from_env`] reads. Stops gracefully on SIGTERM
//! or Ctrl-C: running pipelines are suspended with a checkpoint and resumed at the next start
//! (with a persistent `GOVERNANCE_DB`).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use governance_http::{AppState, HttpSettings};

/// Arguments of `governance serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Seconds running pipelines get to stop on shutdown.
    #[arg(long, env = "GOVERNANCE_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    grace: u64,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("governance serve: shutting down");
}

/// Runs the server until SIGTERM / Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let token = std::env::var("GOVERNANCE_API_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let allow_insecure = match std::env::var("GOVERNANCE_ALLOW_INSECURE") {
        Ok(v) if !v.trim().is_empty() => {
            governance_core::config::parse_bool("GOVERNANCE_ALLOW_INSECURE", &v)?
        }
        _ => false,
    };
    let addr = SocketAddr::new(args.bind, args.port);
    governance_http::check_bind(addr, token.is_some(), allow_insecure)
        .map_err(anyhow::Error::msg)?;

    let backends = crate::backends::from_env().await?;
    let gov = backends.governance;
    if backends.persistent {
        let resumed = gov
            .resume_incomplete()
            .await
            .context("resuming incomplete pipelines")?;
        if !resumed.is_empty() {
            eprintln!(
                "governance serve: resumed {} incomplete pipeline(s)",
                resumed.len()
            );
        }
    }
    let allowed_origins = std::env::var("GOVERNANCE_ALLOWED_ORIGINS")
        .map(|v| {
            v.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let auth = if token.is_some() {
        "bearer token required"
    } else {
        "no token (loopback only)"
    };
    let settings = HttpSettings {
        api_token: token.map(Into::into),
        allowed_origins,
        breakers: backends.breakers,
        backends: backends.summary.clone(),
        ..HttpSettings::default()
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let shown: Vec<String> = backends
        .summary
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "governance serve: dashboard http://{local}/ · {} · LLM mode {} ({}) · auth: {auth}",
        shown.join(" "),
        backends.mode.0,
        backends.mode.1,
    );
    let state = AppState::new(gov, settings);
    governance_http::serve(
        listener,
        state,
        shutdown_signal(),
        Duration::from_secs(args.grace),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
