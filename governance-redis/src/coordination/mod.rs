//! Coordination of one pipeline's agents across processes: the [`RedisBlackboard`], the
//! [`RedisBus`] and its consumer groups ([`GroupConsumer`]). Stands on [`crate::conn`] only
//! (plus the leaf key and payload modules).

mod blackboard;
mod bus;
mod groups;

pub use blackboard::RedisBlackboard;
pub use bus::RedisBus;
pub use groups::{Delivery, GroupConsumer};
