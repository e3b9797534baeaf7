//! [`Quorum`]: how many approvals (or rejections) decide a proposal; never zero.
//! [`ConsensusRule`]: the quorum plus the voters whose approval is required.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::ids::AgentId;

/// The number of approvals that accept a proposal (and of rejections that reject it). It
/// cannot be zero: a quorum of 0 would accept every proposal without a vote.
///
/// Serializes as the bare number (`2`); deserializing `0` fails.
///
/// ```
/// use governance_core::Quorum;
/// assert_eq!(Quorum::DEFAULT.get(), 2);
/// assert_eq!(Quorum::new(1)?, Quorum::LONE);
/// assert!(Quorum::new(0).is_err());
/// assert!(serde_json::from_str::<Quorum>("0").is_err());
/// # Ok::<(), governance_core::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Quorum(NonZeroU32);

impl Quorum {
    /// One approval: what a lone voting agent decides with (results are then `degraded`).
    pub const LONE: Quorum = Quorum(NonZeroU32::MIN);
    /// Two approvals (the author and one evaluator): a pipeline's quorum while two voters run.
    pub const DEFAULT: Quorum = match NonZeroU32::new(2) {
        Some(n) => Quorum(n),
        None => unreachable!(),
    };

    /// A quorum of `n` approvals.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `n` is 0.
    pub fn new(n: u32) -> Result<Self> {
        NonZeroU32::new(n)
            .map(Self)
            .ok_or_else(|| Error::InvalidInput("quorum must be at least 1".into()))
    }

    /// The number of approvals.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

impl Default for Quorum {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl From<NonZeroU32> for Quorum {
    fn from(n: NonZeroU32) -> Self {
        Self(n)
    }
}

impl From<Quorum> for u32 {
    fn from(q: Quorum) -> u32 {
        q.get()
    }
}

impl TryFrom<u32> for Quorum {
    type Error = Error;
    fn try_from(n: u32) -> Result<Self> {
        Self::new(n)
    }
}

impl PartialEq<u32> for Quorum {
    fn eq(&self, other: &u32) -> bool {
        self.get() == *other
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A quorum that changes while a pipeline runs (2 while two voters run, 1 when a lone agent
/// continues), shared by its holders: the engine sets it, agents read it. A worker holds the
/// handle of the agent it runs and sets it when the pipeline's owner announces a new quorum
/// ([`AgentContext::quorum`](crate::AgentContext::quorum) reads it). Clones share the value.
#[derive(Debug, Clone)]
pub struct QuorumHandle(Arc<AtomicU32>);

impl QuorumHandle {
    /// A handle holding `quorum`.
    #[must_use]
    pub fn new(quorum: Quorum) -> Self {
        Self(Arc::new(AtomicU32::new(quorum.get())))
    }

    /// Sets the quorum.
    pub fn set(&self, quorum: Quorum) {
        self.0.store(quorum.get(), Ordering::Release);
    }

    /// The quorum.
    #[must_use]
    pub fn get(&self) -> Quorum {
        // only `new` and `set` store, and both store a Quorum
        Quorum::new(self.0.load(Ordering::Acquire)).unwrap_or(Quorum::LONE)
    }
}

impl Default for QuorumHandle {
    fn default() -> Self {
        Self::new(Quorum::DEFAULT)
    }
}

/// The rule a [`Blackboard::vote`](crate::Blackboard::vote) applies: a proposal is accepted
/// when it has
///
/// 1. at least `quorum` approvals (from voting agents; a role whose votes do not count cannot
///    vote), **and**
/// 2. an approval from every agent in `required` — the agents playing the roles whose approval
///    is required (BETA by default; `GOVERNANCE_ROLE_<ROLE>_REQUIRED`, `required` in the role
///    settings) — **or** from one of the `mediators` (GAMMA, the arbiter the engine itself
///    spawns on STUCK, CONFLICT or COMPLEXITY).
///
/// A rejection by a required voter therefore blocks consensus on that proposal unless a
/// mediator approves it. A required role whose agent failed or was revoked stays in `required`
/// under that agent's id (it never approves again: fail closed) until an agent takes its
/// role over by claiming its handoff; the engine ends a pipeline whose required role nobody
/// can take over FAILED. With `required` and `mediators` empty the rule is the quorum alone.
///
/// ```
/// use governance_core::{AgentId, ConsensusRule, Quorum};
/// let beta = AgentId::new("BETA")?;
/// let rule = ConsensusRule::new(Quorum::DEFAULT).with_required(vec![beta.clone()]);
/// let alpha = AgentId::new("ALPHA")?;
/// let critic = AgentId::new("CRITIC")?;
/// // ALPHA and CRITIC make the quorum, but BETA has not approved
/// assert!(!rule.accepts(2, [&alpha, &critic]));
/// assert!(rule.accepts(3, [&alpha, &critic, &beta]));
/// # Ok::<(), governance_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ConsensusRule {
    /// Approvals a proposal needs.
    pub quorum: Quorum,
    /// Agents that must each approve (unless a mediator approves).
    #[serde(default)]
    pub required: Vec<AgentId>,
    /// Agents whose approval stands in for every required approval.
    #[serde(default)]
    pub mediators: Vec<AgentId>,
}

impl ConsensusRule {
    /// The quorum alone (no required voter, no mediator).
    #[must_use]
    pub fn new(quorum: Quorum) -> Self {
        Self {
            quorum,
            required: Vec::new(),
            mediators: Vec::new(),
        }
    }

    /// With these required voters.
    #[must_use]
    pub fn with_required(mut self, required: Vec<AgentId>) -> Self {
        self.required = required;
        self
    }

    /// With these mediators.
    #[must_use]
    pub fn with_mediators(mut self, mediators: Vec<AgentId>) -> Self {
        self.mediators = mediators;
        self
    }

    /// Whether a proposal with `approvals` approvals, approved by `approvers`, is accepted.
    pub fn accepts<'a>(
        &self,
        approvals: u32,
        approvers: impl IntoIterator<Item = &'a AgentId>,
    ) -> bool {
        if approvals < self.quorum.get() {
            return false;
        }
        let approvers: Vec<&AgentId> = approvers.into_iter().collect();
        self.required.iter().all(|r| approvers.contains(&r))
            || self.mediators.iter().any(|m| approvers.contains(&m))
    }
}

/// The required voters and mediators of a running pipeline's [`ConsensusRule`], shared by
/// their holders like [`QuorumHandle`]: the engine sets them as agents start, end and take
/// each other's roles over; every vote reads them. A worker holds the handle of the agent it
/// runs and sets it when the pipeline's owner announces new approvers
/// ([`Control::Approvers`](crate::Control::Approvers)). Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct ApproversHandle(Arc<parking_lot::RwLock<(Vec<AgentId>, Vec<AgentId>)>>);

impl ApproversHandle {
    /// A handle holding `required` voters and `mediators`.
    #[must_use]
    pub fn new(required: Vec<AgentId>, mediators: Vec<AgentId>) -> Self {
        Self(Arc::new(parking_lot::RwLock::new((required, mediators))))
    }

