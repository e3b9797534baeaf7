//! [`ReplayLlm`]: answers from recorded exchanges, offline and deterministically.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{ExchangeOutcome, ExchangeStore, LlmExchange};
use crate::error::{Error, LlmFailure, Result};
use crate::ids::{AgentId, PipelineId};
use crate::llm::{LlmClient, LlmRequest, LlmResponse, Purpose};

/// What a recorded exchange is found by: the calling agent, the purpose and the agent's own
/// request counter. Interleaving between agents does not change it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplayKey {
    /// The calling agent (`ALPHA`, `BETA`, `GAMMA`, `REPORTER`, or a custom role).
    pub agent_id: AgentId,
    /// Why it called.
    pub purpose: Purpose,
    /// The agent's request counter.
    pub attempt: u32,
}

impl ReplayKey {
    /// The key of a request.
    #[must_use]
    pub fn of(request: &LlmRequest) -> Self {
        Self {
            agent_id: request.meta.agent_id.clone(),
            purpose: request.meta.purpose,
            attempt: request.meta.attempt,
        }
    }
}

impl std::fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let purpose = serde_json::to_value(self.purpose)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", self.purpose));
        write!(
            f,
            "(agent {}, purpose {purpose}, attempt {})",
            self.agent_id, self.attempt
        )
    }
}

/// What a replay did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStats {
    /// Requests answered from the recording.
    pub served: u64,
    /// Requests that had no recorded exchange (each failed).
    pub missing: Vec<ReplayKey>,
    /// Requests answered whose messages differ from the recorded request: the replay took
    /// another path than the recorded run from there on.
    pub diverged: Vec<ReplayKey>,
}

/// An [`LlmClient`] that answers from the recorded exchanges of one pipeline.
///
/// Each request is answered by the exchange recorded under its [`ReplayKey`] — the same answer,
/// the same failure (kind, status, retryability, `Retry-After`), or, for a call the recorded
/// run abandoned, no answer at all (it waits until cancelled). Nothing is slept and nothing is
/// sent anywhere. Each recorded exchange answers once (a key recorded twice, e.g. after an agent
/// restart, answers twice, in order).
///
/// A request without a recording fails with [`Error::Llm`] (provider code `replay_missing`,
/// not retryable) naming the key and the pipeline; it is listed in
/// [`ReplayStats::missing`].
#[derive(Debug)]
pub struct ReplayLlm {
    pipeline: Option<PipelineId>,
    model: String,
    recorded: Mutex<HashMap<ReplayKey, VecDeque<LlmExchange>>>,
    stats: Mutex<ReplayStats>,
}

impl ReplayLlm {
    /// Answers from `exchanges`, which must all belong to one pipeline.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when they come from more than one pipeline.
    pub fn new(exchanges: Vec<LlmExchange>) -> Result<Self> {
        let pipeline = exchanges.first().map(|x| x.pipeline_id.clone());
        if let Some(other) = exchanges
            .iter()
            .find(|x| Some(&x.pipeline_id) != pipeline.as_ref())
        {
            return Err(Error::InvalidInput(format!(
                "replay needs the exchanges of one pipeline, got {} and {}",
                pipeline.as_ref().map_or("", PipelineId::as_str),
                other.pipeline_id
            )));
        }
        let model = exchanges
            .iter()
            .find_map(|x| x.request.get("model").and_then(|m| m.as_str()))
            .unwrap_or("replay")
            .to_owned();
        let mut recorded: HashMap<ReplayKey, VecDeque<LlmExchange>> = HashMap::new();
        for x in exchanges {
            recorded.entry(x.key()).or_default().push_back(x);
        }
        Ok(Self {
            pipeline,
            model,
            recorded: Mutex::new(recorded),
            stats: Mutex::new(ReplayStats::default()),
        })
    }

    /// Answers from the exchanges `store` holds for `pipeline`.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn from_store(store: &dyn ExchangeStore, pipeline: &PipelineId) -> Result<Self> {
        let mut replay = Self::new(store.exchanges(pipeline).await?)?;
        replay.pipeline = Some(pipeline.clone());
        Ok(replay)
    }

    /// The recorded pipeline (`None` when there was nothing recorded).
    #[must_use]
    pub fn pipeline(&self) -> Option<&PipelineId> {
        self.pipeline.as_ref()
    }

    /// What the replay did so far.
    #[must_use]
    pub fn stats(&self) -> ReplayStats {
        self.stats.lock().clone()
    }

    /// Recorded exchanges no request has asked for (yet), by agent and attempt.
    #[must_use]
    pub fn unused(&self) -> Vec<ReplayKey> {
        let mut keys: Vec<ReplayKey> = self
            .recorded
            .lock()
            .iter()
            .flat_map(|(k, q)| std::iter::repeat_n(k.clone(), q.len()))
            .collect();
        keys.sort_by(|a, b| (&a.agent_id, a.attempt).cmp(&(&b.agent_id, b.attempt)));
        keys
    }

    fn missing(&self, key: &ReplayKey) -> Error {
        let pipeline = self.pipeline.as_ref().map_or("(none)", PipelineId::as_str);
        Error::Llm(LlmFailure {
            status: None,
            provider_code: Some("replay_missing".into()),
            message: format!(
                "replay: no recorded exchange for {key} in pipeline {pipeline}; the replayed run \
                 asked something the recorded run did not"
            ),
            retryable: false,
            retry_after: None,
        })
    }
}

#[async_trait]
impl LlmClient for ReplayLlm {
    fn name(&self) -> &str {
        "replay"
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    /// Free: a replay asks no provider.
    fn price(&self, _model: &str) -> Option<crate::cost::ModelPrice> {
        Some(crate::cost::ModelPrice::FREE)
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse> {
        let key = ReplayKey::of(request);
        let next = self
            .recorded
            .lock()
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        let Some(exchange) = next else {
            tracing::warn!(%key, "replay: no recorded exchange");
            self.stats.lock().missing.push(key.clone());
            return Err(self.missing(&key));
        };
        let same = serde_json::to_value(&request.messages)
            .is_ok_and(|m| exchange.request.get("messages") == Some(&m));
        {
            let mut stats = self.stats.lock();
            stats.served += 1;
            if !same {
                stats.diverged.push(key.clone());
            }
        }
        if !same {
            tracing::debug!(%key, "replay: request differs from the recorded one");
        }
        match exchange.response {
            ExchangeOutcome::Abandoned => std::future::pending().await,
            _ => exchange.result(),
        }
    }
}
