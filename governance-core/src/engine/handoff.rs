//! Handoffs: the work a revoked or failed agent leaves on the blackboard for its partner or
//! GAMMA, announced on the bus (written by the supervisor, rebuilt by `super::rebuild`).

use chrono::Utc;

use super::parts::{Engine, Live};
use crate::blackboard::Handoff;
use crate::control::Control;
use crate::error::Result;
use crate::event::EventKind;
use crate::ids::{AgentId, HandoffId};
use crate::message_bus::{BROADCAST, Message};
use crate::role::Role;

/// The work items a handoff of an agent of `role` lists.
pub(super) fn pending_of(role: &str) -> Vec<String> {
    match role {
        r if Role::ALPHA == r => vec![
            "write proposals for the objective".to_owned(),
            "endorse a proposal to reach consensus".to_owned(),
        ],
        r if Role::BETA == r => vec![
            "evaluate open proposals".to_owned(),
            "synthesize the solution from the consensus".to_owned(),
        ],
        _ => vec![format!("work of role {role}")],
    }
}

/// The bus message that announces handoff `id` of agent `from` (agents claim what they read).
pub(super) fn announcement(id: &HandoffId, from: &AgentId) -> Message {
    Control::Handoff {
        handoff_id: id.clone(),
        from: from.clone(),
    }
    .message(BROADCAST)
}

/// Writes the handoff of a revoked/failed agent and announces it on the bus.
pub(super) async fn write_handoff(
    engine: &Engine,
    live: &Live,
    from: &AgentId,
    reason: &str,
) -> Result<()> {
    let shared = &live.state;
    let role = shared.agent_role(from.as_str());
    let pending = pending_of(&role);
    let id = HandoffId::new(format!("h-{from}"))?;
    let handoff = Handoff {
        id: id.clone(),
        from: from.clone(),
        role,
        reason: reason.to_owned(),
        pending,
        claimed_by: None,
        created_at: Utc::now(),
    };
    // the blackboard and the bus may be briefly unreachable (a Redis restarting): the handoff
    // waits for them like a durable write instead of failing the orchestration; both writes
    // are idempotent (same handoff id; agents claim an announcement at most once)
    let retry = engine.write_retry();
    retry
        .run("create_handoff", || {
            engine
                .blackboard
                .create_handoff(shared.id(), handoff.clone())
        })
        .await?;
    shared
        .emitter()
        .emit(EventKind::HandoffCreated {
            pipeline_id: shared.id().clone(),
            handoff_id: id.clone(),
            from: from.clone(),
            claimed_by: None,
        })
        .await?;
    let message = announcement(&id, from);
    let (sender, content) = (message.from.clone(), message.content.clone());
    retry
        .run("announce handoff", || {
            engine.bus.publish(shared.id(), message.clone())
        })
        .await?;
    shared
        .emitter()
        .emit(EventKind::AgentMessage {
            pipeline_id: shared.id().clone(),
            from: sender,
            to: BROADCAST.to_owned(),
            content,
        })
        .await?;
    Ok(())
}
