//! `governance serve`: the HTTP API, live events and the dashboard.
//!
//! Reads `BIND` (default `127.0.0.1`), `PORT` (default `3000`), `GOVERNANCE_API_TOKEN`,
//! `GOVERNANCE_METRICS_PUBLIC` (`/metrics` without the token), `GOVERNANCE_ALLOW_INSECURE`,
//! `GOVERNANCE_ALLOWED_ORIGINS` (comma-separated extra WebSocket
//! origins), `GOVERNANCE_NODE_ID` (the `node` label of `governance_node_info` on `/metrics`;
//! default `<hostname>-<pid>`, see [`crate::telemetry::node_id`]) and everything
//! [`crate::backends::from_env`] reads. Stops gracefully on SIGTERM
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

pub(crate) async fn shutdown_signal() {
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

/// A boolean variable: unset or blank is `false`; an invalid value is an error naming it.
fn env_bool(name: &str) -> anyhow::Result<bool> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(governance_core::parse_bool(name, &v)?),
        _ => Ok(false),
    }
}

/// Runs the server until SIGTERM / Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let telemetry = crate::telemetry::init(crate::telemetry::SERVER_LOG_FILTER)?;
    let token = std::env::var("GOVERNANCE_API_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let allow_insecure = env_bool("GOVERNANCE_ALLOW_INSECURE")?;
    let metrics_public = env_bool("GOVERNANCE_METRICS_PUBLIC")?;
    let addr = SocketAddr::new(args.bind, args.port);
    governance_http::check_bind(addr, token.is_some(), allow_insecure)
        .map_err(anyhow::Error::msg)?;

    let mut backends = crate::backends::from_env().await?;
    let gov = backends.governance;
    let cluster_cancel = tokio_util::sync::CancellationToken::new();
    let cluster = backends
        .cluster
        .take()
        .map(|c| start_cluster(c, &gov, &cluster_cancel));
    let pg_cluster = backends.pg_cluster.take().inspect(|leases| {
        tokio::spawn(leases.clone().run(gov.clone(), cluster_cancel.clone()));
    });
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
    let auth = match (token.is_some(), metrics_public) {
        (true, false) => "bearer token required",
        (true, true) => "bearer token required (/metrics public)",
        (false, _) => "no token (loopback only)",
    };
    let settings = {
        let mut conf = HttpSettings::default();
        conf.api_token = token.map(Into::into);
        conf.allowed_origins = allowed_origins;
        conf.breakers = backends.breakers;
        conf.backends = backends.summary.clone();
        conf.metrics_public = metrics_public;
        conf
    }
    .with_node_id(crate::telemetry::node_id());
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
    if let Some((leases, archiver)) = cluster {
        // suspended pipelines: let other nodes take them over now, not after the lease
        leases.release_all().await;
        cluster_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), archiver).await;
    }
    if let Some(leases) = pg_cluster {
        // suspended pipelines: let other nodes take them over now, not after the lease
        leases.release_all().await;
        cluster_cancel.cancel();
    }
    telemetry.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Cluster mode: runs the lease loop (renew, take over, relay events) and the
/// [`Archiver`](governance_redis::Archiver) that copies every pipeline this node finishes into
/// its SQLite file — and, after a while, the finished pipelines of nodes that died before they
/// archived them (`gov:unarchived`).
fn start_cluster(
    c: crate::backends::Cluster,
    gov: &governance_core::Governance,
    cancel: &tokio_util::sync::CancellationToken,
) -> (governance_redis::RedisLeases, tokio::task::JoinHandle<()>) {
    tokio::spawn(c.leases.clone().run(gov.clone(), cancel.clone()));
    let crate::backends::Cluster {
        store,
        archive,
        finished,
        leases,
    } = c;
    let archiver = governance_redis::Archiver::new(store, archive, gov.node_id(), leases.lease());
    let archiver = tokio::spawn(archiver.run(finished, cancel.clone()));
    (leases, archiver)
}
