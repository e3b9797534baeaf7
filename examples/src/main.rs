//! `governance`: run pipelines from the command line, serve the HTTP API, verify ledgers.

use clap::{Parser, Subcommand};

/// mimalloc: glibc's allocator was ~35 % of CPU in the in-memory pipeline profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backends;
mod bench;
mod fork;
mod ledger;
mod prices;
mod replay;
mod role_config;
mod run;
mod serve;
mod telemetry;
mod worker;

/// Governed multi-agent LLM pipelines.
#[derive(Debug, Parser)]
#[command(name = "governance", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one pipeline in-process on the local LLM and print its live events.
    Run(run::RunArgs),
    /// Run N pipelines (C in flight) and report throughput, latency and memory.
    Bench(bench::BenchArgs),
    /// Serve the HTTP API, live events and the dashboard (BIND, PORT, GOVERNANCE_DB, REDIS_URL, ...).
    Serve(serve::ServeArgs),
    /// Audit ledger tools: `ledger verify --db PATH` checks every hash chain.
    Ledger(ledger::LedgerArgs),
    /// Re-run a recorded pipeline offline against its recorded LLM answers (--db, --pipeline).
    Replay(replay::ReplayArgs),
    /// Fork a pipeline of a running server from one of its events (GOVERNANCE_SERVER).
    Fork(fork::ForkArgs),
    /// Play agent roles for pipelines of `serve` nodes on the same Redis (REDIS_URL, --roles).
    Worker(worker::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            // `run`, `serve` and `worker` install their logging themselves (they flush OTLP)
            Command::Bench(args) => {
                let _logs = telemetry::init(telemetry::CLI_LOG_FILTER)?;
                bench::bench(args).await
            }
            Command::Serve(args) => serve::serve(args).await,
            Command::Ledger(args) => {
                let _logs = telemetry::init(telemetry::CLI_LOG_FILTER)?;
                ledger::ledger(args).await
            }
            Command::Replay(args) => {
                let _logs = telemetry::init(telemetry::CLI_LOG_FILTER)?;
                replay::replay(args).await
            }
            Command::Worker(args) => worker::worker(args).await,
            Command::Fork(args) => fork::fork(args).await,
        }
    });
    match result {
        Ok(code) => code,
        // stdout closed by its reader (`governance run --json | head -1`): not an error
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
