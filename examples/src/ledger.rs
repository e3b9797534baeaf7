//! `governance ledger verify --db PATH`: checks every pipeline's hash chain in a ledger file;
//! `governance ledger verify --redis URL`: the same for the shared ledger of a cluster in Redis;
//! an empty store fails (a Redis that restarted without persistence looks exactly like that)
//! unless `--allow-empty`, and `--archive PATH` (a node's SQLite archive) also checks that
//! every pipeline archived there is still in Redis with its whole ledger (a wiped store or one
//! restored from an older snapshot fails).
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
        /// With `--redis`: a store holding no pipeline passes (a fresh cluster) instead of
        /// failing as wiped.
        #[arg(long, requires = "redis")]
        allow_empty: bool,
        /// With `--redis`: a node's SQLite archive; every pipeline in it must be in Redis with
        /// at least its archived ledger, identical (else the store was wiped or rolled back).
        #[arg(long, requires = "redis")]
        archive: Option<PathBuf>,
    },
}

/// Runs `governance ledger ...`: exit 0 when every chain verifies, 1 when one is broken.
///
/// # Errors
/// The file cannot be opened or is not a governance database (the caller exits 2).
pub async fn ledger(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LedgerCommand::Verify {
            redis: Some(url),
            allow_empty,
            archive,
            ..
        } => verify_redis(&url, allow_empty, archive.as_deref()).await,
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

async fn verify_redis(
    url: &str,
    allow_empty: bool,
    archive: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
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
    if let Some((pipeline, seq, reason)) = report.broken.first() {
        eprintln!(
            "error: ledger broken: first broken entry: pipeline {pipeline} seq {seq}: {reason}"
        );
        return Ok(ExitCode::from(1));
    }
    if report.pipelines == 0 && !allow_empty {
        eprintln!(
            "error: {redacted} holds no pipeline: the store is empty, as after a restart of a \
             Redis without persistence or a flush. If it is a fresh cluster, pass --allow-empty; \
             to see what was lost, compare with a node's archive (--archive PATH)"
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(path) = archive {
        let missing = compare_archive(&redis.store(), path).await?;
        if let Some(first) = missing.first() {
            eprintln!(
                "error: {redacted} lost ledger entries the archive {} holds ({} pipelines; \
                 first: {first}): the store was wiped or restored from an older snapshot",
                path.display(),
                missing.len()
            );
            return Ok(ExitCode::from(1));
        }
        println!(
            "every pipeline of the archive {} is in Redis",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The pipelines of the SQLite archive at `path` whose ledger Redis no longer holds in full
/// (fewer entries, or a different entry at the archive's last seq), described.
async fn compare_archive(
    redis: &governance_redis::RedisStore,
    path: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    use governance_core::{LedgerRow, LedgerStore, PipelineFilter, PipelineRegistry};
    let archive = governance_sqlite::SqliteStore::open(path)
        .await
        .with_context(|| format!("opening the archive {}", path.display()))?;
    let mut missing = Vec::new();
    let mut offset = 0;
    loop {
        let page = archive
            .list(&PipelineFilter {
                limit: 500,
                offset,
                ..PipelineFilter::default()
            })
            .await?;
        if page.is_empty() {
            break;
        }
        offset += page.len();
        for rec in page {
            let last = archive.last_seq(&rec.id).await?;
            if last == 0 {
                continue;
            }
            let ours = archive.read(&rec.id, last - 1, 1).await?;
            let theirs = redis.read(&rec.id, last - 1, 1).await?;
            let same = match (ours.first(), theirs.first()) {
                (Some(a), Some(b)) => LedgerRow::from_event(a)? == LedgerRow::from_event(b)?,
                _ => false,
            };
            if !same {
                let held = redis.last_seq(&rec.id).await?;
                missing.push(format!(
                    "pipeline {} has {held} entries in Redis, {last} in the archive",
                    rec.id
                ));
            }
        }
    }
    Ok(missing)
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
