//! Lenient parsing of model answers. Real models answer in prose, wrap JSON in markdown fences,
//! get cut off at `max_tokens` or answer nothing; this module takes what is clear and reports
//! the rest as [`Error::MalformedOutput`] (which counts against the agent's error budget).

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer_schema::strict_format;
use crate::error::{Error, Result};
use crate::llm::{FinishReason, LlmResponse, Purpose, ResponseFormat};

/// Finds the first complete JSON object in `text`: plain, inside markdown fences, or surrounded
/// by prose. Returns `None` when there is none (or it is cut off).
#[must_use]
pub fn extract_json_object(text: &str) -> Option<serde_json::Value> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(off) = text[start..].find('{') {
        let open = start + off;
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            if in_str {
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Ok(v @ serde_json::Value::Object(_)) =
                            serde_json::from_str::<serde_json::Value>(&text[open..=i])
                        {
                            return Some(v);
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
        start = open + 1;
    }
    None
}

/// An answer type that can be read leniently from a model's reply.
pub trait LenientParse: Sized {
    /// From a JSON object the model produced.
    ///
    /// # Errors
    /// [`Error::MalformedOutput`] when required fields are missing.
    fn from_json(v: serde_json::Value) -> Result<Self>;

    /// From prose, when the meaning is clear; `None` otherwise.
    fn from_prose(_text: &str) -> Option<Self> {
        None
    }

    /// The shape to ask the model for. The built-in answer types ask for their own strict JSON
    /// schema (derived from the type, see [`crate::answer_schema`]); the default is JSON mode
    /// ([`ResponseFormat::JsonObject`]).
    fn response_format() -> ResponseFormat {
        ResponseFormat::JsonObject
    }

    /// Parses a response: empty → error; JSON (fenced or not) → [`from_json`](Self::from_json);
    /// otherwise prose → [`from_prose`](Self::from_prose), unless the answer was truncated.
    ///
    /// # Errors
    /// [`Error::MalformedOutput`] saying why (empty, truncated, not understood).
    fn parse_response(resp: &LlmResponse) -> Result<Self> {
        let text = resp.content.trim();
        if text.is_empty() {
            return Err(Error::MalformedOutput("empty content".into()));
        }
        if let Some(v) = extract_json_object(text) {
            return Self::from_json(v);
        }
        if resp.finish_reason == FinishReason::Length {
            return Err(Error::MalformedOutput(
                "answer truncated at max_tokens (finish_reason: length)".into(),
            ));
        }
        Self::from_prose(text).ok_or_else(|| {
            Error::MalformedOutput(format!(
                "expected a JSON object, got prose starting {:?}",
                text.chars().take(60).collect::<String>()
            ))
        })
    }
}

fn malformed(what: &str) -> Error {
    Error::MalformedOutput(format!("missing or invalid field {what}"))
}

fn str_field(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// The RUNNING stage's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportDraft {
    /// A summary of the analysis.
    pub summary: String,
    /// The findings, one a string.
    pub findings: Vec<String>,
    /// Complexity between 0 and 1 (1: needs decomposition into sub-tasks).
    pub complexity: f64,
}

impl LenientParse for ReportDraft {
    fn response_format() -> ResponseFormat {
        static FORMAT: OnceLock<ResponseFormat> = OnceLock::new();
        FORMAT
            .get_or_init(|| strict_format::<Self>("report"))
            .clone()
    }

    fn from_json(v: serde_json::Value) -> Result<Self> {
        let summary = str_field(&v, "summary").ok_or_else(|| malformed("summary"))?;
        let findings = v
            .get("findings")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let complexity = v
            .get("complexity")
            .and_then(|c| {
                c.as_f64()
                    .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
            })
            .map_or(0.5, clamp01);
        Ok(Self {
            summary,
            findings,
            complexity,
        })
    }

    fn from_prose(text: &str) -> Option<Self> {
        // A prose analysis is still an analysis: keep it, with a neutral complexity.
        (text.len() >= 20).then(|| Self {
            summary: text.chars().take(2000).collect(),
            findings: Vec::new(),
            complexity: 0.5,
        })
    }
}

/// A proposal draft (ALPHA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProposalDraft {
    /// A short title.
    pub title: String,
    /// The proposal itself.
    pub content: String,
}

