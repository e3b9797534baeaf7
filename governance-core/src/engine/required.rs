//! Required approvers: which agents' approval a running pipeline's
//! [`ConsensusRule`](crate::ConsensusRule) requires, and the fail-closed end of a pipeline
//! whose required role nobody can play any more.
//!
//! A role's approval is required when its settings say `required = true` (BETA's by default,
//! see [`RoleSettings::is_required`]). The agent that must approve for the role is its
//! *player*: the role's own agent while it is not down; after it failed or was revoked, the
//! agent that claimed its handoff (ALPHA, BETA and GAMMA take a built-in role's work over,
//! the seed's takeover); until someone claims it, the downed agent itself, whose approval
//! never comes (fail closed: the lone-voter quorum of 1 cannot bypass it). GAMMA, the
//! mediator the engine spawns, stands in for every required approval.
//!
//! A required **custom** role cannot be taken over (no other agent does its work), and a
//! required built-in role whose player is down cannot be taken over once no agent that claims
//! handoffs (ALPHA, BETA, GAMMA) runs: [`Required::orphaned`] names it, and the supervisor
//! (through `super::approvers`) ends the pipeline FAILED instead of letting it wait for its
//! timeout.

use std::collections::BTreeSet;

use parking_lot::Mutex;

use crate::ids::AgentId;
use crate::quorum::ApproversHandle;
use crate::role::Role;
use crate::role_settings::RoleSettingsMap;
use crate::store::{AgentRecord, AgentState};

/// What a pipeline's engine knows about its required approvers (held by its
/// `PipelineState`).
#[derive(Debug, Default)]
pub(crate) struct Required {
    /// Roles whose approval is required; `None` until the engine set them (a worker's
    /// detached context never does: its owner feeds its handle).
    roles: Mutex<Option<BTreeSet<String>>>,
    /// Handoffs claimed: (the agent that handed off, the claimer).
    claims: Mutex<Vec<(AgentId, AgentId)>>,
    handle: ApproversHandle,
}

fn down(a: &AgentRecord) -> bool {
    matches!(a.state, AgentState::Failed | AgentState::Revoked)
}

/// Whether agents of `role` take handoffs over (the built-in roles' `Work` claims every
/// announced handoff).
fn claims_handoffs(role: &str) -> bool {
    Role::ALPHA == role || Role::BETA == role || Role::GAMMA == role
}

impl Required {
    /// A handle fed by someone else (a worker's context: its owner announces the approvers).
    pub(crate) fn fed(handle: ApproversHandle) -> Self {
        Self {
            roles: Mutex::new(None),
            claims: Mutex::new(Vec::new()),
            handle,
        }
    }

    /// The approvers votes are decided with.
    pub(crate) fn handle(&self) -> &ApproversHandle {
        &self.handle
    }

    /// The roles whose approval is required in this pipeline, from its resolved settings
    /// (`roles`) and the roles taking part (`present`).
    pub(crate) fn set_roles(&self, roles: &RoleSettingsMap, present: &[String]) {
        let required = present
            .iter()
            .filter(|r| {
                roles
                    .get(r.as_str())
                    .map_or_else(|| Role::BETA == r.as_str(), |s| s.is_required(r))
            })
            .cloned()
            .collect();
        *self.roles.lock() = Some(required);
    }

    /// `claimer` claimed the handoff of `from`.
    pub(crate) fn note_claim(&self, from: AgentId, claimer: AgentId) {
        let mut claims = self.claims.lock();
        if !claims.iter().any(|(f, _)| f == &from) {
            claims.push((from, claimer));
        }
    }

    /// Whether the engine manages these approvers (else a worker's owner feeds them).
    fn managed(&self) -> Option<BTreeSet<String>> {
        self.roles.lock().clone()
    }

    /// The agent that must approve for `agent` (following handoff claims; `agent` itself
    /// while it is not down or nobody claimed its work).
    fn player(&self, agents: &[AgentRecord], agent: &AgentRecord) -> AgentId {
        let claims = self.claims.lock();
        let mut current = agent.clone();
        // a chain of takeovers is at most as long as the agent list
        for _ in 0..=agents.len() {
            if !down(&current) {
                break;
            }
            let Some(next) = claims
                .iter()
                .find(|(f, _)| f.as_str() == current.agent_id)
                .and_then(|(_, c)| agents.iter().find(|a| a.agent_id == c.as_str()))
            else {
                break;
            };
            current = next.clone();
        }
        // records hold ids made from valid `AgentId`s; should one not be, require an approval
        // that never comes (the orchestrator never votes): fail closed
        AgentId::new(&current.agent_id).unwrap_or_else(|_| Role::ORCHESTRATOR.agent_id())
    }

    /// Recomputes the approvers from the agents (the engine's view); `true` when they changed.
    /// A no-op for a worker's context.
    pub(crate) fn refresh(&self, agents: &[AgentRecord]) -> bool {
        let Some(roles) = self.managed() else {
            return false;
        };
        let mut required: Vec<AgentId> = Vec::new();
        for a in agents.iter().filter(|a| roles.contains(&a.role)) {
            let p = self.player(agents, a);
            if !required.contains(&p) {
                required.push(p);
            }
        }
        let mediators = agents
            .iter()
            .filter(|a| Role::GAMMA == a.role.as_str())
            .filter_map(|a| AgentId::new(&a.agent_id).ok())
            .collect();
        self.handle.set(required, mediators)
    }

