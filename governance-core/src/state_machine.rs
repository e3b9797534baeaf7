//! The pipeline status state machine: a pure, total transition function.
//!
//! ```text
//! SPAWNED ─▶ RUNNING ─▶ REPORT ─▶ ORCHESTRATING ─▶ COMPLETED
//!    │          │          │            ├─▶ FAILED | TIMEOUT | ORCHESTRATION_FAILED
//!    │          │          │            ├─▶ ORCHESTRATION_ERROR | STOPPED
//!    │          │          │            └─▶ AWAITING_APPROVAL ─▶ COMPLETED (approved)
//!    │          │          │                   ├─▶ ORCHESTRATING (rejected: a revision round)
//!    │          │          │                   ├─▶ FAILED (rejected too often) | TIMEOUT | STOPPED
//!    │          │          │                   └─▶ ORCHESTRATION_FAILED | ORCHESTRATION_ERROR
//!    │          │          ├─▶ ORCHESTRATION_ERROR (could not start) | ORCHESTRATION_FAILED | STOPPED
//!    │          └─▶ FAILED | TIMEOUT | ORCHESTRATION_FAILED | ORCHESTRATION_ERROR | STOPPED
//!    └─▶ FAILED | ORCHESTRATION_FAILED | ORCHESTRATION_ERROR | STOPPED
//! ```
//! `ORCHESTRATION_ERROR` from SPAWNED/RUNNING covers a pipeline whose LLM provider refused the
//! credentials (or whose backends were unreachable) before orchestration.
//! A pipeline spawned with `require_approval` rests at `AWAITING_APPROVAL` after consensus and
//! solution; a reviewer's rejection sends it back to ORCHESTRATING for a revision round, the
//! one loop in the machine (bounded by `GOVERNANCE_MAX_REVISIONS`, enforced by the engine).
//! Terminal statuses have no way out. `ORCHESTRATION_FAILED` is reachable from every
//! non-terminal status because it is what a pipeline that cannot be resumed after a crash
//! ends as.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The status of a pipeline. Serialized in `UPPER_SNAKE_CASE`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PipelineStatus {
    /// Created, not yet started.
    Spawned,
    /// The initial agents analyse the objective and write the report.
    Running,
    /// The report is written; waiting for (auto-)continuation.
    Report,
    /// ALPHA and BETA (and maybe GAMMA) are working.
    Orchestrating,
    /// Consensus and solution are in; a human reviewer approves them (COMPLETED) or rejects
    /// them with feedback (a revision round: back to ORCHESTRATING). No agent runs meanwhile.
    AwaitingApproval,
    /// Finished with results.
    Completed,
    /// The work failed (e.g. both orchestration agents failed).
    Failed,
    /// The orchestration timed out; partial results and a partial report are kept.
    Timeout,
    /// The orchestrator itself died mid-run and the pipeline could not be resumed.
    OrchestrationFailed,
    /// The orchestration could not start or was refused (bad config, auth, backend down).
    OrchestrationError,
    /// Emergency stop.
    Stopped,
}

impl PipelineStatus {
    /// Every status, in declaration order.
    pub const ALL: [Self; 11] = [
        Self::Spawned,
        Self::Running,
        Self::Report,
        Self::Orchestrating,
        Self::AwaitingApproval,
        Self::Completed,
        Self::Failed,
        Self::Timeout,
        Self::OrchestrationFailed,
        Self::OrchestrationError,
        Self::Stopped,
    ];

    /// Whether the status is an end state (no transition leaves it).
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::Timeout
                | Self::OrchestrationFailed
                | Self::OrchestrationError
                | Self::Stopped
        )
    }

    /// Whether `self -> to` is a legal transition.
    #[must_use]
    pub fn can_transition_to(self, to: Self) -> bool {
        use PipelineStatus as S;
        matches!(
            (self, to),
            (
                S::Spawned,
                S::Running
                    | S::Failed
                    | S::OrchestrationFailed
                    | S::OrchestrationError
                    | S::Stopped,
            ) | (
                S::Running,
                S::Report
                    | S::Failed
                    | S::Timeout
                    | S::OrchestrationFailed
                    | S::OrchestrationError
                    | S::Stopped,
            ) | (
                S::Report,
                S::Orchestrating | S::OrchestrationError | S::OrchestrationFailed | S::Stopped,
            ) | (
                S::Orchestrating,
                S::Completed
                    | S::AwaitingApproval
                    | S::Failed
                    | S::Timeout
                    | S::OrchestrationFailed
                    | S::OrchestrationError
                    | S::Stopped,
            ) | (
                S::AwaitingApproval,
                S::Completed
                    | S::Orchestrating
                    | S::Failed
                    | S::Timeout
                    | S::OrchestrationFailed
                    | S::OrchestrationError
                    | S::Stopped,
            )
        )
    }

    /// The pure transition function: `Ok(to)` when legal, an error value otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidTransition`] for an illegal transition (including any self-transition).
    pub fn transition(self, to: Self) -> Result<Self> {
        if self.can_transition_to(to) {
            Ok(to)
        } else {
            Err(Error::InvalidTransition { from: self, to })
        }
    }

    /// The `UPPER_SNAKE` name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spawned => "SPAWNED",
            Self::Running => "RUNNING",
            Self::Report => "REPORT",
            Self::Orchestrating => "ORCHESTRATING",
            Self::AwaitingApproval => "AWAITING_APPROVAL",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::OrchestrationFailed => "ORCHESTRATION_FAILED",
            Self::OrchestrationError => "ORCHESTRATION_ERROR",
            Self::Stopped => "STOPPED",
        }
    }
}

