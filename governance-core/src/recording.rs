//! Record and replay of LLM exchanges: the way to debug a production run offline, without
//! spending a cent.
//!
//! - [`RecordingLlm`] wraps any [`LlmClient`] and writes every call it makes — success, failure
//!   or abandoned (the caller dropped it: stop, timeout) — as an [`LlmExchange`] to an
//!   [`ExchangeStore`] (in memory: [`MemoryExchangeStore`]; on SQLite: `governance-sqlite`).
//! - [`ReplayLlm`] answers from the recorded exchanges of one pipeline, keyed by
//!   [`ReplayKey`] `(agent_id, purpose, attempt)`. `attempt` is the calling agent's own counter
//!   of requests sent ([`crate::RequestMeta::attempt`]), so the key does not depend on how the
//!   agents' calls interleave: given the same answers, every agent asks the same questions in the
//!   same order. Replay is deterministic and makes no network call.
//!
//! An exchange's `request` is the [`LlmRequest`] as JSON: requests carry no secret (the API key
//! lives in the client), so nothing secret is ever recorded.
//!
//! ```
//! # async fn demo() -> governance_core::Result<()> {
//! use std::sync::Arc;
//! use governance_core::{Governance, LocalLlm, MemoryExchangeStore, RecordingLlm, ReplayLlm,
//!     SpawnRequest};
//!
//! let store = Arc::new(MemoryExchangeStore::default());
//! let recorded = Governance::builder()
//!     .llm("local", Arc::new(RecordingLlm::new(Arc::new(LocalLlm::default()), store.clone())))
//!     .build()?;
//! let id = recorded.spawn(SpawnRequest::new("Plan a cache")).await?;
//! let original = recorded.wait(&id).await?;
//!
//! let replay = Arc::new(ReplayLlm::from_store(store.as_ref(), &id).await?);
//! let offline = Governance::builder().llm("local", replay.clone()).build()?;
//! let again = offline.spawn(SpawnRequest::new("Plan a cache")).await?;
//! assert_eq!(offline.wait(&again).await?.status, original.status);
//! assert!(replay.stats().missing.is_empty());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, LlmFailure, Result};
use crate::ids::{AgentId, PipelineId};
use crate::llm::{DeltaSink, LlmClient, LlmRequest, LlmResponse, Purpose, Usage};

mod replay;
#[cfg(test)]
mod tests;

pub use replay::{ReplayKey, ReplayLlm, ReplayStats};

/// A failed call as recorded: enough to rebuild an [`Error`] of the same kind, retryability and
/// `Retry-After`, so a replayed pipeline takes the same recovery path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedError {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error as people read it (its `Display`).
    pub message: String,
    /// The variant's own text (what [`to_error`](Self::to_error) puts back).
    pub detail: String,
    /// Provider failure details, for [`ErrorKind::Llm`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmFailure>,
    /// The variable a configuration error named, for [`ErrorKind::Config`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var: Option<String>,
    /// Whether trying again could succeed.
    pub retryable: bool,
    /// The wait the failure asked for, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&Error> for RecordedError {
    fn from(e: &Error) -> Self {
        let (detail, llm, var) = match e {
            Error::InvalidInput(s)
            | Error::Conflict(s)
            | Error::Unauthorized(s)
            | Error::BudgetExceeded(s)
            | Error::MalformedOutput(s)
            | Error::ProcedureViolation(s)
            | Error::Revoked(s)
            | Error::Timeout(s)
            | Error::Internal(s) => (s.clone(), None, None),
            Error::Llm(f) => (f.message.clone(), Some(f.clone()), None),
            Error::Backend { message, .. } => (message.clone(), None, None),
            Error::Config { var, message } => (message.clone(), None, Some(var.clone())),
            other => (other.to_string(), None, None),
        };
        Self {
            kind: e.kind(),
            message: e.to_string(),
            detail,
            llm,
            var,
            retryable: e.is_retryable(),
            retry_after_ms: e.retry_after().map(millis),
        }
    }
}