impl LenientParse for ProposalDraft {
    fn response_format() -> ResponseFormat {
        static FORMAT: OnceLock<ResponseFormat> = OnceLock::new();
        FORMAT
            .get_or_init(|| strict_format::<Self>("proposal"))
            .clone()
    }

    fn from_json(v: serde_json::Value) -> Result<Self> {
        let content = str_field(&v, "content")
            .or_else(|| str_field(&v, "proposal"))
            .or_else(|| str_field(&v, "description"))
            .ok_or_else(|| malformed("content"))?;
        let title = str_field(&v, "title").unwrap_or_else(|| {
            content
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect()
        });
        Ok(Self { title, content })
    }

    fn from_prose(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let title = lines
            .next()?
            .trim_start_matches('#')
            .trim()
            .chars()
            .take(80)
            .collect::<String>();
        (text.len() >= 40).then(|| Self {
            title,
            content: text.to_owned(),
        })
    }
}

/// An evaluation of a proposal (BETA, GAMMA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvaluationDraft {
    /// The proposal the model says it evaluated (checked against the one asked about).
    pub proposal_id: Option<String>,
    /// `true` approves the proposal, `false` rejects it.
    pub approve: bool,
    /// A score between 0 and 1.
    pub score: f64,
    /// Why.
    pub rationale: String,
}

impl LenientParse for EvaluationDraft {
    fn response_format() -> ResponseFormat {
        static FORMAT: OnceLock<ResponseFormat> = OnceLock::new();
        FORMAT
            .get_or_init(|| strict_format::<Self>("evaluation"))
            .clone()
    }

    fn from_json(v: serde_json::Value) -> Result<Self> {
        let approve = match v.get("approve").or_else(|| v.get("approved")) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "approve" | "approved" => true,
                "false" | "no" | "reject" | "rejected" => false,
                _ => return Err(malformed("approve")),
            },
            _ => match str_field(&v, "decision").map(|d| d.to_ascii_lowercase()) {
                Some(d) if d.starts_with("approv") || d == "accept" => true,
                Some(d) if d.starts_with("reject") => false,
                _ => return Err(malformed("approve")),
            },
        };
        let score = v
            .get("score")
            .and_then(serde_json::Value::as_f64)
            .map_or(if approve { 0.7 } else { 0.3 }, clamp01);
        Ok(Self {
            proposal_id: str_field(&v, "proposal_id"),
            approve,
            score,
            rationale: str_field(&v, "rationale").unwrap_or_default(),
        })
    }

    fn from_prose(text: &str) -> Option<Self> {
        let lower = text.to_ascii_lowercase();
        let approve = [
            "i approve",
            "approved",
            "approve:",
            "decision: approve",
            "accept",
        ]
        .iter()
        .any(|k| lower.contains(k));
        let reject = [
            "i reject",
            "rejected",
            "reject:",
            "decision: reject",
            "do not approve",
        ]
        .iter()
        .any(|k| lower.contains(k));
        // only when the prose says one thing clearly
        (approve != reject).then(|| Self {
            proposal_id: None,
            approve,
            score: if approve { 0.7 } else { 0.3 },
            rationale: text.chars().take(500).collect(),
        })
    }
}

/// A solution (BETA's synthesis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SolutionDraft {
    /// The solution text.
    pub solution: String,
}

impl LenientParse for SolutionDraft {
    fn response_format() -> ResponseFormat {
        static FORMAT: OnceLock<ResponseFormat> = OnceLock::new();
        FORMAT
            .get_or_init(|| strict_format::<Self>("solution"))
            .clone()
    }

    fn from_json(v: serde_json::Value) -> Result<Self> {
        str_field(&v, "solution")
            .or_else(|| str_field(&v, "content"))
            .map(|solution| Self { solution })
            .ok_or_else(|| malformed("solution"))
    }

