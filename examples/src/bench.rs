//! `governance bench`: runs N pipelines, C in flight, through the real code path (the same
//! `Governance` the server uses) and prints throughput, latency percentiles and memory.
//!
//! Backends: in memory by default; `--db PATH` puts the ledger, checkpoints and registry in
//! SQLite (`SqliteStore`, WAL, `synchronous=FULL`), `--database-url URL [--pg-schema S]` in
//! PostgreSQL (`PgStore`); `REDIS_URL` puts the blackboard and bus on
//! Redis / DragonflyDB (password from the URL or the Dragonfly secret, as `governance serve`).
//! The LLM is always the deterministic local one (`GOVERNANCE_LOCAL_LATENCY_MS`, default 0).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use governance_core::{
    Config, Fault, FaultKind, Governance, LocalLlm, LocalLlmConfig, PipelineStatus, Purpose,
    SpawnRequest,
};
use governance_openrouter::ChainSecretSource;
use governance_sqlite::SqliteStore;
use tokio::sync::Semaphore;

/// Arguments of `governance bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Pipelines to run.
    #[arg(long, default_value_t = 1000)]
    pub pipelines: usize,
    /// Pipelines in flight at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Latency of each local LLM call in milliseconds.
    #[arg(long, env = "GOVERNANCE_LOCAL_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Instead of running to completion, hold `--pipelines` pipelines in flight (BETA's answer
    /// never comes) and report the memory each one costs.
    #[arg(long)]
    pub hold: bool,
    /// SQLite file for the ledger, checkpoints and registry (default: in memory).
    #[arg(long, value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    /// PostgreSQL for the ledger, checkpoints and registry (`postgres://…`; wins over `--db`).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// The schema of `--database-url` holding the tables (created when missing).
    #[arg(long, value_name = "NAME")]
    pub pg_schema: Option<String>,
    /// Blackboard and bus on Redis / DragonflyDB (default: in memory).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

/// Where the bench's engine keeps its state.
#[derive(Debug, serde::Serialize)]
pub struct BenchBackends {
    /// `memory`, `sqlite:PATH` or `postgres:URL` (password redacted).
    pub ledger: String,
    /// `memory` or `redis:URL` (password redacted).
    pub blackboard: String,
    /// Latency of each local LLM call in milliseconds.
    pub llm_latency_ms: u64,
}

/// Results of one bench run.
#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    /// Pipelines started.
    pub pipelines: usize,
    /// Pipelines that ended COMPLETED.
    pub completed: usize,
    /// In flight at once.
    pub concurrency: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Completed pipelines per second.
    pub pipelines_per_s: f64,
    /// Median pipeline latency (spawn → terminal).
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Peak resident memory of the process.
    pub peak_rss_mb: f64,
    /// Resident memory per in-flight pipeline (`--hold` only).
    pub bytes_per_inflight_pipeline: Option<f64>,
    /// The backends measured.
    pub backends: BenchBackends,
}

/// Runs the benchmark.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("reading configuration")?;
    let report = if args.hold {
        hold(&args, config).await?
    } else {
        throughput(&args, config).await?
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("pipelines          {}", report.pipelines);
        println!("completed          {}", report.completed);
        println!("concurrency        {}", report.concurrency);
        println!("seconds            {:.3}", report.seconds);
        println!("pipelines/s        {:.0}", report.pipelines_per_s);
        println!(
            "p50 / p99 ms       {:.3} / {:.3}",
            report.p50_ms, report.p99_ms
        );
        println!("peak RSS MB        {:.1}", report.peak_rss_mb);
        println!(
            "backends           ledger {}, blackboard/bus {}, llm local {} ms",
            report.backends.ledger, report.backends.blackboard, report.backends.llm_latency_ms
        );
        if let Some(b) = report.bytes_per_inflight_pipeline {
            println!("bytes / in-flight  {b:.0}");
        }
    }
    Ok(if report.completed == report.pipelines || args.hold {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn throughput(args: &BenchArgs, config: Config) -> anyhow::Result<BenchReport> {
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(args.latency_ms);
        conf
    });
    let (gov, backends) = engine(args, config, llm).await?;
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.pipelines {
        let permit = sem.clone().acquire_owned().await?;
        let gov = gov.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let id = gov
                .spawn(SpawnRequest::new(format!("Design a caching strategy #{i}")))
                .await?;
            let rec = gov.wait(&id).await?;
            drop(permit);
            anyhow::Ok((rec.status, t0.elapsed()))
        });
    }
    let mut lat = Vec::with_capacity(args.pipelines);
    let mut completed = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, d) = r??;
        completed += usize::from(status == PipelineStatus::Completed);
        lat.push(d);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    Ok(BenchReport {
        pipelines: args.pipelines,
        completed,
        concurrency: args.concurrency,
        seconds: secs,
        pipelines_per_s: completed as f64 / secs,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        peak_rss_mb: peak_rss_bytes() as f64 / 1_048_576.0,
        bytes_per_inflight_pipeline: None,
        backends,
    })
}

