//! JSON payloads of the wire protocol (`docs/wire-protocol.md`). Every stored object carries
//! `"v": 1`; readers ignore fields they do not know.

use governance_core::BLACKBOARD_PAYLOAD_VERSION;
use governance_core::{Consensus, Error, Handoff, Message, Proposal, Result, Solution, Vote};
use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::conn::corrupt_json;

/// Version of every payload this crate writes.
pub const WIRE_VERSION: u32 = BLACKBOARD_PAYLOAD_VERSION;

/// `value` as a JSON object with `"v"` set and the `drop` fields removed.
fn object_with_version<T: Serialize>(value: &T, drop: &[&str]) -> Result<String> {
    if drop.is_empty() {
        // Hot path (votes, solutions, consensus): serialize once and put `"v"` first, without
        // building a `serde_json::Value` tree.
        let json = serde_json::to_string(value)
            .map_err(|e| Error::InvalidInput(format!("cannot encode payload: {e}")))?;
        let Some(rest) = json.strip_prefix('{') else {
            return Err(Error::Internal("payload is not a JSON object".into()));
        };
        return Ok(if rest == "}" {
            format!("{{\"v\":{WIRE_VERSION}}}")
        } else {
            format!("{{\"v\":{WIRE_VERSION},{rest}")
        });
    }
    let mut v = serde_json::to_value(value)
        .map_err(|e| Error::InvalidInput(format!("cannot encode payload: {e}")))?;
    let Value::Object(map) = &mut v else {
        return Err(Error::Internal("payload is not a JSON object".into()));
    };
    for field in drop {
        map.remove(*field);
    }
    map.insert("v".into(), Value::from(WIRE_VERSION));
    serde_json::to_string(&v)
        .map_err(|e| Error::InvalidInput(format!("cannot encode payload: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| corrupt_json(what, e))
}

/// The proposal body: everything but `status` and `votes`, which live in their own hashes.
pub(crate) fn proposal_body(p: &Proposal) -> Result<String> {
    object_with_version(p, &["status", "votes"])
}

/// A proposal from its body, status and votes array.
pub(crate) fn assemble_proposal(body: &str, status: &str, votes: &str) -> Result<Proposal> {
    let mut map: Map<String, Value> = decode("proposal", body)?;
    map.insert("status".into(), Value::from(status));
    let votes: Value = decode("votes", votes)?;
    map.insert("votes".into(), votes);
    serde_json::from_value(Value::Object(map)).map_err(|e| corrupt_json("proposal", e))
}

/// The proposal's status as stored (`OPEN`, ...).
pub(crate) fn status_str(p: &Proposal) -> Result<String> {
    match serde_json::to_value(p.status) {
        Ok(Value::String(s)) => Ok(s),
        _ => Err(Error::Internal("proposal status did not encode".into())),
    }
}

/// One vote (an element of the votes array).
pub(crate) fn vote(v: &Vote) -> Result<String> {
    object_with_version(v, &[])
}

/// A JSON array of votes.
pub(crate) fn votes(vs: &[Vote]) -> Result<String> {
    let items = vs.iter().map(vote).collect::<Result<Vec<_>>>()?;
    Ok(format!("[{}]", items.join(",")))
}

/// Consensus JSON.
pub(crate) fn consensus(c: &Consensus) -> Result<String> {
    object_with_version(c, &[])
}

/// Decodes a consensus.
pub(crate) fn decode_consensus(json: &str) -> Result<Consensus> {
    decode("consensus", json)
}

/// Solution JSON.
pub(crate) fn solution(s: &Solution) -> Result<String> {
    object_with_version(s, &[])
}

/// Decodes a solution.
pub(crate) fn decode_solution(json: &str) -> Result<Solution> {
    decode("solution", json)
}

/// Handoff JSON without `claimed_by` (claims live in their own hash).
pub(crate) fn handoff(h: &Handoff) -> Result<String> {
    object_with_version(h, &["claimed_by"])
}

/// A handoff from its JSON and its claimer.
pub(crate) fn decode_handoff(json: &str, claimer: Option<&str>) -> Result<Handoff> {
    let mut map: Map<String, Value> = decode("handoff", json)?;
    map.insert(
        "claimed_by".into(),
        claimer.map_or(Value::Null, Value::from),
    );
    serde_json::from_value(Value::Object(map)).map_err(|e| corrupt_json("handoff", e))
}

/// Partial result JSON: `{"v":1,"value":…}`.
pub(crate) fn partial(value: &Value) -> Result<String> {
    serde_json::to_string(&serde_json::json!({"v": WIRE_VERSION, "value": value}))
        .map_err(|e| Error::InvalidInput(format!("cannot encode partial result: {e}")))
}

/// Decodes a partial result.
pub(crate) fn decode_partial(json: &str) -> Result<Value> {
    let mut map: Map<String, Value> = decode("partial result", json)?;
    Ok(map.remove("value").unwrap_or(Value::Null))
}

/// Bus message JSON without `seq` (the publish script inserts it).
pub(crate) fn message(m: &Message) -> Result<String> {
    object_with_version(m, &["seq"])
}

/// Decodes a bus message (with its `seq`).
pub(crate) fn decode_message(json: &str) -> Result<Message> {
    decode("bus message", json)
}

// Assembling what multi-key reads return.

pub(crate) type ProposalMaps = (
    HashMap<String, String>,
    Vec<String>,
    HashMap<String, String>,
    HashMap<String, String>,
);

pub(crate) fn assemble_all((bodies, ids, statuses, votes): &ProposalMaps) -> Result<Vec<Proposal>> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .filter_map(|id| bodies.get(id).map(|b| (id, b)))
        .map(|(id, body)| {
            assemble_proposal(
                body,
                statuses.get(id).map_or("OPEN", String::as_str),
                votes.get(id).map_or("[]", String::as_str),
            )
        })
        .collect()
}

pub(crate) fn assemble_handoffs(
    bodies: &HashMap<String, String>,
    ids: &[String],
    claims: &HashMap<String, String>,
) -> Result<Vec<Handoff>> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .filter_map(|id| bodies.get(id).map(|b| (id, b)))
        .map(|(id, body)| decode_handoff(body, claims.get(id).map(String::as_str)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use governance_core::{AgentId, ProposalId};

    #[test]
    fn proposal_round_trips_through_body_status_and_votes() {
        let mut p = Proposal::new(
            ProposalId::new("p1").unwrap(),
            AgentId::new("ALPHA").unwrap(),
            "t",
            "c \"quoted\"\n",
        );
        p.votes.push(Vote {
            voter: AgentId::new("BETA").unwrap(),
            approve: true,
            score: 0.123_456_789_012_345_67,
            rationale: "r".into(),
        });
        let body = proposal_body(&p).unwrap();
        assert!(body.contains("\"v\":1") && !body.contains("votes"));
        let back =
            assemble_proposal(&body, &status_str(&p).unwrap(), &votes(&p.votes).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn versioned_objects_round_trip() {
        let v = Vote {
            voter: AgentId::new("BETA").unwrap(),
            approve: false,
            score: 0.25,
            rationale: "no \"quote\" {brace}".into(),
        };
        let json = vote(&v).unwrap();
        assert!(json.starts_with("{\"v\":1,"), "{json}");
        let back: Vote = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn message_json_has_no_seq_and_a_version() {
        let m = Message::new(AgentId::new("A").unwrap(), "*", "t", "hi");
        let json = message(&m).unwrap();
        assert!(json.starts_with('{') && !json.contains("\"seq\"") && json.contains("\"v\":1"));
        let with_seq = format!("{{\"seq\":4,{}", &json[1..]);
        let back = decode_message(&with_seq).unwrap();
        assert_eq!(back.seq, 4);
        assert_eq!(back.content, "hi");
    }
}