impl RecordedError {
    /// The error again: same kind, text, retryability and `Retry-After`.
    #[must_use]
    pub fn to_error(&self) -> Error {
        let d = self.detail.clone();
        let retry_after = self.retry_after_ms.map(Duration::from_millis);
        match self.kind {
            ErrorKind::Llm => Error::Llm(self.llm.clone().unwrap_or(LlmFailure {
                status: None,
                provider_code: None,
                message: d,
                retryable: self.retryable,
                retry_after,
            })),
            ErrorKind::Unauthorized => Error::Unauthorized(d),
            ErrorKind::MalformedOutput => Error::MalformedOutput(d),
            ErrorKind::Timeout => Error::Timeout(d),
            ErrorKind::BudgetExceeded => Error::BudgetExceeded(d),
            ErrorKind::ProcedureViolation => Error::ProcedureViolation(d),
            ErrorKind::Revoked => Error::Revoked(d),
            ErrorKind::InvalidInput => Error::InvalidInput(d),
            ErrorKind::Conflict => Error::Conflict(d),
            ErrorKind::Cancelled => Error::Cancelled,
            ErrorKind::CircuitOpen => Error::CircuitOpen {
                retry_after: retry_after.unwrap_or_default(),
            },
            ErrorKind::Backend => Error::backend("recorded", d, self.retryable),
            ErrorKind::Config => Error::config(self.var.clone().unwrap_or_default(), d),
            _ => Error::Internal(self.message.clone()),
        }
    }
}

/// How a recorded call ended (`Result`-like: `{"ok": response}` / `{"err": error}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeOutcome {
    /// The model answered.
    Ok(LlmResponse),
    /// The call failed.
    Err(RecordedError),
    /// The caller dropped the call before it ended (stop, timeout, cancellation); a replay of
    /// it never answers either.
    Abandoned,
}

/// One LLM call of a pipeline, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmExchange {
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// The calling agent.
    pub agent_id: AgentId,
    /// Why it called.
    pub purpose: Purpose,
    /// The agent's own request counter ([`crate::RequestMeta::attempt`]).
    pub attempt: u32,
    /// The [`LlmRequest`] as JSON (requests carry no secret).
    pub request: serde_json::Value,
    /// The answer or the failure.
    pub response: ExchangeOutcome,
    /// The model that answered (the requested or default model when the call failed).
    pub model_used: String,
    /// Token usage (zero when the call failed).
    pub usage: Usage,
    /// Wall-clock latency of the call.
    pub latency_ms: u64,
    /// When the call ended.
    pub ts: DateTime<Utc>,
}

/// Version of the envelope [`LlmExchange::to_stored`] writes.
const STORED_ENVELOPE_VERSION: u64 = 1;

impl LlmExchange {
    /// The exchange as a store row keeps it, beside its own `pipeline_id` / `agent_id`
    /// columns: the request (the `LlmRequest` JSON) and everything else as one versioned
    /// envelope `{"v": 1, "purpose", "attempt", "response", "model_used", "usage",
    /// "latency_ms", "ts"}` (the layout of the SQLite and PostgreSQL stores).
    ///
    /// # Errors
    /// [`Error::Internal`] when the exchange does not serialize.
    pub fn to_stored(&self) -> Result<(serde_json::Value, serde_json::Value)> {
        let mut envelope = serde_json::to_value(self)
            .map_err(|e| Error::Internal(format!("cannot serialize an LLM exchange: {e}")))?;
        let serde_json::Value::Object(map) = &mut envelope else {
            return Err(Error::Internal(
                "an LLM exchange is not a JSON object".into(),
            ));
        };
        let request = map.remove("request").unwrap_or_default();
        map.remove("pipeline_id");
        map.remove("agent_id");
        map.insert("v".into(), STORED_ENVELOPE_VERSION.into());
        Ok((request, envelope))
    }

