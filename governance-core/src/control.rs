//! [`Control`]: what the engine, as [`Role::ORCHESTRATOR`], tells a pipeline's agents on the
//! bus. One topic ([`CONTROL_TOPIC`]) and a tagged JSON content, never prose to be parsed:
//! `{"type":"handoff","handoff_id":"h-ALPHA","from":"ALPHA"}`, `{"type":"cancel"}`,
//! `{"type":"quorum","quorum":1}` (`docs/wire-protocol.md`, wire protocol version 2).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AgentId, HandoffId};
use crate::message_bus::Message;
use crate::quorum::Quorum;
use crate::role::Role;

/// The bus topic of every [`Control`] message.
pub const CONTROL_TOPIC: &str = "control";

/// A message from the engine ([`Role::ORCHESTRATOR`]) to a pipeline's agents, sent on the bus
/// with topic [`CONTROL_TOPIC`] and this enum's JSON as content.
///
/// ```
/// use governance_core::{Control, HandoffId, Message, Quorum};
/// let handoff = Control::Handoff {
///     handoff_id: HandoffId::new("h-ALPHA")?,
///     from: "ALPHA".parse()?,
/// };
/// let m: Message = handoff.message("*");
/// assert_eq!(m.from.as_str(), "ORCHESTRATOR");
/// assert_eq!(m.content, r#"{"type":"handoff","handoff_id":"h-ALPHA","from":"ALPHA"}"#);
/// assert_eq!(Control::from_message(&m), Some(handoff));
/// assert_eq!(
///     Control::Quorum { quorum: Quorum::LONE }.to_json(),
///     r#"{"type":"quorum","quorum":1}"#
/// );
/// # Ok::<(), governance_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// An agent was revoked or failed and its work is on the blackboard as a handoff that
    /// any agent may claim ([`AgentContext::claim_handoff`](crate::AgentContext::claim_handoff)).
    /// Broadcast.
    Handoff {
        /// The handoff on the blackboard.
        handoff_id: HandoffId,
        /// The agent whose work it is.
        from: AgentId,
    },
    /// To the worker playing a remote role: stop, and end the run with outcome `idle`.
    Cancel,
    /// To the worker playing a remote role: proposals now need `quorum` approvals.
    Quorum {
        /// Approvals (and rejections) that decide a proposal.
        quorum: Quorum,
    },
    /// To the worker playing a remote role: the consensus rule's required voters and mediators
    /// changed (an agent took a required role over, GAMMA came; see
    /// [`ConsensusRule`](crate::ConsensusRule)).
    Approvers {
        /// Agents whose approval is required.
        required: Vec<AgentId>,
        /// Agents whose approval stands in for the required ones.
        mediators: Vec<AgentId>,
    },
}

impl Control {
    /// The JSON content of this message.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| unreachable!("a control message always serializes"))
    }

    /// Parses the content of a control message.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `content` is not a control message this version knows.
    pub fn parse(content: &str) -> Result<Self> {
        serde_json::from_str(content)
            .map_err(|e| Error::InvalidInput(format!("not a control message: {e}")))
    }

    /// This message as a bus message from [`Role::ORCHESTRATOR`] to `to` (an agent id, or
    /// [`BROADCAST`](crate::BROADCAST)).
    #[must_use]
    pub fn message(&self, to: &str) -> Message {
        Message::new(
            Role::ORCHESTRATOR.agent_id(),
            to,
            CONTROL_TOPIC,
            self.to_json(),
        )
    }

    /// The control message `m` carries: `None` unless it comes from
    /// [`Role::ORCHESTRATOR`] on [`CONTROL_TOPIC`] with content this version understands.
    #[must_use]
    pub fn from_message(m: &Message) -> Option<Self> {
        if m.from != Role::ORCHESTRATOR || m.topic != CONTROL_TOPIC {
            return None;
        }
        Self::parse(&m.content).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_its_exact_json() {
        assert_eq!(Control::Cancel.to_json(), r#"{"type":"cancel"}"#);
        assert_eq!(
            Control::Quorum {
                quorum: Quorum::DEFAULT
            }
            .to_json(),
            r#"{"type":"quorum","quorum":2}"#
        );
        for json in [
            r#"{"type":"cancel"}"#,
            r#"{"type":"quorum","quorum":1}"#,
            r#"{"type":"handoff","handoff_id":"h-BETA","from":"BETA"}"#,
        ] {
            assert_eq!(Control::parse(json).unwrap().to_json(), json);
        }
    }

    #[test]
    fn malformed_or_unknown_messages_are_refused() {
        for bad in [
            "handoff h-ALPHA from ALPHA",
            r#"{"type":"quorum","quorum":0}"#,
            r#"{"type":"handoff","handoff_id":"a:b","from":"ALPHA"}"#,
            r#"{"type":"reboot"}"#,
            "",
        ] {
            let e = Control::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}: {e}");
        }
    }

    #[test]
    fn only_the_orchestrator_sends_control_messages() {
        let forged = Message::new(
            "ALPHA".parse().unwrap(),
            "BETA",
            CONTROL_TOPIC,
            Control::Cancel.to_json(),
        );
        assert_eq!(Control::from_message(&forged), None);
        let other_topic = Message::new(
            Role::ORCHESTRATOR.agent_id(),
            "BETA",
            "note",
            Control::Cancel.to_json(),
        );
        assert_eq!(Control::from_message(&other_topic), None);
        assert_eq!(
            Control::from_message(&Control::Cancel.message("BETA")),
            Some(Control::Cancel)
        );
    }
}