    /// The reason the pipeline can no longer reach consensus: a required role whose agents
    /// are all down and whose work nobody can take over. `None` while every required role has
    /// a player, or may still get one.
    pub(crate) fn orphaned(&self, agents: &[AgentRecord]) -> Option<String> {
        let roles = self.managed()?;
        let mediator = agents
            .iter()
            .any(|a| Role::GAMMA == a.role.as_str() && a.state == AgentState::Running);
        for role in &roles {
            let of_role: Vec<&AgentRecord> = agents.iter().filter(|a| &a.role == role).collect();
            let Some(gone) = of_role.iter().find(|a| down(a)) else {
                continue;
            };
            if of_role.iter().any(|a| !down(a)) {
                continue;
            }
            let why = gone.reason.clone().unwrap_or_default();
            if !claims_handoffs(role) {
                if mediator {
                    continue; // the running mediator's approval stands in
                }
                return Some(format!(
                    "required approver {} (role {role}) {}: {why}; a custom role's required \
                     approval cannot be taken over, so no consensus is possible",
                    gone.agent_id,
                    state_word(gone.state)
                ));
            }
            let player = self.player(agents, gone);
            let taken = agents
                .iter()
                .any(|a| a.agent_id == player.as_str() && !down(a));
            let may_claim = agents
                .iter()
                .any(|a| a.state == AgentState::Running && claims_handoffs(&a.role));
            if !taken && !may_claim {
                return Some(format!(
                    "required approver {} (role {role}) {}: {why}; no agent is left to take \
                     its role over, so no consensus is possible",
                    gone.agent_id,
                    state_word(gone.state)
                ));
            }
        }
        None
    }
}

fn state_word(s: AgentState) -> &'static str {
    match s {
        AgentState::Revoked => "was revoked",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, role: &str, state: AgentState) -> AgentRecord {
        let mut a: AgentRecord = serde_json::from_value(serde_json::json!({
            "agent_id": id, "role": role, "state": "RUNNING", "tokens_used": 0, "errors": 0
        }))
        .unwrap();
        a.state = state;
        a.reason = Some("budget".into());
        a
    }

    fn ids(v: &[AgentId]) -> Vec<&str> {
        v.iter().map(AgentId::as_str).collect()
    }

    fn required(roles: &[&str]) -> Required {
        let r = Required::default();
        let present: Vec<String> = ["ALPHA", "BETA", "CRITIC"].map(String::from).to_vec();
        let settings = roles
            .iter()
            .map(|role| {
                (
                    (*role).to_owned(),
                    crate::RoleSettings {
                        required: Some(true),
                        ..crate::RoleSettings::default()
                    },
                )
            })
            .collect();
        r.set_roles(&settings, &present);
        r
    }

    #[test]
    fn beta_is_required_and_its_taker_over_plays_it() {
        let r = required(&[]);
        let mut agents = vec![
            agent("ALPHA", "ALPHA", AgentState::Running),
            agent("BETA", "BETA", AgentState::Running),
            agent("CRITIC", "CRITIC", AgentState::Running),
        ];
        r.refresh(&agents);
        assert_eq!(ids(&r.handle().get().0), ["BETA"]);
        // BETA revoked, nobody claimed yet: its approval is still required (never comes)
        agents[1].state = AgentState::Revoked;
        r.refresh(&agents);
        assert_eq!(ids(&r.handle().get().0), ["BETA"]);
        assert!(r.orphaned(&agents).is_none(), "ALPHA may still claim it");
        r.note_claim(
            AgentId::new("BETA").unwrap(),
            AgentId::new("ALPHA").unwrap(),
        );
        r.refresh(&agents);
        assert_eq!(ids(&r.handle().get().0), ["ALPHA"]);
        // ALPHA down too: nobody left who claims handoffs
        agents[0].state = AgentState::Failed;
        r.refresh(&agents);
        let why = r.orphaned(&agents).expect("orphaned");
        assert!(why.contains("required approver BETA"), "{why}");
    }

    #[test]
    fn a_required_custom_role_cannot_be_taken_over_unless_gamma_runs() {
        let r = required(&["CRITIC"]);
        let mut agents = vec![
            agent("ALPHA", "ALPHA", AgentState::Running),
            agent("BETA", "BETA", AgentState::Running),
            agent("CRITIC", "CRITIC", AgentState::Revoked),
        ];
        r.refresh(&agents);
        assert_eq!(ids(&r.handle().get().0), ["BETA", "CRITIC"]);
        let why = r.orphaned(&agents).expect("orphaned");
        assert!(
            why.contains("required approver CRITIC (role CRITIC) was revoked: budget"),
            "{why}"
        );
        agents.push(agent("GAMMA", "GAMMA", AgentState::Running));
        r.refresh(&agents);
        assert_eq!(ids(&r.handle().get().1), ["GAMMA"]);
        assert!(r.orphaned(&agents).is_none(), "the mediator stands in");
    }

    #[test]
    fn a_workers_approvers_are_fed_not_computed() {
        let h = ApproversHandle::new(vec![AgentId::new("BETA").unwrap()], Vec::new());
        let r = Required::fed(h.clone());
        assert!(!r.refresh(&[]));
        assert!(r.orphaned(&[]).is_none());
        assert_eq!(ids(&h.get().0), ["BETA"]);
    }
}
