//! The live event feed behind `/ws` and `/api/events`: replay from the ledger, then live
//! events, without gaps or duplicates, in bounded memory.
//!
//! - **One pipeline** (`?pipeline_id=`, optionally `&since=<seq>`): the feed subscribes to the
//!   live channel *first*, then replays the ledger after `since` page by page, then forwards
//!   live events, dropping any `seq` it already sent. When the client is too slow and the live
//!   channel overflows (`Lagged`), the feed catches up from the ledger by itself — the ledger
//!   holds every event before it is broadcast — so the client still sees every `seq` exactly
//!   once.
//! - **All pipelines**: live events only (`since` is per pipeline and needs `pipeline_id`).
//!   When the client is too slow the feed sends
//!   `{"type": "resync", "data": {"missed": n, "reason": "..."}}` and goes on with newer events:
//!   the client refetches `/api/pipelines` (or reconnects per pipeline with `since`).
//!
//! Memory per client is bounded by the live channel's capacity (shared) plus one ledger page.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use governance_core::{Event, Governance, PipelineId};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, parse_id};

const PAGE: usize = 500;

/// Query of `/ws` and `/api/events`.
#[derive(Debug, Default, Deserialize)]
pub struct FeedQuery {
    /// Only this pipeline's events.
    #[serde(default)]
    pub pipeline_id: Option<String>,
    /// Replay events with `seq` greater than this first (needs `pipeline_id`).
    #[serde(default)]
    pub since: Option<u64>,
    /// API token for browsers (see [`crate::auth`]); ignored here.
    #[serde(default)]
    pub token: Option<String>,
}

/// What the feed yields: an event or a control message, both as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// An event in the design's shape.
    Event(Arc<Event>),
    /// `{"type": "resync", ...}`: the client missed live events.
    Resync {
        /// How many events were skipped.
        missed: u64,
    },
    /// The feed cannot go on (e.g. the ledger failed); the text says why.
    Fatal(String),
}

impl FeedItem {
    /// The JSON text sent to the client.
    #[must_use]
    pub fn to_json(&self) -> String {
        match self {
            Self::Event(e) => serde_json::to_string(&**e).unwrap_or_default(),
            Self::Resync { missed } => json!({
                "type": "resync",
                "data": {
                    "missed": missed,
                    "reason": "client too slow: refetch /api/pipelines, or reconnect with ?pipeline_id=<id>&since=<last seq>",
                },
            })
            .to_string(),
            Self::Fatal(msg) => json!({"type": "error", "data": {"kind": "feed", "message": msg}}).to_string(),
        }
    }

    /// The SSE event name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Event(e) => e.kind.type_name(),
            Self::Resync { .. } => "resync",
            Self::Fatal(_) => "error",
        }
    }
}

/// A validated feed request.
#[derive(Debug, Clone)]
pub struct FeedSpec {
    pipeline: Option<PipelineId>,
    since: Option<u64>,
}

impl FeedSpec {
    /// Validates the query (400 for a bad id or `since` without `pipeline_id`; 404 for an
    /// unknown pipeline).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn from_query(gov: &Governance, q: &FeedQuery) -> Result<Self, ApiError> {
        let pipeline = q.pipeline_id.as_deref().map(parse_id).transpose()?;
        if q.since.is_some() && pipeline.is_none() {
            return Err(ApiError::bad_request(
                "`since` needs `pipeline_id` (seq numbers are per pipeline)",
            ));
        }
        if let Some(id) = &pipeline {
            gov.get(id).await?;
        }
        Ok(Self {
            pipeline,
            since: q.since,
        })
    }
}

/// The feed's state; advance it with [`Feed::next`].
#[derive(Debug)]
pub struct Feed {
    gov: Governance,
    rx: broadcast::Receiver<Arc<Event>>,
    pipeline: Option<PipelineId>,
    /// Last `seq` sent (one-pipeline mode).
    last: u64,
    /// Ledger catch-up still to do (one-pipeline mode).
    catching_up: bool,
    buffered: VecDeque<Arc<Event>>,
    cancel: CancellationToken,
    done: bool,
}

impl Feed {
    /// Subscribes now (so nothing emitted after this call is missed) and starts from `spec`.
    #[must_use]
    pub fn new(gov: &Governance, spec: FeedSpec, cancel: CancellationToken) -> Self {
        let rx = gov.subscribe();
        let catching_up = spec.pipeline.is_some();
        Self {
            gov: gov.clone(),
            rx,
            pipeline: spec.pipeline,
            last: spec.since.unwrap_or(0),
            catching_up,
            buffered: VecDeque::new(),
            cancel,
            done: false,
        }
    }

    /// The next item, or `None` when the feed ends (shutdown or fatal error).
    pub async fn next(&mut self) -> Option<FeedItem> {
        if self.done || self.cancel.is_cancelled() {
            return None;
        }
        loop {
            if let Some(ev) = self.buffered.pop_front() {
                self.last = ev.seq;
                return Some(FeedItem::Event(ev));
            }
            if self.catching_up {
                if let Err(msg) = self.fill_from_ledger().await {
                    self.done = true;
                    return Some(FeedItem::Fatal(msg));
                }
                continue;
            }
            let recv = tokio::select! {
                () = self.cancel.cancelled() => return None,
                r = self.rx.recv() => r,
            };
            match recv {
                Ok(ev) => match &self.pipeline {
                    None => return Some(FeedItem::Event(ev)),
                    Some(id) if ev.pipeline_id() != id || ev.seq <= self.last => {}
                    Some(_) if ev.seq == self.last + 1 => {
                        self.last = ev.seq;
                        return Some(FeedItem::Event(ev));
                    }
                    // a gap: the ledger has everything before this event
                    Some(_) => self.catching_up = true,
                },
                Err(RecvError::Lagged(n)) => {
                    if self.pipeline.is_some() {
                        self.catching_up = true;
                    } else {
                        return Some(FeedItem::Resync { missed: n });
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next ledger page after `last`; ends catch-up when the page is short.
    async fn fill_from_ledger(&mut self) -> Result<(), String> {
        let Some(id) = &self.pipeline else {
            self.catching_up = false;
            return Ok(());
        };
        let page = tokio::select! {
            () = self.cancel.cancelled() => return Ok(()),
            p = self.gov.events(id, self.last, PAGE) => p.map_err(|e| e.to_string())?,
        };
        if page.len() < PAGE {
            self.catching_up = false;
        }
        let mut expected = self.last + 1;
        for ev in page {
            if ev.seq == expected {
                expected += 1;
                self.buffered.push_back(Arc::new(ev));
            }
        }
        Ok(())
    }

    /// The feed as a stream (ends on shutdown or a fatal error).
    pub fn into_stream(self) -> impl Stream<Item = FeedItem> + Send + 'static {
        futures::stream::unfold(self, |mut feed| async move {
            feed.next().await.map(|item| (item, feed))
        })
    }
}
