//! The ORCHESTRATING stage: ALPHA and BETA (and custom roles) run concurrently; the supervisor
//! watches progress, spawns GAMMA when the [`crate::SpawnController`] says so, handles revoked
//! and failed agents (handoffs, partner continues alone, both failed → FAILED), and ends the
//! pipeline on consensus + solution, timeout, stop or an unrecoverable error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::agents::{Running, drain, lost_now, rebuild_and_restart, spawn_agent, update_quorum};
use super::approval;
use super::live::Outcome;
use super::parts::{Engine, Live};
use crate::agent::{Agent, AgentOutcome};
use crate::blackboard::ProposalStatus;
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventKind;
use crate::ids::AgentId;
use crate::retry::RetryPolicy;
use crate::role::Role;
use crate::spawn_controller::ProgressSnapshot;
use crate::state_machine::PipelineStatus;
use crate::store::{AgentState, GammaRecord};

/// Rebuilds forced by a blackboard that lacks the consensus the ledger records, before the
/// pipeline is given up.
const MAX_FORCED_REBUILDS: u32 = 3;

/// ORCHESTRATING (`resumed`: already in it, after a crash). Returns how the pipeline ends (the
/// driver finishes it, or checkpoints it when [`Outcome::Suspended`]); `None` when the engine
/// was shutting down before the stage began, or the runtime is shutting down under it (nothing
/// to write: a resume runs it again).
pub(super) async fn orchestrate(
    engine: &Engine,
    live: &Live,
    resumed: bool,
) -> Result<Option<Outcome>> {
    if engine.shutdown.is_cancelled() {
        return Ok(None); // suspended before it started: resume picks it up
    }
    if live.stop.is_cancelled() {
        return Ok(Some(Outcome::Stopped));
    }
    let (mode, model, timeout_secs) = live
        .with_record(|r| (r.mode.clone(), r.model.clone(), r.timeout_secs))
        .await;
    if let Err(e) = engine.llm(&mode) {
        return Ok(Some(Outcome::OrchestrationError(e.to_string())));
    }
    if !resumed {
        live.set_status(engine, PipelineStatus::Orchestrating, None)
            .await?;
    }
    if live.with_record(|r| r.revisions > 0).await {
        // a revision round after a reviewer's rejection: start from the fresh blackboard
        approval::start_revision_round(engine, live).await?;
    }
    let mut roles: Vec<(Arc<dyn Agent>, bool)> =
        vec![(engine.alpha.clone(), true), (engine.beta.clone(), true)];
    roles.extend(engine.extra_roles.iter().map(|r| (r.clone(), false)));
    super::approvers::set_roles(live, &roles).await;
    // once per pipeline: a resumed orchestration is in the ledger as `resumed`
    if live.state.note_orchestration_started() {
        live.state
            .emitter()
            .emit(EventKind::OrchestrationStarted {
                pipeline_id: live.id().clone(),
                model,
                mode,
                agents: roles.iter().map(|(r, _)| r.role().to_owned()).collect(),
            })
            .await?;
    }
    let mut coordination = engine.coordination.subscribe();
    let mut running = Running {
        set: JoinSet::new(),
        voters: Vec::new(),
        agents: HashMap::new(),
        restarts: HashMap::new(),
        token: live.stop.child_token(),
        epoch: *coordination.borrow_and_update(),
        rebuilds: 0,
    };
    for (agent, _) in &roles {
        let id = AgentId::new(agent.role())?;
        let agents_token = running.token.clone();
        spawn_agent(
            engine,
            live,
            agent.clone(),
            id,
            None,
            &agents_token,
            &mut running,
        )
        .await?;
    }
    let complexity = live.state.report().map_or(0.0, |r| r.complexity);
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut gammas = live.with_record(|r| u32::from(r.gamma.is_some())).await;
    let mut unresolved = 0usize;
    let mut consensus_checkpointed = false;
    live.state.restart_progress_clock();

    live.board_epoch.store(running.epoch, Ordering::Release);
    let outcome = loop {
        let shared = &live.state;
        if running.epoch != engine.coordination.epoch() {
            // the blackboard or bus lost data: rebuild it from the durable store
            rebuild_and_restart(engine, live, &mut running).await?;
            continue;
        }
        let consensus = shared.consensus_reached();
        if consensus && !consensus_checkpointed {
            if lost_now(engine, &running).await {
                continue;
            }
            consensus_checkpointed = true;
            if let Err(e) = live.checkpoint_now(engine).await {
                tracing::warn!(error = %e, "could not checkpoint the consensus");
            }
        }
        if consensus && shared.has_solution() {
            // a blackboard that can lose data: checkpoint it with the solution first, so a
            // loss between here and the final checkpoint is rebuilt with it
            if engine.coordination.may_lose()
                && let Err(e) = live.checkpoint_now(engine).await
            {
                tracing::warn!(error = %e, "could not checkpoint the solution");
            }
            if lost_now(engine, &running).await {
                continue;
            }
            break Outcome::Completed;
        }
        if shared.take_proposals_changed() {
            match engine.blackboard.proposals(shared.id()).await {
                Ok(props) => {
                    unresolved = props
                        .iter()
                        .filter(|p| p.status == ProposalStatus::Open)
                        .count();
                }
                Err(e) => {
                    // keep the last count; look again on the next wake-up
                    tracing::warn!(error = %e, "could not read proposals");
                    shared.proposals_changed();
                }
            }
        }
        let since = shared.since_progress();
        let snap = ProgressSnapshot {
            since_progress: since,
            unresolved_proposals: unresolved,
            complexity,
            gammas_spawned: gammas,
            consensus_reached: consensus,
        };
        if let Some(reason) = engine.controller.decide(&snap) {
            gammas += 1;
            let id = Role::gamma(gammas).agent_id();
            live.with_record(|r| {
                r.gamma = Some(GammaRecord {
                    reason,
                    spawned_at: Utc::now(),
                });
            })
            .await;
            shared
                .emitter()
                .emit(EventKind::GammaSpawned {
                    pipeline_id: shared.id().clone(),
                    reason,
                    agent_id: id.clone(),
                })
                .await?;
            let agents_token = running.token.clone();
            spawn_agent(
                engine,
                live,
                engine.gamma.clone(),
                id,
                Some(reason),
                &agents_token,
                &mut running,
            )
            .await?;
            update_quorum(live, &running);
            shared.record_progress();
            continue;
        }
        if running.set.is_empty() {
            if lost_now(engine, &running).await {
                continue;
            }
            // the flags are this process's view; the blackboard has the last word
            let board = engine.blackboard.snapshot(shared.id()).await?;
            if board.consensus.is_some() && !board.solutions.is_empty() {
                break Outcome::Completed;
            }
            // a blackboard without the consensus the ledger records lost data unnoticed
            // (the ledger is the system of record): rebuild it and let the agents finish
            if board.consensus.is_none()
                && running.rebuilds < MAX_FORCED_REBUILDS
                && super::rebuild::ledger_has_consensus(engine, shared.id()).await?
            {
                tracing::warn!(
                    "the blackboard lacks the consensus the ledger records; rebuilding it"
                );
                rebuild_and_restart(engine, live, &mut running).await?;
                continue;
            }
            break Outcome::Failed("every agent stopped without reaching consensus".into());
        }
        let wait = engine.controller.next_check_in(since);
        tokio::select! {
            biased;
            () = live.stop.cancelled() => break if engine.shutdown.is_cancelled() { Outcome::Suspended } else { Outcome::Stopped },
            () = tokio::time::sleep_until(deadline) => break Outcome::Timeout(format!("orchestration timed out after {timeout_secs}s")),
            Ok(()) = coordination.changed() => {}
            Some(joined) = running.set.join_next() => {
                let (agent_id, result) = match joined {
                    Ok(exit) => exit,
                    // nothing here aborts an agent before the loop ends: a cancelled task
                    // means the runtime is shutting down (the process dies; `run` ends early
                    // on a closed pipe, say). Not a panic, and not the pipeline's end: write
                    // nothing more, a resume picks it up. Logged at info: it is expected.
                    Err(e) if e.is_cancelled() => {
                        tracing::info!("agent task cancelled by the runtime's shutdown; leaving the pipeline to a resume");
                        return Ok(None);
                    }
                    Err(e) => (AgentId::new("UNKNOWN")?, Err(Error::Internal(format!("agent task panicked: {e}")))),
                };
                // what the agent saw may be a blackboard that lost data: if so, the rebuild
                // restarts it with the others instead of counting its end
                if lost_now(engine, &running).await {
                    continue;
                }
                if let Some(o) = agent_exited(engine, live, &mut running, &agent_id, result).await? {
                    break o;
                }
            }
            () = shared.progress_notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    };
    running.token.cancel();
    // on success, agents still running simply had nothing left to do
    let leftover = if outcome == Outcome::Completed {
        AgentState::Done
    } else {
        AgentState::Cancelled
    };
    drain(live, &mut running, leftover).await;
    Ok(Some(outcome))
}

async fn agent_exited(
    engine: &Engine,
    live: &Live,
    running: &mut Running,
    id: &AgentId,
    result: Result<AgentOutcome>,
) -> Result<Option<Outcome>> {
    let shared = &live.state;
    if let Err(e) = &result
        && e.kind() == ErrorKind::Backend
        && e.is_retryable()
    {
        // restarts allowed per agent after retryable backend errors (Redis restarting, ...)
        let schedule = running
            .restarts
            .entry(id.clone())
            .or_insert_with(|| RetryPolicy::agent_restart().schedule(id.as_str()));
        if !live.stop.is_cancelled()
            && let Some(delay) = schedule.next_delay(e)
        {
            let attempt = schedule.failures();
            tracing::warn!(agent_id = %id, error = %e, attempt, "agent hit a transient backend error; restarting it");
            let _ = shared
                .emitter()
                .emit(EventKind::Error {
                    pipeline_id: shared.id().clone(),
                    agent_id: Some(id.clone()),
                    kind: "backend".into(),
                    message: format!("{e}; restarting the agent (attempt {attempt})"),
                })
                .await;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = live.stop.cancelled() => return Ok(None),
            }
            if let Some((agent, gamma)) = running.agents.get(id).cloned() {
                let token = running.token.clone();
                spawn_agent(engine, live, agent, id.clone(), gamma, &token, running).await?;
                return Ok(None);
            }
        }
    }
    let (state, reason) = match &result {
        Ok(_) => (AgentState::Done, None),
        Err(Error::Cancelled) => (AgentState::Cancelled, None),
        Err(Error::Revoked(r)) => (AgentState::Revoked, Some(r.clone())),
        Err(e) => (AgentState::Failed, Some(e.to_string())),
    };
    shared.agent_finished(id.as_str(), state, reason.clone());
    update_quorum(live, running);
    match result {
        Ok(_) | Err(Error::Cancelled) => {
            shared.poke();
            return Ok(None);
        }
        Err(Error::Unauthorized(m)) => {
            return Ok(Some(Outcome::OrchestrationError(format!(
                "LLM provider refused the credentials ({id}): {m}"
            ))));
        }
        // the provider cannot serve this pipeline (breaker gave up, out of credits): the other
        // agents are blocked by the same breaker or account, so end now with the cause
        Err(e) if e.provider_outage().is_some() => {
            return Ok(Some(Outcome::Failed(
                e.provider_outage().unwrap_or_default(),
            )));
        }
        Err(_) => {}
    }
    let reason = reason.unwrap_or_default();
    if state == AgentState::Revoked {
        shared
            .emitter()
            .emit(EventKind::AgentRevoked {
                pipeline_id: shared.id().clone(),
                agent_id: id.clone(),
                reason: reason.clone(),
            })
            .await?;
    } else {
        shared
            .emitter()
            .emit(EventKind::Error {
                pipeline_id: shared.id().clone(),
                agent_id: Some(id.clone()),
                kind: "agent_failed".into(),
                message: reason.clone(),
            })
            .await?;
    }
    // both core agents down → FAILED
    let down = |name: &str| {
        matches!(
            shared.agent_state(name),
            Some(AgentState::Failed | AgentState::Revoked)
        )
    };
    if down(Role::ALPHA.as_str()) && down(Role::BETA.as_str()) {
        let detail: Vec<String> = shared
            .agents()
            .iter()
            .filter(|a| Role::ALPHA == a.role.as_str() || Role::BETA == a.role.as_str())
            .map(|a| format!("{}: {}", a.agent_id, a.reason.clone().unwrap_or_default()))
            .collect();
        return Ok(Some(Outcome::Failed(format!(
            "both ALPHA and BETA failed ({})",
            detail.join("; ")
        ))));
    }
    super::handoff::write_handoff(engine, live, id, &reason).await?;
    // a required role nobody can play any more: no consensus is possible, end now
    if let Some(reason) = super::approvers::orphaned(engine, live).await? {
        return Ok(Some(Outcome::Failed(reason)));
    }
    shared.record_progress();
    Ok(None)
}
