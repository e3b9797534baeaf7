//! `governance`: run pipelines from the command line, serve the HTTP API, verify ledgers.

use clap::{Parser, Subcommand};

/// mimalloc: glibc's allocator was ~35 % of CPU in the in-memory pipeline profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backends;
mod bench;
mod ledger;
mod replay;
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
            Command::Bench(args) => bench::bench(args).await,
            Command::Serve(args) => serve::serve(args).await,
            Command::Ledger(args) => ledger::ledger(args).await,
            Command::Replay(args) => replay::replay(args).await,
            Command::Worker(args) => worker::worker(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
