//! `governance ledger verify --db PATH`: checks every pipeline's hash chain in a ledger file.

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
        /// The SQLite database file (as used by `governance serve`).
        #[arg(long, env = "GOVERNANCE_DB")]
        db: PathBuf,
    },
}

/// Runs `governance ledger ...`: exit 0 when every chain verifies, 1 when one is broken.
///
/// # Errors
/// The file cannot be opened or is not a governance database (the caller exits 2).
pub async fn ledger(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LedgerCommand::Verify { db } => {
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
