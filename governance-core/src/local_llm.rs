//! `LocalLlm`: the seed's `mode: "local"`. A deterministic, offline [`LlmClient`] that answers
//! every built-in role's prompts with usable JSON, so a pipeline reaches consensus through the
//! same code path as with OpenRouter. Knobs inject latency, errors, stalls and disagreement.
//!
//! ## Complexity scoring
//! The report's complexity is derived from the objective: `0.3 + 0.12 ×` (number of distinct
//! complexity keywords it contains, see [`COMPLEXITY_KEYWORDS`]) `+ 0.1` when it is longer than
//! 300 characters, capped at 1.0. Five keywords (0.9) cross the default 0.8 threshold:
//! *"Design a distributed, multi-region, real-time, fault-tolerant, sharded cache"*.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::error::{Error, LlmFailure, Result};
use crate::llm::{FinishReason, LlmClient, LlmRequest, LlmResponse, Purpose, Usage};

/// Words that make an objective complex (see the module docs).
pub const COMPLEXITY_KEYWORDS: &[&str] = &[
    "distributed",
    "multi-region",
    "real-time",
    "fault-tolerant",
    "sharded",
    "consensus",
    "migration",
    "compliance",
    "concurrent",
    "replicated",
    "cross-team",
    "end-to-end",
    "zero-downtime",
    "global",
];

/// The complexity score `LocalLlm` gives an objective.
#[must_use]
pub fn complexity_of(objective: &str) -> f64 {
    let lower = objective.to_ascii_lowercase();
    let hits = COMPLEXITY_KEYWORDS
        .iter()
        .filter(|k| lower.contains(*k))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let mut score = 0.3 + 0.12 * hits as f64;
    if objective.len() > 300 {
        score += 0.1;
    }
    (score.clamp(0.0, 1.0) * 100.0).round() / 100.0
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// An HTTP-like provider error with this status (5xx and 429 are retryable).
    Status(u16),
    /// 429 with a `Retry-After`.
    RateLimited(Duration),
    /// 401: credentials refused.
    Unauthorized,
    /// Prose that cannot be parsed.
    Malformed,
    /// An empty answer.
    Empty,
    /// JSON cut off at `max_tokens` (`finish_reason: length`).
    Truncated,
    /// Never answers (until the caller gives up or is cancelled).
    Stall,
    /// An evaluation of a different proposal than the one asked about (a procedure violation).
    WrongProposal,
}

/// A rule that injects a fault into matching calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Agent id prefix to match (`ALPHA`, `BETA`, `GAMMA`, `REPORTER`); `None` = any agent.
    pub agent: Option<String>,
    /// Purpose to match; `None` = any.
    pub purpose: Option<Purpose>,
    /// What happens.
    pub kind: FaultKind,
    /// Applies to calls whose per-agent attempt number is below this (`u32::MAX` = always).
    pub first_attempts: u32,
}

impl Fault {
    /// A fault for every call of `agent` with attempt number below `first_attempts`.
    #[must_use]
    pub fn new(
        agent: Option<&str>,
        purpose: Option<Purpose>,
        kind: FaultKind,
        first_attempts: u32,
    ) -> Self {
        Self {
            agent: agent.map(str::to_owned),
            purpose,
            kind,
            first_attempts,
        }
    }

    fn matches(&self, req: &LlmRequest) -> bool {
        self.agent
            .as_deref()
            .is_none_or(|a| req.meta.agent_id.as_str().starts_with(a))
            && self.purpose.is_none_or(|p| p == req.meta.purpose)
            && req.meta.attempt < self.first_attempts
    }
}

/// Settings of [`LocalLlm`].
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct LocalLlmConfig {
    /// Seed of the deterministic answers.
    pub seed: u64,
    /// Latency of every call (`GOVERNANCE_LOCAL_LATENCY_MS`, default 0).
    pub latency: Duration,
    /// Injected faults (first matching rule wins).
    pub faults: Vec<Fault>,
    /// Evaluations by agents other than GAMMA with attempt number below this reject.
    pub disagree_first: u32,
}

/// The deterministic local LLM (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct LocalLlm {
    config: Arc<LocalLlmConfig>,
    calls: Arc<AtomicU64>,
}