    /// The exchange of a row [`to_stored`](Self::to_stored) wrote.
    ///
    /// # Errors
    /// A non-retryable [`Error::Backend`] of `backend` when the envelope is not an object, has
    /// another version, or does not parse.
    pub fn from_stored(
        pipeline: &PipelineId,
        agent: &str,
        request: serde_json::Value,
        envelope: serde_json::Value,
        backend: &'static str,
    ) -> Result<Self> {
        let malformed = |why: &str| {
            Error::backend(
                backend,
                format!("recorded LLM exchange of pipeline {pipeline} cannot be read: {why}"),
                false,
            )
        };
        let serde_json::Value::Object(mut map) = envelope else {
            return Err(malformed("the response is not a JSON object"));
        };
        match map.remove("v").and_then(|v| v.as_u64()) {
            Some(STORED_ENVELOPE_VERSION) => {}
            other => {
                return Err(malformed(&format!(
                    "envelope version {other:?}, this build reads {STORED_ENVELOPE_VERSION}"
                )));
            }
        }
        map.insert("pipeline_id".into(), pipeline.as_str().into());
        map.insert("agent_id".into(), agent.into());
        map.insert("request".into(), request);
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| malformed(&e.to_string()))
    }

    /// The exchange of `request` that ended with `outcome`, stamped now. `fallback_model` is
    /// reported as the model used when there is no answer and the request names no model.
    #[must_use]
    pub fn new(
        request: &LlmRequest,
        outcome: ExchangeOutcome,
        fallback_model: &str,
        latency: Duration,
    ) -> Self {
        let (model_used, usage) = match &outcome {
            ExchangeOutcome::Ok(r) => (r.model.clone(), r.usage),
            _ => (
                request
                    .model
                    .clone()
                    .unwrap_or_else(|| fallback_model.to_owned()),
                Usage::default(),
            ),
        };
        Self {
            pipeline_id: request.meta.pipeline_id.clone(),
            agent_id: request.meta.agent_id.clone(),
            purpose: request.meta.purpose,
            attempt: request.meta.attempt,
            request: serde_json::to_value(request).unwrap_or(serde_json::Value::Null),
            response: outcome,
            model_used,
            usage,
            latency_ms: millis(latency),
            ts: Utc::now(),
        }
    }

    /// Its replay key.
    #[must_use]
    pub fn key(&self) -> ReplayKey {
        ReplayKey {
            agent_id: self.agent_id.clone(),
            purpose: self.purpose,
            attempt: self.attempt,
        }
    }

    /// The recorded result, as the client returned it.
    ///
    /// # Errors
    /// The recorded error; [`Error::Cancelled`] for an abandoned call.
    pub fn result(&self) -> Result<LlmResponse> {
        match &self.response {
            ExchangeOutcome::Ok(r) => Ok(r.clone()),
            ExchangeOutcome::Err(e) => Err(e.to_error()),
            ExchangeOutcome::Abandoned => Err(Error::Cancelled),
        }
    }
}

/// Where recorded exchanges are kept.
///
/// # Contract
/// - `record` keeps the exchange durably (as durable as the backend is) before returning `Ok`.
/// - `exchanges` returns every exchange of the pipeline, in recording order; an unknown
///   pipeline has none (`Ok(vec![])`).
#[async_trait]
pub trait ExchangeStore: Send + Sync + std::fmt::Debug {
    /// Keeps one exchange.
    ///
    /// # Errors
    /// Backend errors.
    async fn record(&self, exchange: &LlmExchange) -> Result<()>;

    /// The exchanges of `pipeline`, in recording order.
    ///
    /// # Errors
    /// Backend errors.
    async fn exchanges(&self, pipeline: &PipelineId) -> Result<Vec<LlmExchange>>;
}

/// An [`ExchangeStore`] in memory (tests, short-lived processes).
#[derive(Debug, Default)]
pub struct MemoryExchangeStore {
    by_pipeline: Mutex<HashMap<PipelineId, Vec<LlmExchange>>>,
}

