//! # governance-core
//!
//! Traits, the pipeline state machine, the orchestrator and in-memory backends for governed
//! multi-agent LLM pipelines: a pipeline goes `SPAWNED → RUNNING → REPORT → ORCHESTRATING →
//! COMPLETED`, with ALPHA (research/proposals) and BETA (synthesis/evaluation) working through a
//! shared [`Blackboard`] and [`MessageBus`], a GAMMA mediator spawned by the
//! [`SpawnController`] when they are STUCK, in CONFLICT or the task is too COMPLEX, error budgets,
//! a circuit breaker and token budgets around every LLM call, and every step in an audit ledger.
//!
//! Backends live in their own crates (`governance-redis`, `governance-sqlite`,
//! `governance-openrouter`); this crate knows none of them.

pub mod agent;
pub mod blackboard;
pub mod chain;
pub mod circuit_breaker;
pub mod config;
mod durable;
pub mod emitter;
mod engine;
pub mod error;
pub mod error_budget;
pub mod event;
pub mod ids;
pub mod llm;
pub mod local_llm;
pub mod memory;
pub mod message_bus;
pub mod ownership;
pub mod parse;
pub mod prompt;
pub mod recording;
pub mod results;
pub mod roles;
pub mod spawn_controller;
pub mod state_machine;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token_budget;

pub use agent::{
    Agent, AgentContext, AgentOutcome, BoardView, DetachedContext, Inbox, QuorumHandle,
    RemoteAgent, RemoteLink, STREAM_RECIPIENT,
};
pub use blackboard::{
    Blackboard, BlackboardSnapshot, Consensus, Handoff, Proposal, ProposalStatus, Solution, Vote,
    VoteOutcome,
};
pub use circuit_breaker::{BreakerLlm, BreakerState, CircuitBreaker, Outage};
pub use config::{BreakerConfig, Config, ErrorBudgetLimits, GammaThresholds, TokenBudgetConfig};
pub use engine::{
    ContinueRequest, DEFAULT_MAX_OBJECTIVE_LEN, Governance, GovernanceBuilder, SpawnRequest,
};
pub use error::{Error, ErrorKind, LlmFailure, Result};
pub use error_budget::{BudgetVerdict, CountingErrorBudget, ErrorBudget, ErrorCounts};
pub use event::{Event, EventKind, GammaReason};
pub use ids::{AgentId, HandoffId, PipelineId, ProposalId, validate_id};
pub use llm::{
    ChatMessage, ChatRole, FinishReason, LlmClient, LlmRequest, LlmResponse, Purpose, RequestMeta,
    Usage,
};
pub use local_llm::{Fault, FaultKind, LocalLlm, LocalLlmConfig};
pub use memory::{MemoryBlackboard, MemoryBus, MemoryStore};
pub use message_bus::{BROADCAST, Message, MessageBus};
pub use ownership::{Command, Ownership, SingleNode};
pub use recording::{
    ExchangeOutcome, ExchangeStore, LlmExchange, MemoryExchangeStore, RecordedError, RecordingLlm,
    ReplayKey, ReplayLlm, ReplayStats,
};
pub use spawn_controller::{ProgressSnapshot, SpawnController, ThresholdSpawnController};
pub use state_machine::PipelineStatus;
pub use store::{
    AgentRecord, AgentState, Checkpoint, CheckpointStore, GammaRecord, LedgerStore, PipelineFilter,
    PipelineRecord, PipelineRegistry, Report, UsageTotals,
};
pub use token_budget::{AgentBudget, PipelineBudget, Reservation};
// the atomic system of record (issue 12)
pub use store::{SplitStore, StateStore, StatusChange};
