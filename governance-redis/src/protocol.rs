//! The remote-role protocol's names and messages (`docs/wire-protocol.md`, "Workers and remote
//! roles"): the work item a worker claims, the [`WorkerReport`]s it sends the owner, and the
//! keys both sides use. The owner's messages to the worker are
//! [`governance_core::Control`]s. Shared by [`crate::remote`] (the owner's side) and the
//! worker.

use governance_core::{
    AgentId, Control, Error, EventKind, GammaReason, Message, PipelineId, Quorum, Report, Result,
    Role, RoleSettings,
};
use serde::{Deserialize, Serialize};

use crate::conn::Shared;

/// The version of the remote-role protocol, carried in every [`WorkItem`] (`"v"`). Version 2
/// sends control messages and reports as tagged JSON on topic `control`
/// ([`governance_core::CONTROL_TOPIC`]); version 1 used the topics `event`, `done`, `cancel`,
/// `quorum` and `handoff` with ad-hoc contents. A worker leaves an item of another version
/// pending for a worker that speaks it.
pub const PROTOCOL_VERSION: u32 = 2;

/// The consumer group every worker reads work through.
pub const WORKER_GROUP: &str = "workers";

/// One unit of agent work: play `role` in `pipeline_id` (payload of `gov:work:<ROLE>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// The role to play (also the agent id).
    pub role: Role,
    /// The pipeline's objective.
    pub objective: String,
    /// The RUNNING stage's report.
    #[serde(default)]
    pub report: Option<Report>,
    /// Approvals a proposal needs now.
    pub quorum: Quorum,
    /// The model to ask.
    pub model: String,
    /// Why GAMMA was spawned (GAMMA only).
    #[serde(default)]
    pub gamma_reason: Option<GammaReason>,
    /// The pipeline's last bus `seq` when the work was queued: control messages (`cancel`,
    /// `quorum`) at or before it belong to an earlier run of the role and must be ignored.
    #[serde(default)]
    pub after: u64,
    /// Tokens this role had already used in the pipeline when the work was queued.
    #[serde(default)]
    pub agent_tokens_used: u64,
    /// Tokens the whole pipeline had used when the work was queued.
    #[serde(default)]
    pub pipeline_tokens_used: u64,
    /// USD the whole pipeline had spent when the work was queued.
    #[serde(default)]
    pub pipeline_cost_usd: f64,
    /// The role's settings in the pipeline besides the model (fallback models, temperature,
    /// `max_tokens`, instructions, votes, required), applied by the worker to the requests it
    /// sends. Absent in items of older owners: the built-in defaults.
    #[serde(default)]
    pub settings: RoleSettings,
    /// Agents whose approval the consensus rule requires now
    /// ([`governance_core::ConsensusRule`]); later changes come as
    /// [`Control::Approvers`].
    #[serde(default)]
    pub required: Vec<AgentId>,
    /// Agents whose approval stands in for the required ones (GAMMA).
    #[serde(default)]
    pub mediators: Vec<AgentId>,
}

/// How a remote agent's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteOutcome {
    /// It finished its work.
    Done,
    /// Nothing (more) to do, or cancelled.
    Idle,
    /// Revoked by its error budget (the report's `message` says why).
    Revoked,
    /// Failed (the report's `message` says why).
    Failed,
}

