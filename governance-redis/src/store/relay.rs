//! The payload `append_state` publishes on `gov:events`, so that the other nodes of a cluster
//! relay a node's events into their live feeds (see [`crate::cluster`]).

use governance_core::{Event, Result};
use serde::{Deserialize, Serialize};

use super::to_json;

/// The payload published on `gov:events` for other nodes: `{"node": .., "events": [..]}`.
pub(super) fn relay_payload(node: &str, events: &[&Event]) -> Result<String> {
    #[derive(Serialize)]
    struct Relay<'a> {
        v: u32,
        node: &'a str,
        events: &'a [&'a Event],
    }
    to_json(&Relay { v: 1, node, events })
}

/// A relayed batch of events from another node.
#[derive(Debug, Deserialize)]
pub(crate) struct Relayed {
    pub node: String,
    pub events: Vec<Event>,
}