async fn hold(args: &BenchArgs, config: Config) -> anyhow::Result<BenchReport> {
    let stall = Fault::new(
        Some("BETA"),
        Some(Purpose::Evaluate),
        FaultKind::Stall,
        u32::MAX,
    );
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(args.latency_ms);
        conf.faults = vec![stall];
        conf
    });
    let (gov, backends) = engine(args, config, llm).await?;
    // warm up allocator and runtime so the baseline is fair
    let warm = gov.spawn(SpawnRequest::new("warm-up")).await?;
    settle_until(&gov, 1).await;
    gov.stop(&warm).await?;
    let before = rss_bytes();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.pipelines);
    for i in 0..args.pipelines {
        ids.push(
            gov.spawn(SpawnRequest::new(format!("Design a caching strategy #{i}")))
                .await?,
        );
    }
    settle_until(&gov, args.pipelines).await;
    let after = rss_bytes();
    let secs = started.elapsed().as_secs_f64();
    let per = (after.saturating_sub(before)) as f64 / args.pipelines.max(1) as f64;
    for id in &ids {
        gov.stop(id).await?;
    }
    Ok(BenchReport {
        pipelines: args.pipelines,
        completed: 0,
        concurrency: args.pipelines,
        seconds: secs,
        pipelines_per_s: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        peak_rss_mb: peak_rss_bytes() as f64 / 1_048_576.0,
        bytes_per_inflight_pipeline: Some(per),
        backends,
    })
}

/// The engine `governance serve` would build for these backends, with `llm` as its only LLM.
async fn engine(
    args: &BenchArgs,
    config: Config,
    llm: LocalLlm,
) -> anyhow::Result<(Governance, BenchBackends)> {
    let mut builder = Governance::builder();
    let ledger = if let Some(url) = &args.database_url {
        let mut config = governance_postgres::PgConfig::new(url);
        if let Some(schema) = &args.pg_schema {
            config = config.with_schema(schema);
        }
        let store = governance_postgres::PgStore::connect(config)
            .await
            .context("connecting to --database-url")?;
        let shown = format!("postgres:{}", store.target());
        builder = builder.store(Arc::new(store));
        shown
    } else if let Some(db) = &args.db {
        let store = SqliteStore::open(db)
            .await
            .with_context(|| format!("opening --db {}", db.display()))?;
        builder = builder.store(Arc::new(store));
        format!("sqlite:{}", db.display())
    } else {
        "memory".to_owned()
    };
    let blackboard = if let Some(url) = args.redis_url.as_deref().filter(|u| !u.trim().is_empty()) {
        let secrets = ChainSecretSource::from_lookup(crate::backends::process_env)
            .context("reading secret sources")?;
        let (redis, redacted) = crate::backends::connect_redis(url, &secrets).await?;
        builder = builder.blackboard(redis.blackboard()).bus(redis.bus());
        // roles played by `governance worker` processes, as `serve` does
        (builder, _) = crate::backends::with_remote_roles(builder, &redis)?;
        format!("redis:{redacted}")
    } else {
        "memory".to_owned()
    };
    let gov = builder
        .config({
            let mut conf = config;
            conf.auto_orchestrate = true;
            conf
        })
        .llm("local", Arc::new(llm))
        .default_mode("local")
        .build()?;
    Ok((
        gov,
        BenchBackends {
            ledger,
            blackboard,
            llm_latency_ms: args.latency_ms,
        },
    ))
}

/// Waits until `n` pipelines are live and the process has gone quiet (every BETA is waiting).
async fn settle_until(gov: &Governance, n: usize) {
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss = rss_bytes();
        if gov.live_count() >= n && rss == last {
            return;
        }
        last = rss;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Resident set size of this process (Linux `/proc/self/statm`), 0 elsewhere.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Peak resident set size (Linux `VmHWM`), 0 elsewhere.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
