//! `governance ledger verify --db PATH`: checks every pipeline's hash chain in a ledger file;
//! `governance ledger verify --redis URL`: the same for the shared ledger of a cluster in Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `governance ledger`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LedgerCommand {
    /// Check every pipeline's hash chain; exit 1 naming the first broken entry, 2 when the
    /// file cannot be read.
    Verify {
        /// The SQLite database file (as used by `governance serve`; in cluster mode, a node's
        /// archive).
        #[arg(long, env = "GOVERNANCE_DB", required_unless_present = "redis")]
        db: Option<PathBuf>,
        /// Verify the shared ledger of a cluster in Redis instead (`redis://...`); wins over
        /// `--db` / `GOVERNANCE_DB`.
        #[arg(long)]
        redis: Option<String>,
    },
}

/// Runs `governance ledger ...`: exit 0 when every chain verifies, 1 when one is broken.
///
/// # Errors
/// The file cannot be opened or is not a governance database (the caller exits 2).
pub async fn ledger(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LedgerCommand::Verify {
            redis: Some(url), ..
        } => verify_redis(&url).await,
        LedgerCommand::Verify { db: None, .. } => {
            anyhow::bail!("give --db PATH or --redis URL")
        }
        LedgerCommand::Verify { db: Some(db), .. } => {
            let shown = db.display().to_string();
            let report = tokio::task::spawn_blocking(move || governance_sqlite::verify(&db))
                .await
                .context("the verify task failed")?
                .with_context(|| format!("cannot verify {shown}"))?;
            println!("{report}");
            match report.first_broken() {
                None => Ok(ExitCode::SUCCESS),
                Some(first) => {
                    eprintln!(
                        "error: ledger broken: first broken entry: pipeline {} seq {}: {}",
                        first.pipeline_id, first.seq, first.reason
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

async fn verify_redis(url: &str) -> anyhow::Result<ExitCode> {
    let secrets =
        governance_openrouter::ChainSecretSource::from_lookup(crate::backends::process_env)
            .context("reading secret sources")?;
    let (redis, redacted) = crate::backends::connect_redis(url, &secrets).await?;
    let report = redis
        .store()
        .verify()
        .await
        .with_context(|| format!("cannot verify the ledger in {redacted}"))?;
    println!(
        "{redacted}: {} pipelines, {} entries, {} broken",
        report.pipelines,
        report.entries,
        report.broken.len()
    );
    match report.broken.first() {
        None => Ok(ExitCode::SUCCESS),
        Some((pipeline, seq, reason)) => {
            eprintln!(
                "error: ledger broken: first broken entry: pipeline {pipeline} seq {seq}: {reason}"
            );
            Ok(ExitCode::from(1))
        }
    }
}
