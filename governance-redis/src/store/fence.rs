//! The fencing tokens of the pipelines this node owns: filled by the cluster's leases
//! ([`crate::cluster::RedisLeases`]), read by every write of a fenced [`super::RedisStore`].

use std::collections::HashMap;

use governance_core::PipelineId;
use parking_lot::Mutex;

/// The fencing tokens of the pipelines this node owns.
#[derive(Debug)]
pub(crate) struct LeaseTable {
    pub(crate) node: String,
    pub(crate) held: Mutex<HashMap<PipelineId, u64>>,
}

impl LeaseTable {
    pub(crate) fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            held: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn token(&self, id: &PipelineId) -> Option<u64> {
        self.held.lock().get(id).copied()
    }

    pub(crate) fn forget(&self, id: &PipelineId) {
        self.held.lock().remove(id);
    }
}
