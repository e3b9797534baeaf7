//! `governance run`: one pipeline in-process, events printed as they happen.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use governance_core::{
    Config, Event, EventKind, Governance, LocalLlm, LocalLlmConfig, PipelineStatus, SpawnRequest,
};

/// Arguments of `governance run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// What the pipeline should achieve.
    #[arg(long)]
    objective: String,
    /// Print one JSON event per line instead of readable text.
    #[arg(long)]
    json: bool,
    /// Orchestration timeout in seconds (default: ORCHESTRATION_TIMEOUT or 120).
    #[arg(long)]
    timeout: Option<u64>,
    /// Seed of the local LLM's deterministic answers.
    #[arg(long, env = "GOVERNANCE_LOCAL_SEED", default_value_t = 0)]
    seed: u64,
    /// Latency of each local LLM call in milliseconds.
    #[arg(long, env = "GOVERNANCE_LOCAL_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
}

/// Runs one pipeline; exit code 0 only when it ends COMPLETED.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let telemetry = crate::telemetry::init(crate::telemetry::CLI_LOG_FILTER)?;
    let config = Config::from_env().context("reading configuration")?;
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.seed = args.seed;
        conf.latency = Duration::from_millis(args.latency_ms);
        conf
    });
    let gov = Governance::builder()
        .config({
            let mut conf = config;
            conf.auto_orchestrate = true;
            conf
        })
        .llm("local", Arc::new(llm))
        .build()?;
    let mut events = gov.subscribe();
    let id = gov
        .spawn(SpawnRequest {
            objective: args.objective,
            auto_continue: Some(true),
            timeout: args.timeout.map(Duration::from_secs),
            // one command, no one to ask: `run` never rests at AWAITING_APPROVAL
            require_approval: Some(false),
            ..SpawnRequest::default()
        })
        .await?;
    // written with explicit errors, not println!: a closed stdout (`| head -1`) is an
    // io::ErrorKind::BrokenPipe that ends the command with exit 0 (see main), not a panic
    let mut out = std::io::stdout();
    let mut printed = 0u64;
    let final_status = loop {
        match events.recv().await {
            Ok(ev) if ev.pipeline_id() == &id => {
                print_event(&mut out, &ev, args.json)?;
                printed = ev.seq;
                if matches!(ev.kind, EventKind::CheckpointCreated { is_final: true, .. }) {
                    break gov.get(&id).await?.status;
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // fill the gap from the ledger
                for ev in gov.events(&id, printed, 10_000).await? {
                    print_event(&mut out, &ev, args.json)?;
                    printed = ev.seq;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                break gov.wait(&id).await?.status;
            }
        }
    };
    if !args.json {
        writeln!(out, "pipeline {id} ended {final_status}")?;
    }
    if telemetry.is_exporting() {
        // let the driver task end so its `pipeline` span closes before the flush
        gov.shutdown(Duration::from_secs(5)).await;
    }
    telemetry.shutdown().await;
    Ok(if final_status == PipelineStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_event(out: &mut impl Write, ev: &Event, json: bool) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(ev)?)?;
        return Ok(());
    }
    let line = match &ev.kind {
        EventKind::StatusChanged { status, reason, .. } => format!(
            "status → {status}{}",
            reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        EventKind::OrchestrationStarted {
            model,
            mode,
            agents,
            ..
        } => format!(
            "orchestration started: mode {mode}, model {model}, agents {}",
            agents.join(", ")
        ),
        EventKind::AgentSpawned { agent_id, role, .. } => {
            format!("agent {agent_id} spawned ({role})")
        }
        EventKind::AgentMessage {
            from, to, content, ..
        } => format!("{from} → {to}: {content}"),
        EventKind::GammaSpawned {
            reason, agent_id, ..
        } => format!("{agent_id} spawned: {reason}"),
        EventKind::ProposalCreated {
            proposal_id,
            author,
            title,
            ..
        } => format!("{author} proposes {proposal_id}: {title}"),
        EventKind::VoteCast {
            proposal_id,
            voter,
            approve,
            approvals,
            rejections,
            ..
        } => format!(
            "{voter} {} {proposal_id} ({approvals}✓ {rejections}✗)",
            if *approve { "approves" } else { "rejects" }
        ),
        EventKind::ConsensusReached {
            proposal_id, votes, ..
        } => format!("consensus on {proposal_id} with {votes} votes"),
        EventKind::LlmCall {
            agent_id,
            model,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            error,
            ..
        } => format!(
            "{agent_id} llm {model}: {prompt_tokens}+{completion_tokens} tokens, {latency_ms} ms{}",
            error
                .as_ref()
                .map(|e| format!(", error {e}"))
                .unwrap_or_default()
        ),
        EventKind::AgentRevoked {
            agent_id, reason, ..
        } => format!("{agent_id} revoked: {reason}"),
        EventKind::HandoffCreated {
            handoff_id, from, ..
        } => format!("handoff {handoff_id} from {from}"),
        EventKind::CheckpointCreated {
            status, is_final, ..
        } => format!(
            "checkpoint ({status}{})",
            if *is_final { ", final" } else { "" }
        ),
        EventKind::Error {
            agent_id,
            kind,
            message,
            ..
        } => format!(
            "error{} [{kind}]: {message}",
            agent_id
                .as_ref()
                .map(|a| format!(" in {a}"))
                .unwrap_or_default()
        ),
        EventKind::OrchestrationComplete { status, .. } => {
            format!("orchestration complete: {status}")
        }
        other => other.type_name().to_owned(),
    };
    writeln!(
        out,
        "[{:>3}] {} {line}",
        ev.seq,
        ev.ts.format("%H:%M:%S%.3f")
    )?;
    Ok(())
}
