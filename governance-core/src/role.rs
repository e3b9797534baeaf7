//! [`Role`]: the name of a role in a pipeline (`ALPHA`, `BETA`, `GAMMA`, `REPORTER`, the
//! `ORCHESTRATOR` that speaks for the engine, or a custom role's own name).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::AgentId;

/// The longest role name accepted (a role name is also an agent id and part of Redis keys).
pub const MAX_ROLE_LEN: usize = 32;

/// A role name: one of the built-in roles ([`Role::ALPHA`], [`Role::BETA`], [`Role::GAMMA`],
/// [`Role::REPORTER`], [`Role::ORCHESTRATOR`]) or a custom role's own name, validated like an
/// id but at most 32 characters (`[A-Za-z0-9_-]{1,32}`).
///
/// It serializes as its name, so a record or an event that holds a role reads the same as a
/// string; it compares equal to its name (`Role::ALPHA == "ALPHA"`).
///
/// ```
/// use governance_core::Role;
/// let critic: Role = "CRITIC".parse()?;
/// assert_eq!(critic, "CRITIC");
/// assert!(!critic.is_builtin());
/// assert!(Role::GAMMA.is_builtin() && Role::gamma(2) == "GAMMA-2");
/// assert!("no:colons".parse::<Role>().is_err());
/// # Ok::<(), governance_core::Error>(())
/// ```
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(Name);

#[derive(Clone)]
enum Name {
    Builtin(&'static str),
    Custom(Arc<str>),
}

impl Role {
    /// Research and proposals (a voter).
    pub const ALPHA: Role = Role(Name::Builtin("ALPHA"));
    /// Evaluation, votes and synthesis (a voter).
    pub const BETA: Role = Role(Name::Builtin("BETA"));
    /// The mediator spawned on STUCK, CONFLICT or COMPLEXITY (a voter); the second and later
    /// GAMMAs of a pipeline are `GAMMA-2`, ... ([`Role::gamma`]).
    pub const GAMMA: Role = Role(Name::Builtin("GAMMA"));
    /// Writes the RUNNING stage's report.
    pub const REPORTER: Role = Role(Name::Builtin("REPORTER"));
    /// The engine itself, as the sender of handoff announcements and of remote workers'
    /// control messages.
    pub const ORCHESTRATOR: Role = Role(Name::Builtin("ORCHESTRATOR"));

    /// Validates a role name (`[A-Za-z0-9_-]{1,32}`).
    ///
    /// # Errors
    /// [`Error::InvalidId`] (`what` = `role`) when the name does not match.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        crate::ids::validate_id("role", name)?;
        if name.len() > MAX_ROLE_LEN {
            return Err(Error::InvalidId {
                what: "role",
                value: name.chars().take(80).collect(),
            });
        }
        Ok(Self(Name::Custom(Arc::from(name))))
    }

    /// The agent name of the `n`-th GAMMA of a pipeline: `GAMMA` for the first, `GAMMA-<n>`
    /// after it.
    #[must_use]
    pub fn gamma(n: u32) -> Self {
        if n <= 1 {
            Self::GAMMA
        } else {
            Self(Name::Custom(Arc::from(format!("GAMMA-{n}").as_str())))
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Builtin(s) => s,
            Name::Custom(s) => s,
        }
    }

    /// Whether this is the name of a role the engine plays or spawns itself: `ALPHA`, `BETA`,
    /// `GAMMA` (and `GAMMA-<n>`), `REPORTER` or `ORCHESTRATOR`. A custom role may not take
    /// one of the GAMMA, REPORTER or ORCHESTRATOR names.
    #[must_use]
    pub fn is_builtin(&self) -> bool {
        [Self::ALPHA, Self::BETA, Self::REPORTER, Self::ORCHESTRATOR].contains(self)
            || self.is_gamma()
    }

    /// Whether this is a GAMMA's name (`GAMMA`, `GAMMA-2`, ...: any name starting `GAMMA`,
    /// which a custom role may therefore not take).
    #[must_use]
    pub fn is_gamma(&self) -> bool {
        self.as_str().starts_with(Self::GAMMA.as_str())
    }

    /// The agent id of the agent playing this role (a role name is a valid id).
    #[must_use]
    pub fn agent_id(&self) -> AgentId {
        AgentId::new(self.as_str())
            .unwrap_or_else(|_| unreachable!("a role name is a valid agent id"))
    }
}

impl PartialEq for Role {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Role {}

impl Hash for Role {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Role {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Role> for str {
    fn eq(&self, other: &Role) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Role> for &str {
    fn eq(&self, other: &Role) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Role> for AgentId {
    fn eq(&self, other: &Role) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Borrow<str> for Role {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Role({:?})", self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for Role {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<Role> for String {
    fn from(r: Role) -> String {
        r.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_like_ids_but_shorter() {
        for bad in ["", "a:b", "{x}", "a b", &"R".repeat(33), "é"] {
            assert!(Role::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Role::new("R".repeat(32)).unwrap().as_str().len(), 32);
        let r: std::result::Result<Role, _> = serde_json::from_str("\"bad:role\"");
        assert!(r.is_err());
    }

    #[test]
    fn a_custom_role_named_like_a_builtin_one_is_that_role() {
        let alpha = Role::new("ALPHA").unwrap();
        assert_eq!(alpha, Role::ALPHA);
        let mut set = std::collections::HashSet::new();
        set.insert(Role::ALPHA);
        assert!(set.contains("ALPHA") && set.contains(&alpha));
    }

    #[test]
    fn serializes_as_its_name() {
        assert_eq!(
            serde_json::to_string(&Role::REPORTER).unwrap(),
            "\"REPORTER\""
        );
        let back: Role = serde_json::from_str("\"CRITIC\"").unwrap();
        assert_eq!(back, "CRITIC");
    }

    #[test]
    fn gammas_and_builtins() {
        assert_eq!(Role::gamma(1), Role::GAMMA);
        assert_eq!(Role::gamma(3).as_str(), "GAMMA-3");
        assert!(Role::gamma(3).is_gamma() && Role::gamma(3).is_builtin());
        assert!(Role::ORCHESTRATOR.is_builtin());
        assert!(!Role::new("CRITIC").unwrap().is_builtin());
        assert_eq!(Role::BETA.agent_id().as_str(), "BETA");
    }
}
