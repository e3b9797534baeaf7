//! Validated identifiers. Every id that may reach a storage key is checked here first.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The longest id we accept.
pub const MAX_ID_LEN: usize = 64;

/// Checks `value` against `[A-Za-z0-9_-]{1,64}`.
///
/// # Errors
/// [`Error::InvalidId`] naming `what` when the value does not match.
pub fn validate_id(what: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId {
            what,
            value: value.chars().take(80).collect(),
        })
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Validates and wraps `value`.
            ///
            /// # Errors
            /// [`Error::InvalidId`] when `value` is not `[A-Za-z0-9_-]{1,64}`.
            pub fn new(value: impl AsRef<str>) -> Result<Self> {
                let value = value.as_ref();
                validate_id($what, value)?;
                Ok(Self(std::sync::Arc::from(value)))
            }

            /// The id as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// Identifies one pipeline. Generated ids are UUIDv7 in simple form (time-ordered).
    PipelineId,
    "pipeline"
);
id_type!(
    /// Identifies one agent within a pipeline (e.g. `ALPHA`, `BETA`, `GAMMA`, `GAMMA-2`).
    AgentId,
    "agent"
);
id_type!(
    /// Identifies a proposal on a pipeline's blackboard.
    ProposalId,
    "proposal"
);
id_type!(
    /// Identifies a handoff on a pipeline's blackboard.
    HandoffId,
    "handoff"
);

impl PipelineId {
    /// A fresh, time-ordered pipeline id.
    #[must_use]
    pub fn generate() -> Self {
        Self(std::sync::Arc::from(
            uuid::Uuid::now_v7().simple().to_string().as_str(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ids_that_could_escape_a_key() {
        for bad in ["", "a:b", "a}b", "../x", "a b", &"x".repeat(65), "é"] {
            assert!(PipelineId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(PipelineId::new("abc_DEF-123").is_ok());
        assert!(PipelineId::new("x".repeat(64)).is_ok());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = PipelineId::generate();
        let b = PipelineId::generate();
        assert_ne!(a, b);
        assert!(PipelineId::new(a.as_str()).is_ok());
    }

    #[test]
    fn deserialization_validates() {
        let r: std::result::Result<PipelineId, _> = serde_json::from_str("\"bad:id\"");
        assert!(r.is_err());
        let ok: PipelineId = serde_json::from_str("\"good\"").unwrap();
        assert_eq!(ok.as_str(), "good");
    }
}
