//! The SpawnController decides when a GAMMA mediator joins a pipeline.

use std::time::Duration;

use crate::config::GammaThresholds;
use crate::event::GammaReason;

/// What the controller looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    /// Time since the last progress (a proposal, vote, solution, handoff or message).
    pub since_progress: Duration,
    /// Proposals still open.
    pub unresolved_proposals: usize,
    /// The task's complexity score (0.0–1.0) from the report.
    pub complexity: f64,
    /// GAMMAs already spawned for this pipeline.
    pub gammas_spawned: u32,
    /// Whether the pipeline already has its consensus (then no GAMMA is needed).
    pub consensus_reached: bool,
}

/// Decides whether to spawn GAMMA and why. Synchronous and pure.
///
/// # Contract
/// Returns `Some(reason)` when a GAMMA should be spawned now, `None` otherwise. Must return
/// `None` once `gammas_spawned` reaches the configured maximum.
pub trait SpawnController: Send + Sync + std::fmt::Debug {
    /// The decision for one snapshot.
    fn decide(&self, snapshot: &ProgressSnapshot) -> Option<GammaReason>;

    /// The longest the orchestrator may wait before asking again (so STUCK is noticed in time),
    /// given the time since the last progress.
    fn next_check_in(&self, since_progress: Duration) -> Duration;
}

/// The seed's rules: COMPLEXITY (score > threshold), then CONFLICT (unresolved ≥ threshold),
/// then STUCK (no progress for the threshold). COMPLEXITY is checked first because it is known
/// when orchestration starts: GAMMA then decomposes the task before the agents get stuck.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdSpawnController {
    thresholds: GammaThresholds,
}

impl ThresholdSpawnController {
    /// A controller with these thresholds.
    #[must_use]
    pub fn new(thresholds: GammaThresholds) -> Self {
        Self { thresholds }
    }
}

impl SpawnController for ThresholdSpawnController {
    fn decide(&self, s: &ProgressSnapshot) -> Option<GammaReason> {
        let t = &self.thresholds;
        if s.gammas_spawned >= t.max_spawns || s.consensus_reached {
            return None;
        }
        if s.complexity > t.complexity {
            Some(GammaReason::Complexity)
        } else if s.unresolved_proposals >= t.conflict {
            Some(GammaReason::Conflict)
        } else if s.since_progress >= t.stuck {
            Some(GammaReason::Stuck)
        } else {
            None
        }
    }

    fn next_check_in(&self, since_progress: Duration) -> Duration {
        self.thresholds
            .stuck
            .saturating_sub(since_progress)
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snap(secs: u64, unresolved: usize, complexity: f64, spawned: u32) -> ProgressSnapshot {
        ProgressSnapshot {
            since_progress: Duration::from_secs(secs),
            unresolved_proposals: unresolved,
            complexity,
            gammas_spawned: spawned,
            consensus_reached: false,
        }
    }

    #[test]
    fn seed_thresholds() {
        let c = ThresholdSpawnController::new(GammaThresholds::default());
        assert_eq!(c.decide(&snap(29, 2, 0.8, 0)), None);
        assert_eq!(c.decide(&snap(30, 0, 0.0, 0)), Some(GammaReason::Stuck));
        assert_eq!(c.decide(&snap(0, 3, 0.0, 0)), Some(GammaReason::Conflict));
        assert_eq!(
            c.decide(&snap(0, 0, 0.81, 0)),
            Some(GammaReason::Complexity)
        );
        assert_eq!(
            c.decide(&snap(99, 9, 0.99, 1)),
            None,
            "at most one GAMMA by default"
        );
    }

    proptest! {
        #[test]
        fn spawns_iff_a_threshold_holds(secs in 0u64..100, unresolved in 0usize..10, complexity in 0.0f64..1.0, spawned in 0u32..3, consensus in any::<bool>()) {
            let t = GammaThresholds::default();
            let c = ThresholdSpawnController::new(t);
            let s = ProgressSnapshot { since_progress: Duration::from_secs(secs), unresolved_proposals: unresolved, complexity, gammas_spawned: spawned, consensus_reached: consensus };
            let any = complexity > 0.8 || unresolved >= 3 || secs >= 30;
            let d = c.decide(&s);
            prop_assert_eq!(d.is_some(), any && spawned < 1 && !consensus);
            if let Some(r) = d {
                // the reason is one whose threshold actually holds
                let holds = match r { GammaReason::Complexity => complexity > 0.8, GammaReason::Conflict => unresolved >= 3, GammaReason::Stuck => secs >= 30 };
                prop_assert!(holds);
            }
            prop_assert!(c.next_check_in(s.since_progress) <= t.stuck);
        }
    }
}