impl LocalLlm {
    /// A local LLM with these settings.
    #[must_use]
    pub fn new(config: LocalLlmConfig) -> Self {
        Self {
            config: Arc::new(config),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many requests reached this client (including faulted ones).
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn hash(&self, parts: &[&str], n: u32) -> u64 {
        // FNV-1a: stable across runs and platforms
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.config.seed;
        for p in parts {
            for b in p.bytes().chain(std::iter::once(0)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h ^ u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn answer(&self, req: &LlmRequest) -> String {
        let user = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == crate::llm::ChatRole::User)
            .map_or("", |m| m.content.as_str());
        let objective = between(user, "<<<BEGIN OBJECTIVE", "<<<END OBJECTIVE>>>").unwrap_or(user);
        let topic: String = objective
            .split_whitespace()
            .take(8)
            .collect::<Vec<_>>()
            .join(" ");
        let agent = req.meta.agent_id.as_str();
        let h = self.hash(&[objective, agent], req.meta.attempt);
        #[allow(clippy::cast_precision_loss)]
        let unit = (h % 1000) as f64 / 1000.0;
        match req.meta.purpose {
            Purpose::Report => json!({
                "summary": format!("Analysis of: {topic}"),
                "findings": ["constraints identified", "risks listed", "success criteria drafted"],
                "complexity": complexity_of(objective),
            }),
            Purpose::Propose => {
                let approaches = ["layered approach", "incremental rollout", "event-driven design", "read-through design", "phased plan"];
                let pick = approaches[usize::try_from(h % 5).unwrap_or(0)];
                json!({
                    "title": format!("{pick} for {topic}"),
                    "content": format!("Proposal (round {}): a {pick} addressing '{topic}', with measurable checkpoints.", req.meta.attempt + 1),
                })
            }
            Purpose::Evaluate => {
                let pid = user.lines().find_map(|l| l.strip_prefix("Proposal id: ")).unwrap_or("").trim().to_owned();
                let approve = agent.starts_with(crate::Role::GAMMA.as_str()) || req.meta.attempt >= self.config.disagree_first;
                let score = if approve { 0.6 + 0.35 * unit } else { 0.2 + 0.2 * unit };
                json!({"proposal_id": pid, "approve": approve, "score": (score * 100.0).round() / 100.0,
                       "rationale": if approve { "meets the objective" } else { "does not address the main risk yet" }})
            }
            Purpose::Synthesize => json!({"solution": format!("Solution for '{topic}': implement the accepted proposal in three steps, verify, roll out.")}),
            Purpose::Mediate => json!({"subtasks": [format!("scope: {topic}"), "design".to_owned(), "validation".to_owned()], "guidance": "split the work, evaluate each part on its own"}),
            _ => json!({"content": format!("ok: {topic}")}),
        }
        .to_string()
    }
}

fn between<'a>(s: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let b = s.find(begin)?;
    let after = &s[b..];
    let nl = after.find('\n')?;
    let body = &after[nl + 1..];
    let e = body.find(end)?;
    Some(body[..e].trim_end_matches('\n'))
}

fn failure(status: u16, retry_after: Option<Duration>, message: &str) -> Error {
    Error::Llm(LlmFailure {
        status: Some(status),
        provider_code: None,
        message: message.to_owned(),
        retryable: status == 408 || status == 429 || status >= 500,
        retry_after,
    })
}

#[async_trait]
impl LlmClient for LocalLlm {
    fn name(&self) -> &str {
        "local"
    }

    fn default_model(&self) -> &str {
        "local/deterministic"
    }

    /// Free: a money budget never stops the local LLM.
    fn price(&self, _model: &str) -> Option<crate::cost::ModelPrice> {
        Some(crate::cost::ModelPrice::FREE)
    }

    async fn complete(&self, req: &LlmRequest) -> Result<LlmResponse> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let fault = self
            .config
            .faults
            .iter()
            .find(|f| f.matches(req))
            .map(|f| f.kind.clone());
        let (content, finish) = match fault {
            Some(FaultKind::Status(s)) => return Err(failure(s, None, "injected provider error")),
            Some(FaultKind::RateLimited(d)) => return Err(failure(429, Some(d), "injected rate limit")),
            Some(FaultKind::Unauthorized) => return Err(Error::Unauthorized("injected: API key refused (401)".into())),
            Some(FaultKind::Stall) => return std::future::pending().await,
            Some(FaultKind::Malformed) => ("Hmm. Not sure.".to_owned(), FinishReason::Stop),
            Some(FaultKind::Empty) => (String::new(), FinishReason::Stop),
            Some(FaultKind::Truncated) => {
                let full = self.answer(req);
                (full[..full.len() / 2].to_owned(), FinishReason::Length)
            }
            Some(FaultKind::WrongProposal) => (
                json!({"proposal_id": "someone-else", "approve": true, "score": 0.9, "rationale": "x"}).to_string(),
                FinishReason::Stop,
            ),
            None => (self.answer(req), FinishReason::Stop),
        };
        let completion_tokens = u32::try_from(content.len().div_ceil(4)).unwrap_or(u32::MAX);
        Ok(LlmResponse {
            content,
            // the model that actually answered: always this one, whatever was requested
            model: self.default_model().to_owned(),
            usage: Usage {
                prompt_tokens: req.estimated_prompt_tokens(),
                completion_tokens,
                cost_usd: Some(0.0),
            },
            finish_reason: finish,
            latency: self.config.latency,
            // it answers every purpose in the shape its schema asks for, whatever the format
            format_fallback: None,
        })
    }
}
