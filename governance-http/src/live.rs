//! The live event feed behind `/ws` and `/api/events`: replay from the ledger, then live
//! events, without gaps or duplicates, in bounded memory.
//!
//! - **One pipeline** (`?pipeline_id=`, optionally `&since=<seq>`): the feed subscribes to the
//!   live channel *first*, then replays the ledger after `since` page by page, then forwards
//!   live events, dropping any `seq` it already sent. When the client is too slow and the live
//!   channel overflows (`Lagged`), the feed catches up from the ledger by itself — the ledger
//!   holds every event before it is broadcast — so the client still sees every `seq` exactly
//!   once.
//! - **All pipelines** (`?replay_secs=N`, default [`DEFAULT_REPLAY_SECS`], at most
//!   [`MAX_REPLAY_SECS`]; `0` for live events only): the feed subscribes first, then replays
//!   the ledgers of the pipelines spawned in the last `N` seconds (at most [`MAX_PAGE`], oldest
//!   first, each in `seq` order, after `since` when given), then forwards live events, dropping
//!   those of a replayed pipeline it already sent. So `curl -N /api/events` right after a
//!   pipeline ended still shows it. When the client is too slow the feed sends
//!   `{"type": "resync", "data": {"missed": n, "reason": "..."}}` and goes on with newer events:
//!   the client refetches `/api/pipelines` (or reconnects per pipeline with `since`).
//!
//! Memory per client is bounded by the live channel's capacity (shared) plus one ledger page
//! (and, replaying all pipelines, one `seq` per replayed pipeline).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::Stream;
use governance_core::{Event, Governance, PipelineFilter, PipelineId};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, parse_id};
use crate::state::MAX_PAGE;

const PAGE: usize = 500;
/// How far back the all-pipelines stream replays by default (seconds).
pub const DEFAULT_REPLAY_SECS: u64 = 60;
/// The longest replay window of the all-pipelines stream (seconds).
pub const MAX_REPLAY_SECS: u64 = 3600;

/// Query of `/ws` and `/api/events`.
#[derive(Debug, Default, Deserialize)]
pub struct FeedQuery {
    /// Only this pipeline's events.
    #[serde(default)]
    pub pipeline_id: Option<String>,
    /// Replay only events with `seq` greater than this (of this pipeline, or of each replayed
    /// pipeline).
    #[serde(default)]
    pub since: Option<u64>,
    /// All-pipelines stream: replay the pipelines spawned in the last this many seconds
    /// (default [`DEFAULT_REPLAY_SECS`], at most [`MAX_REPLAY_SECS`], `0` for live only).
    #[serde(default)]
    pub replay_secs: Option<u64>,
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
    replay_secs: u64,
}

impl FeedSpec {
    /// Validates the query (400 for a bad id or `replay_secs` out of range; 404 for an unknown
    /// pipeline).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn from_query(gov: &Governance, q: &FeedQuery) -> Result<Self, ApiError> {
        let pipeline = q.pipeline_id.as_deref().map(parse_id).transpose()?;
        let replay_secs = q.replay_secs.unwrap_or(DEFAULT_REPLAY_SECS);
        if replay_secs > MAX_REPLAY_SECS {
            return Err(ApiError::bad_request(format!(
                "replay_secs must be between 0 and {MAX_REPLAY_SECS}"
            )));
        }
        if let Some(id) = &pipeline {
            gov.get(id).await?;
        }
        Ok(Self {
            pipeline,
            since: q.since,
            replay_secs,
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
    /// Ledger catch-up still to do (one pipeline, or the replay of all pipelines).
    catching_up: bool,
    /// All pipelines: replay this far back (seconds), listing the pipelines on the first read.
    replay_secs: u64,
    /// All pipelines: the pipelines still to replay, oldest first (`None` until listed).
    to_replay: Option<VecDeque<PipelineId>>,
    /// All pipelines: last `seq` sent per replayed pipeline (later live duplicates dropped).
    replayed: HashMap<PipelineId, u64>,
    buffered: VecDeque<Arc<Event>>,
    cancel: CancellationToken,
    done: bool,
}

impl Feed {
    /// Subscribes now (so nothing emitted after this call is missed) and starts from `spec`.
    #[must_use]
    pub fn new(gov: &Governance, spec: FeedSpec, cancel: CancellationToken) -> Self {
        let rx = gov.subscribe();
        let catching_up = spec.pipeline.is_some() || spec.replay_secs > 0;
        Self {
            gov: gov.clone(),
            rx,
            pipeline: spec.pipeline,
            last: spec.since.unwrap_or(0),
            catching_up,
            replay_secs: spec.replay_secs,
            to_replay: None,
            replayed: HashMap::new(),
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
                if self.pipeline.is_some() {
                    self.last = ev.seq;
                } else {
                    self.replayed.insert(ev.pipeline_id().clone(), ev.seq);
                }
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
                    None => match self.replayed.get_mut(ev.pipeline_id()) {
                        Some(last) if ev.seq <= *last => {}
                        Some(last) => {
                            *last = ev.seq;
                            return Some(FeedItem::Event(ev));
                        }
                        None => return Some(FeedItem::Event(ev)),
                    },
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
            return self.fill_replay().await;
        };
        let page = tokio::select! {
            () = self.cancel.cancelled() => return Ok(()),
            p = self.gov.events(id, self.last, PAGE) => p.map_err(|e| e.to_string())?,
        };
        if page.len() < PAGE {
            self.catching_up = false;
        }
        self.buffer_page(self.last, page);
        Ok(())
    }

    /// All pipelines: lists the pipelines to replay (first call), then reads the next ledger
    /// page of the oldest one left; ends catch-up when none is left.
    async fn fill_replay(&mut self) -> Result<(), String> {
        if self.to_replay.is_none() {
            let secs = i64::try_from(self.replay_secs).unwrap_or(i64::MAX);
            let filter = PipelineFilter {
                created_after: Some(chrono::Utc::now() - chrono::Duration::seconds(secs)),
                limit: MAX_PAGE,
                ..PipelineFilter::default()
            };
            let listed = tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                l = self.gov.list(&filter) => l.map_err(|e| e.to_string())?,
            };
            // newest first from the registry: replay the oldest first
            self.to_replay = Some(listed.into_iter().rev().map(|r| r.id).collect());
        }
        let Some(id) = self.to_replay.as_ref().and_then(|q| q.front().cloned()) else {
            self.catching_up = false;
            return Ok(());
        };
        let after = *self
            .replayed
            .entry(id.clone())
            .or_insert(self.last /* `since`, 0 when absent */);
        let page = tokio::select! {
            () = self.cancel.cancelled() => return Ok(()),
            p = self.gov.events(&id, after, PAGE) => p.map_err(|e| e.to_string())?,
        };
        if page.len() < PAGE
            && let Some(q) = self.to_replay.as_mut()
        {
            q.pop_front();
        }
        self.buffer_page(after, page);
        Ok(())
    }

    /// Buffers a ledger page read after `after`, stopping at the first gap.
    fn buffer_page(&mut self, after: u64, page: Vec<Event>) {
        let mut expected = after + 1;
        for ev in page {
            if ev.seq == expected {
                expected += 1;
                self.buffered.push_back(Arc::new(ev));
            }
        }
    }

    /// The feed as a stream (ends on shutdown or a fatal error).
    pub fn into_stream(self) -> impl Stream<Item = FeedItem> + Send + 'static {
        futures::stream::unfold(self, |mut feed| async move {
            feed.next().await.map(|item| (item, feed))
        })
    }
}
