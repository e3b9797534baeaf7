//! In-memory backends: correct under concurrency, for tests and the embedded default.
//!
//! - [`MemoryBlackboard`] is the [`Blackboard`](crate::Blackboard), sharded per pipeline.
//! - [`MemoryBus`] is the [`MessageBus`](crate::MessageBus): a log per pipeline plus live
//!   fan-out.
//! - [`MemoryStore`] is the [`LedgerStore`](crate::LedgerStore),
//!   [`CheckpointStore`](crate::CheckpointStore) and
//!   [`PipelineRegistry`](crate::PipelineRegistry) in one struct.
//!
//! All of them pass the conformance suites of the `testkit` module (feature `testkit`).

mod blackboard;
mod bus;
mod store;

pub use blackboard::MemoryBlackboard;
pub use bus::MemoryBus;
pub use store::MemoryStore;
