//! # governance-core
//!
//! Traits, the pipeline state machine, the orchestrator and in-memory backends for governed
//! multi-agent LLM pipelines: a pipeline goes `SPAWNED → RUNNING → REPORT → ORCHESTRATING →
//! COMPLETED`, with ALPHA (research/proposals) and BETA (synthesis/evaluation) working through a
//! shared [`Blackboard`] and [`MessageBus`], a GAMMA mediator spawned by the
//! [`SpawnController`] when they are STUCK, in CONFLICT or the task is too COMPLEX, error budgets,
//! a circuit breaker and token budgets around every LLM call, and every step in an audit ledger.
//! A pipeline can require a human's approval of its outcome (`AWAITING_APPROVAL`,
//! [`Governance::approve`]): a rejection's feedback reaches ALPHA and a revision round runs.
//!
//! Backends live in their own crates (`governance-redis`, `governance-sqlite`,
//! `governance-openrouter`); this crate knows none of them.
//!
//! Everything an embedder or a custom role needs is re-exported at the crate root; the
//! `prompt` and `parse` modules hold the helpers the built-in roles use, and `testkit` (feature
//! `testkit`) the conformance suites a backend runs.
//!
//! # Example
//! Run one pipeline on the in-memory backends and the deterministic local LLM:
//! ```
//! use governance_core::{Governance, PipelineStatus, SpawnRequest};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> governance_core::Result<()> {
//! let gov = Governance::builder().build()?;
//! let id = gov.spawn(SpawnRequest::new("Design a caching strategy")).await?;
//! let record = gov.wait(&id).await?;
//! assert_eq!(record.status, PipelineStatus::Completed);
//! assert!(record.results.is_some());
//! # Ok(()) }
//! ```

mod agent;
pub mod answer_schema;
mod blackboard;
mod chain;
mod circuit_breaker;
mod config;
mod control;
mod coordination;
pub mod cost;
mod durable;
mod emitter;
mod engine;
mod error;
mod error_budget;
mod event;
mod ids;
mod llm;
mod llm_stack;
mod local_llm;
mod memory;
mod message_bus;
mod ownership;
/// Lenient parsing of LLM answers into drafts, for custom roles (see the `custom_role` example).
pub mod parse;
/// The prompts the built-in roles send, for custom roles that ask the same questions.
pub mod prompt;
mod quorum;
mod recording;
mod response_format;
mod results;
mod retry;
mod role;
mod role_settings;
mod roles;
mod spawn_controller;
mod state_machine;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod token_budget;

/// Re-exported so a custom [`Agent`] needs no extra dependency: `#[governance_core::async_trait]`.
pub use async_trait::async_trait;

pub use agent::{
    Agent, AgentContext, AgentOutcome, BoardView, DetachedContext, Inbox, RemoteAgent, RemoteLink,
    STREAM_RECIPIENT,
};
pub use blackboard::{
    BLACKBOARD_PAYLOAD_VERSION, Blackboard, BlackboardSnapshot, Consensus, Handoff, Proposal,
    ProposalStatus, Solution, Vote, VoteOutcome,
};
pub use chain::{GENESIS as LEDGER_GENESIS, LedgerRow};
pub use circuit_breaker::{BreakerLlm, BreakerState, CircuitBreaker, Outage};
pub use config::{
    ApprovalSettings, BreakerConfig, Config, DEFAULT_MODEL, ErrorBudgetLimits, GammaThresholds,
    TokenBudgetConfig, parse_bool, parse_secs,
};
pub use control::{CONTROL_TOPIC, Control};
pub use coordination::DataGeneration;
pub use cost::{Cost, CostLedger, CostReservation, MemoryCostLedger, ModelPrice};
pub use engine::{
    ApprovalDecision, ContinueRequest, DEFAULT_MAX_OBJECTIVE_LEN, ForkOverrides, ForkPoint,
    ForkRequest, Forked, Governance, GovernanceBuilder, MAX_FEEDBACK_LEN, MAX_REVIEWER_LEN,
    SpawnRequest,
};
pub use error::{Cause, Error, ErrorKind, LlmFailure, Result};
pub use event::{Event, EventKind, GammaReason};
pub use ids::{AgentId, HandoffId, PipelineId, ProposalId, validate_id};
pub use llm::{
    ChatMessage, ChatRole, DeltaSink, FinishReason, LlmClient, LlmRequest, LlmResponse, Purpose,
    RequestMeta, ResponseFormat, ResponseFormatKind, Usage,
};
pub use llm_stack::{LlmCall, LlmLayer, LlmStage, Next};
pub use local_llm::{Fault, FaultKind, LocalLlm, LocalLlmConfig, complexity_of};
pub use memory::{MemoryBlackboard, MemoryBus, MemoryStore};
pub use message_bus::{BROADCAST, Message, MessageBus};
pub use ownership::{Command, Ownership, SingleNode};
pub use quorum::{ApproversHandle, ConsensusRule, Quorum, QuorumHandle};
pub use recording::{
    ExchangeOutcome, ExchangeStore, LlmExchange, MemoryExchangeStore, RecordedError, RecordingLlm,
    ReplayKey, ReplayLlm, ReplayStats,
};
pub use results::{
    PartialReport, PipelineResults, ResultConsensus, ResultHandoff, ResultProposal, WinningProposal,
};
pub use retry::{RetryPolicy, Schedule};
pub use role::{MAX_ROLE_LEN, Role};
pub use role_settings::{MAX_INSTRUCTIONS_LEN, MAX_TEMPERATURE, RoleSettings, RoleSettingsMap};
pub use roles::{Alpha, Beta, Gamma};
pub use spawn_controller::{ProgressSnapshot, SpawnController, ThresholdSpawnController};
pub use state_machine::PipelineStatus;
pub use store::{
    AgentRecord, AgentState, Checkpoint, CheckpointStore, GammaRecord, LedgerStore, PipelineFilter,
    PipelineRecord, PipelineRegistry, Report, UsageTotals,
};
// the atomic system of record (issue 12)
pub use store::{SplitStore, StateStore, StatusChange};