impl MemoryExchangeStore {
    /// Exchanges of every pipeline.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_pipeline.lock().values().map(Vec::len).sum()
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ExchangeStore for MemoryExchangeStore {
    async fn record(&self, exchange: &LlmExchange) -> Result<()> {
        self.by_pipeline
            .lock()
            .entry(exchange.pipeline_id.clone())
            .or_default()
            .push(exchange.clone());
        Ok(())
    }

    async fn exchanges(&self, pipeline: &PipelineId) -> Result<Vec<LlmExchange>> {
        Ok(self
            .by_pipeline
            .lock()
            .get(pipeline)
            .cloned()
            .unwrap_or_default())
    }
}

/// An [`LlmClient`] that records every exchange of the client it wraps (see the module docs).
///
/// The wrapped client's result is returned unchanged. A failing store does not fail the call
/// (it happened and may have been billed): it is logged and counted in
/// [`record_failures`](Self::record_failures).
#[derive(Debug, Clone)]
pub struct RecordingLlm {
    inner: Arc<dyn LlmClient>,
    store: Arc<dyn ExchangeStore>,
    failures: Arc<AtomicU64>,
}

impl RecordingLlm {
    /// Records the calls of `inner` to `store`.
    #[must_use]
    pub fn new(inner: Arc<dyn LlmClient>, store: Arc<dyn ExchangeStore>) -> Self {
        Self {
            inner,
            store,
            failures: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The wrapped client.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn LlmClient> {
        &self.inner
    }

    /// Exchanges the store refused to keep.
    #[must_use]
    pub fn record_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    async fn call<'a>(
        &'a self,
        request: &'a LlmRequest,
        on_delta: Option<DeltaSink<'a>>,
    ) -> Result<LlmResponse> {
        let mut pending = Pending {
            llm: self,
            request,
            started: tokio::time::Instant::now(),
            armed: true,
        };
        let result = match on_delta {
            Some(sink) => self.inner.complete_streaming(request, sink).await,
            None => self.inner.complete(request).await,
        };
        pending.armed = false;
        let outcome = match &result {
            Ok(r) => ExchangeOutcome::Ok(r.clone()),
            Err(e) => ExchangeOutcome::Err(e.into()),
        };
        let exchange = LlmExchange::new(
            request,
            outcome,
            self.inner.default_model(),
            pending.started.elapsed(),
        );
        store_exchange(&self.store, &self.failures, &exchange).await;
        result
    }
}

async fn store_exchange(store: &Arc<dyn ExchangeStore>, failures: &AtomicU64, x: &LlmExchange) {
    if let Err(e) = store.record(x).await {
        failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            pipeline_id = %x.pipeline_id,
            agent_id = %x.agent_id,
            error = %e,
            "could not record an LLM exchange; a replay of this pipeline will miss it"
        );
    }
}

/// Records the call as abandoned when its future is dropped before the call ended.
struct Pending<'a> {
    llm: &'a RecordingLlm,
    request: &'a LlmRequest,
    started: tokio::time::Instant,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let exchange = LlmExchange::new(
            self.request,
            ExchangeOutcome::Abandoned,
            self.llm.inner.default_model(),
            self.started.elapsed(),
        );
        let (store, failures) = (self.llm.store.clone(), self.llm.failures.clone());
        rt.spawn(async move { store_exchange(&store, &failures, &exchange).await });
    }
}

#[async_trait]
impl LlmClient for RecordingLlm {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_model(&self) -> &str {
        self.inner.default_model()
    }

    fn price(&self, model: &str) -> Option<crate::cost::ModelPrice> {
        self.inner.price(model)
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        self.call(request, None).await
    }

    async fn complete_streaming(
        &self,
        request: &LlmRequest,
        on_delta: DeltaSink<'_>,
    ) -> Result<LlmResponse> {
        self.call(request, Some(on_delta)).await
    }
}
