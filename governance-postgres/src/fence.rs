//! The fencing tokens of the pipelines this node owns: filled by [`crate::PgLeases`], read by
//! every write of a fenced [`crate::PgStore`] and checked by the database in the write's own
//! transaction.

use std::collections::HashMap;

use governance_core::PipelineId;
use parking_lot::Mutex;

/// The fencing tokens of the pipelines this node owns.
#[derive(Debug)]
pub(crate) struct LeaseTable {
    pub(crate) node: String,
    pub(crate) held: Mutex<HashMap<PipelineId, i64>>,
}

impl LeaseTable {
    pub(crate) fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            held: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn token(&self, id: &PipelineId) -> Option<i64> {
        self.held.lock().get(id).copied()
    }

    pub(crate) fn forget(&self, id: &PipelineId) {
        self.held.lock().remove(id);
    }

    pub(crate) fn owned(&self) -> Vec<(PipelineId, i64)> {
        self.held
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}
