//! `governance replay`: re-runs a recorded pipeline offline against its recorded LLM answers.
//!
//! The pipeline's objective and settings (mode, model, timeout, auto-continue) come from the
//! registry of the SQLite file, its answers from the LLM exchanges recorded there (by a
//! [`governance_core::RecordingLlm`]). The replay runs in-process on in-memory stores with a
//! [`ReplayLlm`] registered under the recorded mode and the orchestrator settings of the
//! environment ([`Config::from_env`], as `serve` reads them) — no network, no cost. Exit code 0
//! when the replayed run ends with the recorded status, 1 when it does not, 2 on errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use governance_core::{
    BlackboardSnapshot, CheckpointStore, Config, ContinueRequest, Event, EventKind, ExchangeStore,
    Governance, PipelineId, PipelineRegistry, PipelineStatus, ReplayLlm, SpawnRequest,
};
use governance_sqlite::SqliteStore;
use serde_json::json;

/// Arguments of `governance replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The SQLite file the pipeline was recorded in (`GOVERNANCE_DB` of the server).
    #[arg(long)]
    db: PathBuf,
    /// The recorded pipeline's id.
    #[arg(long)]
    pipeline: String,
    /// Print one JSON document (events, statuses, replay statistics) instead of text.
    #[arg(long)]
    json: bool,
}

fn consensus_title(snap: &BlackboardSnapshot) -> Option<String> {
    let cons = snap.consensus.as_ref()?;
    snap.proposals
        .iter()
        .find(|p| p.id == cons.proposal_id)
        .map(|p| p.title.clone())
}

/// Replays one recorded pipeline (see the module docs).
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    if !args.db.is_file() {
        bail!("{} does not exist or is not a file", args.db.display());
    }
    let id = PipelineId::new(&args.pipeline)?;
    let db = SqliteStore::open(&args.db)
        .await
        .with_context(|| format!("opening {}", args.db.display()))?;
    let recorded = PipelineRegistry::get(&db, &id)
        .await?
        .with_context(|| format!("pipeline {id} is not in {}", args.db.display()))?;
    let exchanges = ExchangeStore::exchanges(&db, &id).await?;
    if exchanges.is_empty() {
        bail!(
            "no LLM exchanges were recorded for pipeline {id} in {} (was the server recording?)",
            args.db.display()
        );
    }
    let recorded_consensus = CheckpointStore::latest(&db, &id)
        .await?
        .and_then(|cp| consensus_title(&cp.blackboard));
    let calls = exchanges.len();
    let llm = Arc::new(ReplayLlm::new(exchanges)?);
    let config = Config::from_env().context("reading configuration")?;
    let gov = Governance::builder()
        .config(config)
        .llm(recorded.mode.clone(), llm.clone())
        .default_mode(recorded.mode.clone())
        .build()?;
    let timeout = Some(Duration::from_secs(recorded.timeout_secs));
    let new_id = gov
        .spawn(SpawnRequest {
            objective: recorded.objective.clone(),
            auto_continue: Some(recorded.auto_continue),
            mode: Some(recorded.mode.clone()),
            model: Some(recorded.model.clone()),
            timeout,
            // no human here to ask: a replay re-runs the first round and ends there
            require_approval: Some(false),
            // the recorded pipeline's per-role settings (models, temperatures, ...) for the
            // built-in roles this replay engine has
            roles: recorded
                .roles
                .iter()
                .filter(|(role, _)| {
                    matches!(role.as_str(), "ALPHA" | "BETA" | "GAMMA" | "REPORTER")
                })
                .map(|(role, s)| (role.clone(), s.clone()))
                .collect(),
        })
        .await?;
    let mut status = if recorded.auto_continue {
        gov.wait(&new_id).await?.status
    } else {
        gov.wait_until_rest(&new_id).await?.status
    };
    if status == PipelineStatus::Report && recorded.status != PipelineStatus::Report {
        // the recorded pipeline was continued by hand: do the same
        gov.continue_pipeline(
            &new_id,
            ContinueRequest {
                mode: Some(recorded.mode.clone()),
                model: Some(recorded.model.clone()),
                timeout,
            },
        )
        .await?;
        status = gov.wait(&new_id).await?.status;
    }
    let events = gov.events(&new_id, 0, usize::MAX).await?;
    let replayed_consensus = consensus_title(&gov.blackboard_snapshot(&new_id).await?);
    let stats = llm.stats();
    let unused = llm.unused();
    let same = status == recorded.status;
    if args.json {
        let doc = json!({
            "pipeline": id,
            "replay_pipeline": new_id,
            "recorded_status": recorded.status,
            "replayed_status": status,
            "same_status": same,
            "recorded_consensus": recorded_consensus,
            "replayed_consensus": replayed_consensus,
            "recorded_exchanges": calls,
            "replay": stats,
            "unused": unused,
            "events": events,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for ev in &events {
            print_event(ev);
        }
        println!("recorded: {} ({calls} LLM exchanges)", recorded.status);
        println!(
            "replayed: {status} ({} answered from the recording)",
            stats.served
        );
        if let (Some(a), Some(b)) = (&recorded_consensus, &replayed_consensus) {
            println!("consensus: recorded {a:?}, replayed {b:?}");
        }
        for k in &stats.missing {
            println!("missing: no recorded exchange for {k}");
        }
        if !stats.diverged.is_empty() {
            println!(
                "diverged: {} requests differed from the recorded ones",
                stats.diverged.len()
            );
        }
        if !unused.is_empty() {
            println!(
                "unused: {} recorded exchanges were never asked for",
                unused.len()
            );
        }
        println!(
            "{}",
            if same {
                "replay ended with the recorded status"
            } else {
                "replay ended with a DIFFERENT status"
            }
        );
    }
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_event(ev: &Event) {
    let detail = match &ev.kind {
        EventKind::StatusChanged { status, reason, .. } => match reason {
            Some(r) => format!("{status} ({r})"),
            None => status.to_string(),
        },
        EventKind::Error { kind, message, .. } => format!("[{kind}] {message}"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.get("data").cloned())
            .map(|mut d| {
                if let Some(m) = d.as_object_mut() {
                    m.remove("pipeline_id");
                }
                d.to_string()
            })
            .unwrap_or_default(),
    };
    let agent = ev
        .kind
        .agent_id()
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    println!("[{:>3}] {}{agent}: {detail}", ev.seq, ev.kind.type_name());
}
