//! The connection layer, a leaf every other part of the crate stands on: the configuration,
//! the shared multiplexed connection with its scripts and outage/retry helper ([`Shared`]),
//! the dedicated pub/sub connection ([`subscriber`]), and how redis errors are classified and
//! reported ([`error`]).

mod config;
mod durability;
mod error;
mod groups;
mod shared;
mod subscriber;

pub use config::{RedisConfig, redact_url};
pub use durability::Persistence;
pub use error::BACKEND;
pub(crate) use error::{Effect, corrupt, corrupt_json};
pub(crate) use shared::Shared;