    fn from_prose(text: &str) -> Option<Self> {
        (text.len() >= 20).then(|| Self {
            solution: text.to_owned(),
        })
    }
}

/// GAMMA's mediation: a decomposition and guidance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MediationDraft {
    /// The sub-tasks, one a string.
    pub subtasks: Vec<String>,
    /// Guidance for the agents.
    pub guidance: String,
}

impl LenientParse for MediationDraft {
    fn response_format() -> ResponseFormat {
        static FORMAT: OnceLock<ResponseFormat> = OnceLock::new();
        FORMAT
            .get_or_init(|| strict_format::<Self>("mediation"))
            .clone()
    }

    fn from_json(v: serde_json::Value) -> Result<Self> {
        let subtasks: Vec<String> = v
            .get("subtasks")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let guidance = str_field(&v, "guidance").unwrap_or_default();
        if subtasks.is_empty() && guidance.is_empty() {
            return Err(malformed("subtasks/guidance"));
        }
        Ok(Self { subtasks, guidance })
    }

    fn from_prose(text: &str) -> Option<Self> {
        let subtasks: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("- ").or_else(|| l.strip_prefix("* ")))
            .map(str::to_owned)
            .collect();
        (!subtasks.is_empty()).then(|| Self {
            subtasks,
            guidance: String::new(),
        })
    }
}

/// The format each purpose asks for: the strict schema of the type its answer is parsed into
/// (report: [`ReportDraft`], propose: [`ProposalDraft`], evaluate: [`EvaluationDraft`],
/// synthesize: [`SolutionDraft`], mediate: [`MediationDraft`]); JSON mode for
/// [`Purpose::Other`] (custom roles).
#[must_use]
pub fn response_format_for(purpose: Purpose) -> ResponseFormat {
    match purpose {
        Purpose::Report => ReportDraft::response_format(),
        Purpose::Propose => ProposalDraft::response_format(),
        Purpose::Evaluate => EvaluationDraft::response_format(),
        Purpose::Synthesize => SolutionDraft::response_format(),
        Purpose::Mediate => MediationDraft::response_format(),
        Purpose::Other => ResponseFormat::JsonObject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resp(content: &str, finish: FinishReason) -> LlmResponse {
        LlmResponse {
            content: content.into(),
            model: "m".into(),
            usage: crate::llm::Usage::default(),
            finish_reason: finish,
            latency: Duration::ZERO,
            format_fallback: None,
        }
    }

    #[test]
    fn reads_json_in_markdown_fences_and_prose() {
        let r = resp(
            "Sure! Here it is:\n```json\n{\"approve\": true, \"score\": 0.9, \"rationale\": \"a {brace} in text\"}\n```\nThanks",
            FinishReason::Stop,
        );
        let e = EvaluationDraft::parse_response(&r).unwrap();
        assert!(e.approve);
        assert!((e.score - 0.9).abs() < 1e-9);
        assert_eq!(e.rationale, "a {brace} in text");
    }

    #[test]
    fn clear_prose_is_accepted_unclear_prose_is_malformed() {
        let e = EvaluationDraft::parse_response(&resp(
            "After review I reject this: it ignores eviction.",
            FinishReason::Stop,
        ))
        .unwrap();
        assert!(!e.approve);
        let err = EvaluationDraft::parse_response(&resp("Hmm, hard to say.", FinishReason::Stop))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::MalformedOutput);
    }

    #[test]
    fn truncated_and_empty_answers_are_malformed() {
        let e = ProposalDraft::parse_response(&resp(
            "{\"title\": \"Cache\", \"content\": \"Use a write-thr",
            FinishReason::Length,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = SolutionDraft::parse_response(&resp("   ", FinishReason::Stop)).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn first_valid_object_wins_and_garbage_braces_are_skipped() {
        let v = extract_json_object("{not json} then {\"a\": {\"b\": 1}} and {\"c\": 2}").unwrap();
        assert_eq!(v, serde_json::json!({"a": {"b": 1}}));
        assert!(extract_json_object("no braces").is_none());
        assert!(extract_json_object("{\"open\": ").is_none());
    }
}
