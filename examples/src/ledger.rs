//! `governance ledger verify --db PATH`: checks every pipeline's hash chain in a ledger file;
//! `governance ledger verify --redis URL`: the same for the shared ledger of a cluster in Redis;
//! `governance ledger verify --database-url URL`: the same for the ledger in PostgreSQL.

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
        #[arg(long, env = "GOVERNANCE_DB", required_unless_present_any = ["redis", "database_url"])]
        db: Option<PathBuf>,
        /// Verify the ledger in PostgreSQL instead (`postgres://...`, in the schema
        /// `GOVERNANCE_PG_SCHEMA` when set); wins over `--db` / `GOVERNANCE_DB`.
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
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
        LedgerCommand::Verify {
            database_url: Some(url),
            ..
        } => verify_postgres(&url).await,
        LedgerCommand::Verify { db: None, .. } => {
            anyhow::bail!("give --db PATH, --database-url URL or --redis URL")
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

async fn verify_postgres(url: &str) -> anyhow::Result<ExitCode> {
    let config = crate::backends::pg_config(url)?;
    let redacted = config.redacted_url();
    let store = governance_postgres::PgStore::connect_existing(config)
        .await
        .with_context(|| format!("cannot verify the ledger in {redacted}"))?;
    let report = store
        .verify()
        .await
        .with_context(|| format!("cannot verify the ledger in {redacted}"))?;
    println!("{report}");
    match report.broken.first() {
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