impl fmt::Display for PipelineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PipelineStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidInput(format!("unknown pipeline status {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::PipelineStatus as S;
    use proptest::prelude::*;
    use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

    #[test]
    fn happy_path_is_legal() {
        let mut s = S::Spawned;
        for next in [S::Running, S::Report, S::Orchestrating, S::Completed] {
            s = s.transition(next).unwrap();
        }
        assert!(s.is_terminal());
    }

    #[test]
    fn a_rejected_outcome_loops_through_a_revision_round() {
        let mut s = S::Spawned;
        for next in [
            S::Running,
            S::Report,
            S::Orchestrating,
            S::AwaitingApproval,
            S::Orchestrating,
            S::AwaitingApproval,
            S::Completed,
        ] {
            s = s.transition(next).unwrap();
        }
        assert!(s.is_terminal());
        assert!(!S::AwaitingApproval.is_terminal());
        // approval is only asked for an orchestrated outcome
        for from in [S::Spawned, S::Running, S::Report] {
            assert!(from.transition(S::AwaitingApproval).is_err(), "{from}");
        }
    }

    #[test]
    fn terminal_states_have_no_exit() {
        for from in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in S::ALL {
                assert!(from.transition(to).is_err(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn every_non_terminal_status_can_be_stopped_or_failed_by_a_crash() {
        for from in S::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(from.can_transition_to(S::Stopped));
            assert!(from.can_transition_to(S::OrchestrationFailed));
        }
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("NOPE".parse::<S>().is_err());
    }

    /// Reference model: the allowed edges written out as a table, independent of the match.
    fn reference_allows(from: S, to: S) -> bool {
        const EDGES: &[(S, S)] = &[
            (S::Spawned, S::Running),
            (S::Spawned, S::Failed),
            (S::Spawned, S::OrchestrationFailed),
            (S::Spawned, S::Stopped),
            (S::Spawned, S::OrchestrationError),
            (S::Running, S::Report),
            (S::Running, S::Failed),
            (S::Running, S::Timeout),
            (S::Running, S::OrchestrationFailed),
            (S::Running, S::Stopped),
            (S::Running, S::OrchestrationError),
            (S::Report, S::Orchestrating),
            (S::Report, S::OrchestrationError),
            (S::Report, S::OrchestrationFailed),
            (S::Report, S::Stopped),
            (S::Orchestrating, S::Completed),
            (S::Orchestrating, S::Failed),
            (S::Orchestrating, S::Timeout),
            (S::Orchestrating, S::OrchestrationFailed),
            (S::Orchestrating, S::OrchestrationError),
            (S::Orchestrating, S::Stopped),
            (S::Orchestrating, S::AwaitingApproval),
            (S::AwaitingApproval, S::Completed),
            (S::AwaitingApproval, S::Orchestrating),
            (S::AwaitingApproval, S::Failed),
            (S::AwaitingApproval, S::Timeout),
            (S::AwaitingApproval, S::OrchestrationFailed),
            (S::AwaitingApproval, S::OrchestrationError),
            (S::AwaitingApproval, S::Stopped),
        ];
        EDGES.contains(&(from, to))
    }

    struct Model;
    impl ReferenceStateMachine for Model {
        type State = (S, Vec<S>);
        type Transition = S;
        fn init_state() -> BoxedStrategy<Self::State> {
            Just((S::Spawned, vec![S::Spawned])).boxed()
        }
        fn transitions(_: &Self::State) -> BoxedStrategy<S> {
            proptest::sample::select(S::ALL.to_vec()).boxed()
        }
        fn apply(mut state: Self::State, to: &S) -> Self::State {
            if reference_allows(state.0, *to) {
                state.0 = *to;
                state.1.push(*to);
            }
            state
        }
    }

    struct Sut;
    impl StateMachineTest for Sut {
        type SystemUnderTest = S;
        type Reference = Model;
        fn init_test(_: &<Model as ReferenceStateMachine>::State) -> S {
            S::Spawned
        }
        fn apply(sut: S, reference: &<Model as ReferenceStateMachine>::State, to: S) -> S {
            let before = sut;
            let next = match sut.transition(to) {
                Ok(n) => n,
                Err(e) => {
                    // illegal: an error value naming both ends, state unchanged
                    assert!(
                        matches!(e, crate::Error::InvalidTransition { from, to: t } if from == before && t == to)
                    );
                    before
                }
            };
            assert_eq!(
                next, reference.0,
                "sut and reference disagree after {before} -> {to}"
            );
            next
        }
        fn check_invariants(sut: &S, reference: &<Model as ReferenceStateMachine>::State) {
            assert_eq!(*sut, reference.0);
            // statuses only move forward: no status repeats in the history, except through
            // the revision loop ORCHESTRATING ⇄ AWAITING_APPROVAL
            let mut seen: Vec<S> = reference
                .1
                .iter()
                .copied()
                .filter(|s| !matches!(s, S::Orchestrating | S::AwaitingApproval))
                .collect();
            let n = seen.len();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), n);
            // and the loop alternates: never the same status twice in a row
            assert!(reference.1.windows(2).all(|w| w[0] != w[1]));
        }
    }

    prop_state_machine! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        #[test]
        fn transition_function_matches_reference_model(sequential 1..30 => Sut);
    }

    proptest! {
        #[test]
        fn transition_is_total_and_pure(from in proptest::sample::select(S::ALL.to_vec()), to in proptest::sample::select(S::ALL.to_vec())) {
            let a = from.transition(to);
            let b = from.transition(to);
            prop_assert_eq!(a.is_ok(), b.is_ok());
            prop_assert_eq!(a.is_ok(), reference_allows(from, to));
        }
    }
}
