//! [`Quorum`]: how many approvals (or rejections) decide a proposal; never zero.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

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
}
