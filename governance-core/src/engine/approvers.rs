//! The supervisor's side of the required approvers (`super::required`): the required roles
//! set when an orchestration starts, and the check that ends a pipeline FAILED when a
//! required role has nobody left to play it.

use std::sync::Arc;

use super::parts::{Engine, Live};
use crate::agent::Agent;
use crate::error::Result;

/// Sets the required roles of `live` from its resolved settings and the roles taking part
/// (the orchestration's `roles`), and its approvers from its agents.
pub(super) async fn set_roles(live: &Live, roles: &[(Arc<dyn Agent>, bool)]) {
    let present: Vec<String> = roles.iter().map(|(r, _)| r.role().to_owned()).collect();
    let settings = live.with_record(|r| r.roles.clone()).await;
    let required = live.state.required();
    required.set_roles(&settings, &present);
    required.refresh(&live.state.agents());
}

/// Why `live` can no longer reach consensus (see `super::required::Required::orphaned`), after noting the
/// handoff claims on the blackboard (a worker's claims reach the owner only there).
///
/// # Errors
/// Blackboard failures.
pub(super) async fn orphaned(engine: &Engine, live: &Live) -> Result<Option<String>> {
    let required = live.state.required();
    for h in engine.blackboard.handoffs(live.id()).await? {
        if let Some(c) = h.claimed_by {
            required.note_claim(h.from, c);
        }
    }
    let agents = live.state.agents();
    required.refresh(&agents);
    Ok(required.orphaned(&agents))
}