/// What the worker playing a role tells the pipeline's owner: a bus message from the role to
/// [`Role::ORCHESTRATOR`] on topic [`governance_core::CONTROL_TOPIC`], content this enum's
/// JSON:
/// `{"type":"event","event":{"type":"vote_cast","data":{…}}}` or
/// `{"type":"done","outcome":"idle","message":"cancelled"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerReport {
    /// Something the agent did that belongs in the pipeline's ledger (the owner records it,
    /// refusing what an agent may not report).
    Event {
        /// The event, as in the ledger (`{"type":…,"data":{…}}`).
        event: Box<EventKind>,
    },
    /// The run ended.
    Done {
        /// How.
        outcome: RemoteOutcome,
        /// Why, for `revoked` and `failed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

impl WorkerReport {
    /// This report as a bus message from `role` to [`Role::ORCHESTRATOR`].
    ///
    /// # Errors
    /// [`Error::Internal`] when the report cannot be encoded (a non-finite number).
    pub fn message(&self, role: &Role) -> Result<Message> {
        let json = serde_json::to_string(self)
            .map_err(|e| Error::Internal(format!("cannot encode a worker report: {e}")))?;
        Ok(Message::new(
            role.agent_id(),
            Role::ORCHESTRATOR.as_str(),
            governance_core::CONTROL_TOPIC,
            json,
        ))
    }

    /// Reads a report from `role`'s message content. `Err(true)`: a `done` report this version
    /// cannot read (the role must end as failed); `Err(false)`: anything else it cannot read.
    pub(crate) fn parse(content: &str) -> std::result::Result<Self, bool> {
        serde_json::from_str(content).map_err(|_| {
            serde_json::from_str::<serde_json::Value>(content)
                .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("done"))
        })
    }
}

/// The owner's message to a role's worker: a [`Control`] on topic
/// [`governance_core::CONTROL_TOPIC`], addressed to `role`.
pub(crate) fn control(role: &Role, control: &Control) -> Message {
    control.message(role.as_str())
}

pub(crate) fn work_stream(prefix: &str, role: &Role) -> String {
    format!("{prefix}:work:{role}")
}

pub(crate) fn work_channel(prefix: &str) -> String {
    format!("{prefix}:work")
}

/// `gov:{P}:ended:<ROLE>`: set when the owner stops following the role (TTL one day).
pub(crate) fn ended_key(shared: &Shared, id: &PipelineId, role: &Role) -> String {
    pipeline_key(shared, id, &format!("ended:{role}"))
}

/// `gov:{P}:worker:<ROLE>`: the heartbeat of the worker playing the role.
pub(crate) fn heartbeat_key(shared: &Shared, id: &PipelineId, role: &Role) -> String {
    pipeline_key(shared, id, &format!("worker:{role}"))
}

pub(crate) fn pipeline_key(shared: &Shared, id: &PipelineId, name: &str) -> String {
    format!("{}:{{{}}}:{name}", shared.config.key_prefix, id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_have_their_exact_json() {
        let done = WorkerReport::Done {
            outcome: RemoteOutcome::Idle,
            message: Some("cancelled".into()),
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"type":"done","outcome":"idle","message":"cancelled"}"#
        );
        let bare = r#"{"type":"done","outcome":"done"}"#;
        assert_eq!(
            WorkerReport::parse(bare),
            Ok(WorkerReport::Done {
                outcome: RemoteOutcome::Done,
                message: None
            })
        );
        let event = r#"{"type":"event","event":{"type":"agent_message","data":{"pipeline_id":"p-1","from":"CRITIC","to":"*","content":"x"}}}"#;
        let parsed = WorkerReport::parse(event).unwrap();
        assert!(
            matches!(&parsed, WorkerReport::Event { event } if matches!(**event, EventKind::AgentMessage { .. }))
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), event);
    }

    #[test]
    fn an_unreadable_done_is_told_apart_from_other_noise() {
        assert_eq!(
            WorkerReport::parse(r#"{"type":"done","outcome":"exploded"}"#),
            Err(true)
        );
        assert_eq!(WorkerReport::parse(r#"{"type":"gossip"}"#), Err(false));
        assert_eq!(WorkerReport::parse("done"), Err(false));
    }

    #[test]
    fn a_work_item_of_quorum_zero_or_a_bad_role_is_refused() {
        let item = |role: &str, quorum: u32| {
            format!(
                r#"{{"v":2,"pipeline_id":"p-1","role":"{role}","objective":"o","quorum":{quorum},"model":"m"}}"#
            )
        };
        assert!(serde_json::from_str::<WorkItem>(&item("CRITIC", 1)).is_ok());
        assert!(serde_json::from_str::<WorkItem>(&item("CRITIC", 0)).is_err());
        assert!(serde_json::from_str::<WorkItem>(&item("a:b", 2)).is_err());
    }
}
