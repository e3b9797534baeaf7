//! The engine, read top-down; every file depends only on those below it:
//!
//! - [`Governance`] (`facade.rs`), the public face, built by [`GovernanceBuilder`]
//!   (`builder.rs`) and asked with [`SpawnRequest`] / [`ContinueRequest`] (`requests.rs`);
//! - `decisions.rs`: [`Governance::approve`], a human's decision on a pipeline waiting at
//!   AWAITING_APPROVAL (here or, forwarded, on its owner);
//! - `fork.rs`: [`Governance::fork`], a new pipeline from another's state at one of its
//!   events (its ledger prefix and a checkpoint at or before it);
//! - `driver.rs`: one task per pipeline runs its stages in order and ends it; with
//!   `approval.rs`, the rest at AWAITING_APPROVAL (who may decide, the deadline, the fresh
//!   blackboard of a revision round);
//! - the stages: `report.rs` (RUNNING → REPORT), `supervisor.rs` (ORCHESTRATING: agents,
//!   GAMMA, quorum; `handoff.rs`), `resume.rs` (rebuilding a pipeline after a crash);
//! - `agents.rs`: an orchestration's agent tasks (start, quorum, drain, restart after a rebuild);
//! - `approvers.rs`: the required roles set as an orchestration starts, and the FAILED end
//!   when a required role has nobody left to play it;
//! - `rebuild.rs`: a live pipeline's blackboard and bus rebuilt from the durable store after
//!   the coordination backend lost data, which
//!   `crate::coordination::CoordinationWatch` notices;
//! - `live.rs`: a live pipeline's status changes and checkpoints, and how it ends (`Outcome`);
//! - at the bottom, `parts.rs` (the stores, clients, roles and live table the layers share)
//!   and `state.rs` (what a running pipeline's agents and supervisor share: private fields,
//!   changed only through intent methods), with `required.rs` (whose approval the consensus
//!   rule requires: required roles' players, takeovers, the mediator).

mod agents;
mod approval;
mod approvers;
mod builder;
mod decisions;
mod driver;
mod facade;
mod fork;
mod handoff;
mod live;
mod parts;
mod rebuild;
mod report;
mod requests;
pub(crate) mod required;
mod resume;
mod spent;
pub(crate) mod state;
mod supervisor;

pub use builder::GovernanceBuilder;
pub use facade::Governance;
pub use fork::{ForkOverrides, ForkPoint, ForkRequest, Forked};
pub use requests::{
    ApprovalDecision, ContinueRequest, DEFAULT_MAX_OBJECTIVE_LEN, MAX_FEEDBACK_LEN,
    MAX_REVIEWER_LEN, SpawnRequest,
};
