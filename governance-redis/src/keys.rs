//! Key and channel names. Every key of one pipeline carries the hash tag `{<pipeline_id>}`, so
//! all of a pipeline's keys live in one Redis Cluster slot / one Dragonfly shard.

use governance_core::PipelineId;

/// The names of one pipeline's keys (`<prefix>:{<pipeline_id>}:<name>`).
///
/// Pipeline ids are validated (`[A-Za-z0-9_-]{1,64}`) before they get here, so a key can never
/// escape its hash tag.
#[derive(Debug, Clone)]
pub struct PipelineKeys {
    base: String,
}

impl PipelineKeys {
    /// Keys of `pipeline` under `prefix` (normally `gov`).
    #[must_use]
    pub fn new(prefix: &str, pipeline: &PipelineId) -> Self {
        Self {
            base: format!("{prefix}:{{{}}}", pipeline.as_str()),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }

    /// HASH proposal id → proposal body JSON.
    #[must_use]
    pub fn proposals(&self) -> String {
        self.key("proposals")
    }
    /// LIST of proposal ids in creation order.
    #[must_use]
    pub fn proposal_ids(&self) -> String {
        self.key("proposal_ids")
    }
    /// HASH proposal id → status (`OPEN`, `ACCEPTED`, `REJECTED`, `SUPERSEDED`).
    #[must_use]
    pub fn proposal_status(&self) -> String {
        self.key("proposal_status")
    }
    /// HASH proposal id → JSON array of votes in the order recorded.
    #[must_use]
    pub fn votes(&self) -> String {
        self.key("votes")
    }
    /// STRING: the consensus JSON, once decided.
    #[must_use]
    pub fn consensus(&self) -> String {
        self.key("consensus")
    }
    /// LIST of solution JSON in the order written.
    #[must_use]
    pub fn solutions(&self) -> String {
        self.key("solutions")
    }
    /// HASH handoff id → handoff JSON (without `claimed_by`).
    #[must_use]
    pub fn handoffs(&self) -> String {
        self.key("handoffs")
    }
    /// LIST of handoff ids in the order written.
    #[must_use]
    pub fn handoff_ids(&self) -> String {
        self.key("handoff_ids")
    }
    /// HASH handoff id → claiming agent id.
    #[must_use]
    pub fn handoff_claims(&self) -> String {
        self.key("handoff_claims")
    }
    /// HASH partial-result key → `{"v":1,"value":…}`.
    #[must_use]
    pub fn partials(&self) -> String {
        self.key("partials")
    }
    /// LIST: the pipeline's audit ledger, one entry JSON per event, index = `seq - 1`.
    #[must_use]
    pub fn ledger(&self) -> String {
        self.key("ledger")
    }
    /// STRING: the latest checkpoint JSON.
    #[must_use]
    pub fn checkpoint(&self) -> String {
        self.key("checkpoint")
    }
    /// HASH: `seq` of the stored checkpoint and `count` of checkpoints taken.
    #[must_use]
    pub fn checkpoint_meta(&self) -> String {
        self.key("checkpoint_meta")
    }
    /// STRING: the pipeline record JSON (the registry entry).
    #[must_use]
    pub fn record(&self) -> String {
        self.key("record")
    }
    /// STRING with a TTL: the owner's lease, `<node>:<token>`.
    #[must_use]
    pub fn owner(&self) -> String {
        self.key("owner")
    }
    /// STRING with a TTL: the node archiving the finished pipeline now.
    #[must_use]
    pub fn archiving(&self) -> String {
        self.key("archiving")
    }
    /// STRING: a [`Command`](governance_core::Command) JSON for the owner (stop, continue)
    /// from a node that does not run the pipeline.
    #[must_use]
    pub fn command(&self) -> String {
        self.key("command")
    }
    /// STRING: the node that archived the finished pipeline.
    #[must_use]
    pub fn archived(&self) -> String {
        self.key("archived")
    }
    /// HASH: money reserved and spent, integer nano-dollars: `total` and `agent:<id>`
    /// (`crate::RedisCostLedger`; rebuilt from the ledger's `llm_call` events when lost).
    #[must_use]
    pub fn cost(&self) -> String {
        self.key("cost")
    }
    /// STRING: the fencing token, incremented at every change of owner.
    #[must_use]
    pub fn fence(&self) -> String {
        self.key("fence")
    }
    /// STRING: the last bus `seq` assigned.
    #[must_use]
    pub fn bus_seq(&self) -> String {
        self.key("bus:seq")
    }
    /// STREAM: the bus message log; entry id `<seq>-0`, one field `m` = message JSON.
    #[must_use]
    pub fn bus_log(&self) -> String {
        self.key("bus:log")
    }
    /// Pub/sub channel of live bus messages (not a key).
    #[must_use]
    pub fn bus_channel(&self) -> String {
        self.key("bus:live")
    }

    /// Every blackboard key, in the order the restore script declares them.
    #[must_use]
    pub fn blackboard_keys(&self) -> [String; 10] {
        [
            self.proposals(),
            self.proposal_ids(),
            self.proposal_status(),
            self.votes(),
            self.consensus(),
            self.solutions(),
            self.handoffs(),
            self.handoff_ids(),
            self.handoff_claims(),
            self.partials(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = PipelineKeys::new("gov", &PipelineId::new("p-1").unwrap());
        assert_eq!(k.proposals(), "gov:{p-1}:proposals");
        assert_eq!(k.bus_log(), "gov:{p-1}:bus:log");
        for key in k.blackboard_keys() {
            assert!(key.starts_with("gov:{p-1}:"), "{key}");
        }
    }
}
