//! The agent tasks of one orchestration ([`Running`]): starting them, the quorum they make,
//! stopping them, and restarting them after the coordination backend lost data (the blackboard
//! and bus rebuilt from the durable store by [`super::rebuild`]). The supervisor
//! (`super::supervisor`) decides when.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::parts::{Engine, Live};
use crate::agent::{Agent, AgentOutcome};
use crate::error::Result;
use crate::event::{EventKind, GammaReason};
use crate::ids::AgentId;
use crate::quorum::Quorum;
use crate::retry::Schedule;
use crate::store::AgentState;

pub(super) type AgentExit = (AgentId, Result<AgentOutcome>);

/// The agent tasks of one orchestration and what is needed to restart them.
pub(super) struct Running {
    pub(super) set: JoinSet<AgentExit>,
    pub(super) voters: Vec<(AgentId, bool)>,
    /// What each agent is, so it can be restarted after a transient backend failure or a
    /// rebuild of the blackboard.
    pub(super) agents: HashMap<AgentId, (Arc<dyn Agent>, Option<GammaReason>)>,
    /// Each restarted agent's progress through [`crate::retry::RetryPolicy::agent_restart`].
    pub(super) restarts: HashMap<AgentId, Schedule>,
    pub(super) token: CancellationToken,
    /// The coordination epoch the blackboard was built in (see `crate::coordination`).
    pub(super) epoch: u64,
    /// Rebuilds of the blackboard so far.
    pub(super) rebuilds: u32,
}

pub(super) async fn spawn_agent(
    engine: &Engine,
    live: &Live,
    agent: Arc<dyn Agent>,
    id: AgentId,
    gamma: Option<GammaReason>,
    token: &CancellationToken,
    running: &mut Running,
) -> Result<()> {
    let role = agent.role().to_owned();
    let ctx = live
        .agent_context(
            engine,
            id.clone(),
            &role,
            token.child_token(),
            (gamma, running.epoch),
        )
        .await?;
    live.state.register_agent(id.as_str(), &role, ctx.model());
    live.state.required().refresh(&live.state.agents());
    if !running.voters.iter().any(|(v, _)| v == &id) {
        running
            .voters
            .push((id.clone(), agent.votes() && ctx.votes_count()));
    }
    running.agents.insert(id.clone(), (agent.clone(), gamma));
    // once per agent: a restart (resume, transient backend error) is not a new spawn
    let first = live.state.note_spawned(&id);
    if first {
        live.state
            .emitter()
            .emit(EventKind::AgentSpawned {
                pipeline_id: live.id().clone(),
                agent_id: id.clone(),
                role: role.clone(),
                runtime: "tokio".into(),
            })
            .await?;
    }
    let span = tracing::info_span!(
        "agent",
        pipeline_id = %live.id(),
        agent_id = %id,
        role = %role
    );
    running
        .set
        .spawn(async move { (id, agent.run(ctx).await) }.instrument(span));
    Ok(())
}

/// Quorum 2 while at least two voting agents run, else 1 (a lone agent continues); the
/// required approvers follow the agents too (`super::required`: a lone agent's quorum of 1
/// never drops a required approval).
pub(super) fn update_quorum(live: &Live, running: &Running) {
    live.state.required().refresh(&live.state.agents());
    let alive = running
        .voters
        .iter()
        .filter(|(id, votes)| {
            *votes && live.state.agent_state(id.as_str()) == Some(AgentState::Running)
        })
        .count();
    live.state.set_quorum(if alive >= 2 {
        Quorum::DEFAULT
    } else {
        Quorum::LONE
    });
}

/// Asks the coordination backends now: `true` when they lost data since `running`'s
/// blackboard was built (the loop then rebuilds it).
pub(super) async fn lost_now(engine: &Engine, running: &Running) -> bool {
    engine
        .coordination
        .check(&*engine.blackboard, &*engine.bus)
        .await
        != running.epoch
}

/// Stops the agents, rebuilds the blackboard and bus from the durable store
/// (`super::rebuild`, waiting out a backend that is still unreachable) and starts again every
/// agent that had not failed or been revoked; the agents continue from the rebuilt blackboard.
pub(super) async fn rebuild_and_restart(
    engine: &Engine,
    live: &Live,
    running: &mut Running,
) -> Result<()> {
    running.token.cancel();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !running.set.is_empty() {
        match tokio::time::timeout_at(deadline, running.set.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                running.set.abort_all();
                while running.set.join_next().await.is_some() {}
            }
        }
    }
    let epoch = engine.coordination.epoch();
    engine
        .write_retry()
        .run("coordination rebuild", || {
            super::rebuild::rebuild(engine, live)
        })
        .await?;
    running.epoch = epoch;
    live.board_epoch.store(epoch, Ordering::Release);
    running.rebuilds += 1;
    running.restarts.clear();
    running.token = live.stop.child_token();
    let mut agents: Vec<AgentId> = running.agents.keys().cloned().collect();
    agents.sort();
    for id in agents {
        let Some((agent, gamma)) = running.agents.get(&id).cloned() else {
            continue;
        };
        if matches!(
            live.state.agent_state(id.as_str()),
            Some(AgentState::Failed | AgentState::Revoked)
        ) {
            continue;
        }
        let token = running.token.clone();
        spawn_agent(engine, live, agent, id, gamma, &token, running).await?;
    }
    update_quorum(live, running);
    live.state.record_progress();
    Ok(())
}

/// Waits (bounded) for cancelled agents to return; aborts stragglers.
pub(super) async fn drain(live: &Live, running: &mut Running, leftover: AgentState) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !running.set.is_empty() {
        match tokio::time::timeout_at(deadline, running.set.join_next()).await {
            Ok(Some(Ok((id, _)))) => live.state.settle_agent(id.as_str(), leftover),
            Ok(Some(Err(_)) | None) => {}
            Err(_) => {
                running.set.abort_all();
                break;
            }
        }
    }
    live.state.settle_all_agents(leftover);
}
