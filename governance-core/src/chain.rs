//! The hash chain of the audit ledger, shared by every ledger backend (SQLite, Redis) so a
//! chain computed by one verifies with the other and entries can be copied between them.
//!
//! # Entry hash
//! `hash = SHA-256(prev_hash ‖ field(pipeline_id) ‖ seq as u64 big-endian ‖ field(type) ‖
//! field(agent_id or "") ‖ ts as i64 nanoseconds big-endian ‖ field(data))`, where
//! `field(x)` is `x`'s UTF-8 length as u32 big-endian followed by its bytes, `prev_hash` is the
//! previous entry's hash (32 zero bytes for `seq` 1) and `data` is the event's `data` object as
//! stored: compact JSON without its `pipeline_id` member. Every field of the entry is covered,
//! so any edit breaks the chain.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::event::{Event, EventKind};

/// The `prev_hash` of the first entry of a pipeline.
pub const GENESIS: [u8; 32] = [0; 32];

/// One ledger entry in its stored form, ready to be hashed and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The pipeline.
    pub pipeline_id: String,
    /// The event's `seq`.
    pub seq: i64,
    /// The event type (`status_changed`, ...).
    pub kind: String,
    /// The agent the event is about, if any.
    pub agent_id: Option<String>,
    /// The event time in nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The event's `data` as compact JSON without `pipeline_id`.
    pub data: String,
}

impl LedgerRow {
    /// The row of `event` (its `data` as compact JSON, its time in nanoseconds).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a seq or time out of range.
    pub fn from_event(event: &Event) -> Result<Self, Error> {
        let seq = i64::try_from(event.seq)
            .map_err(|_| Error::InvalidInput(format!("event seq {} is too large", event.seq)))?;
        let ts = event.ts.timestamp_nanos_opt().ok_or_else(|| {
            Error::InvalidInput(format!("event time {} is out of range", event.ts))
        })?;
        let kind = event.kind.type_name();
        let tagged = serde_json::to_string(&event.kind)
            .map_err(|e| Error::Internal(format!("cannot serialize event: {e}")))?;
        // Adjacently tagged: `{"type":"<kind>","data":<data>}`.
        let prefix = format!("{{\"type\":\"{kind}\",\"data\":");
        let data = tagged
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix('}'))
            .ok_or_else(|| Error::Internal(format!("unexpected event JSON shape: {tagged}")))?;
        let pipeline_id = event.pipeline_id().to_string();
        Ok(Self {
            data: strip_pipeline_id(data, &pipeline_id),
            pipeline_id,
            seq,
            kind: kind.to_owned(),
            agent_id: event.kind.agent_id().map(ToString::to_string),
            ts,
        })
    }

    /// The event this row stores.
    ///
    /// # Errors
    /// A message naming the entry when its data does not parse as an event.
    pub fn to_event(&self) -> Result<Event, String> {
        let kind_json = serde_json::to_string(&self.kind).map_err(|e| e.to_string())?;
        let data = with_pipeline_id(&self.data, &self.pipeline_id);
        let kind: EventKind =
            serde_json::from_str(&format!("{{\"type\":{kind_json},\"data\":{data}}}"))
                .map_err(|e| format!("entry {} of {}: {e}", self.seq, self.pipeline_id))?;
        Ok(Event {
            seq: u64::try_from(self.seq).map_err(|e| e.to_string())?,
            ts: DateTime::<Utc>::from_timestamp_nanos(self.ts),
            kind,
        })
    }

    /// The entry hash chained on `prev` (see the module docs).
    #[must_use]
    pub fn hash(&self, prev: &[u8]) -> [u8; 32] {
        fn field(h: &mut Sha256, s: &str) {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            h.update(len.to_be_bytes());
            h.update(s.as_bytes());
        }
        let mut h = Sha256::new();
        h.update(prev);
        field(&mut h, &self.pipeline_id);
        h.update(self.seq.to_be_bytes());
        field(&mut h, &self.kind);
        field(&mut h, self.agent_id.as_deref().unwrap_or(""));
        h.update(self.ts.to_be_bytes());
        field(&mut h, &self.data);
        h.finalize().into()
    }
}

/// `data` without its leading `"pipeline_id"` member (it is a column); unchanged when it
/// does not start with it. Ids are `[A-Za-z0-9_-]`, so they need no JSON escaping.
fn strip_pipeline_id(data: &str, pipeline_id: &str) -> String {
    let member = format!("{{\"pipeline_id\":\"{pipeline_id}\"");
    match data.strip_prefix(member.as_str()) {
        Some(rest) => match rest.strip_prefix(',') {
            Some(more) => format!("{{{more}"),
            None => format!("{{{rest}"),
        },
        None => data.to_owned(),
    }
}

/// `data` with the `"pipeline_id"` member put back first (rows written before the pipeline id
/// was stripped already have it).
fn with_pipeline_id<'a>(data: &'a str, pipeline_id: &str) -> std::borrow::Cow<'a, str> {
    if data.starts_with("{\"pipeline_id\":") {
        return std::borrow::Cow::Borrowed(data);
    }
    let member = format!("{{\"pipeline_id\":\"{pipeline_id}\"");
    match data.strip_prefix('{') {
        Some("}") => std::borrow::Cow::Owned(format!("{member}}}")),
        Some(rest) => std::borrow::Cow::Owned(format!("{member},{rest}")),
        None => std::borrow::Cow::Borrowed(data),
    }
}