    /// Replaces both lists; `true` when they changed.
    pub fn set(&self, required: Vec<AgentId>, mediators: Vec<AgentId>) -> bool {
        let mut g = self.0.write();
        let changed = g.0 != required || g.1 != mediators;
        *g = (required, mediators);
        changed
    }

    /// The required voters and the mediators.
    #[must_use]
    pub fn get(&self) -> (Vec<AgentId>, Vec<AgentId>) {
        self.0.read().clone()
    }

    /// The rule with `quorum` and these approvers.
    #[must_use]
    pub fn rule(&self, quorum: Quorum) -> ConsensusRule {
        let (required, mediators) = self.get();
        ConsensusRule {
            quorum,
            required,
            mediators,
        }
    }
}

impl From<Quorum> for ConsensusRule {
    fn from(quorum: Quorum) -> Self {
        Self::new(quorum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_handle_share_the_quorum() {
        let q = QuorumHandle::new(Quorum::DEFAULT);
        let owner = q.clone();
        owner.set(Quorum::LONE);
        assert_eq!(q.get(), Quorum::LONE, "clones share the value");
        assert_eq!(QuorumHandle::default().get().get(), 2);
    }

    #[test]
    fn a_mediator_stands_in_for_the_required_voters() {
        let id = |s: &str| AgentId::new(s).unwrap();
        let rule = ConsensusRule::new(Quorum::DEFAULT)
            .with_required(vec![id("BETA")])
            .with_mediators(vec![id("GAMMA")]);
        assert!(!rule.accepts(2, [&id("ALPHA"), &id("CRITIC")]));
        assert!(rule.accepts(2, [&id("ALPHA"), &id("GAMMA")]));
        assert!(!rule.accepts(1, [&id("BETA")]), "the quorum still counts");
        assert!(ConsensusRule::from(Quorum::LONE).accepts(1, [&id("ALPHA")]));
    }
}
