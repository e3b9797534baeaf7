//! Agents: the [`Agent`] trait a role implements and the [`AgentContext`] it works through.
//!
//! The context is the governed path and nothing else: a role reads the pipeline (objective,
//! report, the blackboard through a read-only [`BoardView`], its messages), acts as itself
//! (propose, vote, write a solution, publish, put a partial result, record an error) and asks
//! the model through the governed call ([`AgentContext::llm`], [`AgentContext::ask`]). It holds
//! no write handle to the blackboard or the bus and cannot change the quorum, so every write a
//! role makes is its own and is in the ledger.
//!
//! A role played by another process (a worker) registers as a [`RemoteAgent`]
//! ([`GovernanceBuilder::remote_role`](crate::GovernanceBuilder::remote_role)): only such an
//! agent receives a [`RemoteLink`], the owner-side plumbing that records what the worker
//! reported. The worker side of such a role runs in an [`AgentContext::detached`] context.
//!
//! Files: `context.rs` (the context, its reads and writes), `board.rs` (the read-only
//! blackboard view), `inbox.rs` (messages), `llm_call.rs` (the governed LLM call through the
//! engine's [`LlmLayer`](crate::LlmLayer) stack), `remote.rs` (the remote link and detached
//! contexts).

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;

mod board;
mod context;
mod inbox;
mod llm_call;
mod remote;

pub use board::BoardView;
pub use context::AgentContext;
pub(crate) use context::ContextParts;
pub use inbox::Inbox;
pub use remote::{DetachedContext, RemoteLink};

pub use crate::llm_stack::STREAM_RECIPIENT;

/// How an agent's run ended (errors are returned as `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentOutcome {
    /// Its work is done.
    Done,
    /// It has nothing (more) to contribute; not a failure.
    Idle,
}

/// One role in a pipeline (`ALPHA`, `BETA`, `GAMMA`, or your own).
///
/// # Contract
/// - `run` works until its part is done, then returns `Ok`. It must return promptly (with
///   `Err(Error::Cancelled)` or `Ok`) once [`AgentContext::is_cancelled`] is true; every
///   `AgentContext` method that waits already does.
/// - It writes only through the context ([`AgentContext::create_proposal`],
///   [`vote`](AgentContext::vote), [`publish`](AgentContext::publish), ...), always as itself,
///   so every write is in the ledger and the event stream; it reads the blackboard through
///   [`AgentContext::board`].
/// - Errors it cannot handle are returned: [`Error::Revoked`](crate::Error::Revoked) when its
///   error budget revoked it (the orchestrator then writes a handoff), anything else marks it
///   failed.
/// - An agent object is shared by all pipelines: keep per-run state inside `run`.
/// - [`role`](Self::role) and [`votes`](Self::votes) are read once, when the agent is
///   registered; the engine uses those answers for good.
///
/// # Example
/// A reviewer that approves every open proposal it has not voted on yet, then stops:
/// ```
/// use std::sync::Arc;
/// use governance_core::{
///     Agent, AgentContext, AgentOutcome, Governance, PipelineStatus, ProposalStatus, Result,
///     SpawnRequest, async_trait,
/// };
///
/// #[derive(Debug)]
/// struct Approver;
///
/// #[async_trait]
/// impl Agent for Approver {
///     fn role(&self) -> &str {
///         "APPROVER"
///     }
///
///     async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
///         let mut inbox = ctx.inbox().await?;
///         while ctx.board().consensus().await?.is_none() {
///             for p in ctx.board().proposals().await? {
///                 let mine = p.votes.iter().any(|v| &v.voter == ctx.agent_id());
///                 if p.status == ProposalStatus::Open && !mine {
///                     ctx.vote(&p.id, true, 0.8, "looks sound").await?;
///                 }
///             }
///             ctx.wait_messages(&mut inbox).await?;
///         }
///         Ok(AgentOutcome::Done)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<()> {
/// let gov = Governance::builder().role(Arc::new(Approver)).build()?;
/// let id = gov.spawn(SpawnRequest::new("Design a caching strategy")).await?;
/// let record = gov.wait(&id).await?;
/// assert_eq!(record.status, PipelineStatus::Completed);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Agent: Send + Sync + std::fmt::Debug {
    /// The role name, `[A-Za-z0-9_-]{1,32}` (used as the agent id).
    fn role(&self) -> &str;

    /// Whether its votes count toward the quorum (default `true`).
    fn votes(&self) -> bool {
        true
    }

    /// Runs the agent for one pipeline.
    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome>;
}

/// A role played outside this engine (by a worker process), registered with
/// [`GovernanceBuilder::remote_role`](crate::GovernanceBuilder::remote_role).
///
/// Besides the role's [`AgentContext`], `run` receives the [`RemoteLink`] through which the
/// owner records what the remote half reported. The engine builds a link only for agents
/// registered this way: an [`Agent`] registered with `.role(..)`, `.alpha(..)`, ... never
/// sees one, and no code outside this crate can construct one.
#[async_trait]
pub trait RemoteAgent: Send + Sync + std::fmt::Debug {
    /// The role name, `[A-Za-z0-9_-]{1,32}` (used as the agent id).
    fn role(&self) -> &str;

    /// Whether its votes count toward the quorum (default `true`).
    fn votes(&self) -> bool {
        true
    }

    /// Follows the role's remote half for one pipeline.
    async fn run(&self, ctx: AgentContext, link: RemoteLink) -> Result<AgentOutcome>;
}

/// What the builder registered: a local or remote agent under the name (and vote weight) it
/// gave when registered. Reading `role()` once means an agent cannot change its identity
/// (and vote as someone else) after its name was checked.
#[derive(Debug)]
pub(crate) struct Registered {
    name: String,
    votes: bool,
    player: Player,
}

#[derive(Debug)]
enum Player {
    Local(Arc<dyn Agent>),
    Remote(Arc<dyn RemoteAgent>),
}

impl Registered {
    /// A local agent, its name and vote weight read now.
    pub(crate) fn local(agent: Arc<dyn Agent>) -> Arc<dyn Agent> {
        Arc::new(Self {
            name: agent.role().to_owned(),
            votes: agent.votes(),
            player: Player::Local(agent),
        })
    }

    /// A remote agent, its name and vote weight read now.
    pub(crate) fn remote(agent: Arc<dyn RemoteAgent>) -> Arc<dyn Agent> {
        Arc::new(Self {
            name: agent.role().to_owned(),
            votes: agent.votes(),
            player: Player::Remote(agent),
        })
    }
}

#[async_trait]
impl Agent for Registered {
    fn role(&self) -> &str {
        &self.name
    }

    fn votes(&self) -> bool {
        self.votes
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        match &self.player {
            Player::Local(a) => a.run(ctx).await,
            Player::Remote(r) => {
                let link = RemoteLink::new(&ctx);
                r.run(ctx, link).await
            }
        }
    }
}
