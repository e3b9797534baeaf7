//! Who may write a pipeline when several engines (server nodes) share one set of stores.
//!
//! A single process owns every pipeline it runs: [`SingleNode`], the default. With several
//! nodes on one Redis (`governance-redis`'s `RedisLeases`), each pipeline has one owner at a
//! time, held as a lease that the owner renews; a node that dies stops renewing, and another
//! node takes the pipeline over ([`Governance::adopt`](crate::Governance::adopt)) from its last
//! checkpoint. Every write of the owner carries a *fencing token* that the stores check, so an
//! old owner that wakes up after its lease was taken gets [`Error::Fenced`](crate::Error::Fenced)
//! instead of overwriting the new owner's state.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::engine::{ApprovalDecision, ContinueRequest};
use crate::error::Result;
use crate::ids::PipelineId;

/// A request for the engine that owns a pipeline, made on an engine that does not run it
/// (see [`Ownership::forward`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Emergency stop.
    Stop,
    /// Continue from REPORT into orchestration.
    Continue(ContinueRequest),
    /// A human's decision on a pipeline waiting at `AWAITING_APPROVAL`; the owner carries it
    /// out with [`Governance::approve_forwarded`](crate::Governance::approve_forwarded).
    Approve {
        /// The decision.
        decision: ApprovalDecision,
        /// Identifies the request in the `approval_decided` event, so the asking node can
        /// tell whether its decision won.
        decision_id: String,
    },
}

/// Ownership of pipelines by this engine.
///
/// # Contract
/// - [`claim_new`](Self::claim_new) is called once, before the first write of a pipeline this
///   engine spawns; an error refuses the spawn.
/// - [`take_over`](Self::take_over) returns `Ok(true)` only when this engine now owns the
///   pipeline (its previous owner's lease had expired); at most one caller wins.
/// - [`release`](Self::release) is called when the engine stops driving the pipeline: it
///   ended (`terminal`), or the engine is shutting down and suspended it. It must not fail.
/// - An implementation that fences writes makes the stores refuse a write for a pipeline
///   whose lease this engine lost, with [`Error::Fenced`](crate::Error::Fenced); the engine then
///   drops the pipeline without writing anything more.
#[async_trait]
pub trait Ownership: Send + Sync + std::fmt::Debug {
    /// This engine's node id (in logs and metrics).
    fn node_id(&self) -> &str;

    /// Claims a new pipeline for this engine.
    async fn claim_new(&self, id: &PipelineId) -> Result<()>;

    /// Tries to take over a pipeline whose owner is gone; `Ok(true)` when this engine now
    /// owns it.
    async fn take_over(&self, id: &PipelineId) -> Result<bool>;

    /// Gives the pipeline up (`terminal`: it ended; otherwise it was suspended).
    async fn release(&self, id: &PipelineId, terminal: bool);

    /// Hands `command` to whichever engine owns `id` (this one does not run it). `Ok(false)`
    /// when there is no other engine to hand it to (the default).
    async fn forward(&self, _id: &PipelineId, _command: &Command) -> Result<bool> {
        Ok(false)
    }
}

/// One engine owns everything it runs (no other engine shares its stores). The default.
#[derive(Debug, Clone, Default)]
pub struct SingleNode;

#[async_trait]
impl Ownership for SingleNode {
    fn node_id(&self) -> &'static str {
        "standalone"
    }

    async fn claim_new(&self, _id: &PipelineId) -> Result<()> {
        Ok(())
    }

    async fn take_over(&self, _id: &PipelineId) -> Result<bool> {
        Ok(true)
    }

    async fn release(&self, _id: &PipelineId, _terminal: bool) {}
}
