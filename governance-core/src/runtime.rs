//! Runtime state shared by the agents and the supervisor of one running pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::circuit_breaker::CircuitBreaker;
use crate::emitter::EventEmitter;
use crate::ids::PipelineId;
use crate::store::{AgentRecord, AgentState, Report, UsageTotals};
use crate::token_budget::PipelineBudget;

/// Shared, in-process state of one running pipeline.
#[derive(Debug)]
pub(crate) struct Shared {
    pub id: PipelineId,
    pub objective: Arc<str>,
    pub report: Mutex<Option<Arc<Report>>>,
    pub emitter: EventEmitter,
    pub budget: Arc<PipelineBudget>,
    pub breaker: Arc<CircuitBreaker>,
    /// Approvals a proposal needs (2 normally; 1 when a lone agent continues).
    pub quorum: AtomicU32,
    pub progress: Notify,
    pub last_progress: Mutex<Instant>,
    pub consensus: AtomicBool,
    pub solution: AtomicBool,
    pub proposals_changed: AtomicBool,
    pub agents: Mutex<Vec<AgentRecord>>,
    pub usage: Mutex<UsageTotals>,
    /// Proposals and votes whose events are in the ledger, as far as a remote agent's reports
    /// are concerned (filled on resume from the ledger, then by `record_remote`), so a report
    /// replayed after a takeover is not recorded twice.
    pub recorded: Mutex<Recorded>,
}

/// See [`Shared::recorded`].
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub proposals: std::collections::HashSet<crate::ids::ProposalId>,
    pub votes: std::collections::HashSet<(crate::ids::ProposalId, crate::ids::AgentId)>,
    /// `orchestration_started` is in the ledger (a resumed orchestration does not repeat it).
    pub orchestration_started: bool,
    /// Agents whose `agent_spawned` is in the ledger (a restart does not repeat it).
    pub spawned: std::collections::HashSet<crate::ids::AgentId>,
}

impl Shared {
    pub fn new(
        id: PipelineId,
        objective: Arc<str>,
        emitter: EventEmitter,
        budget: Arc<PipelineBudget>,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            id,
            objective,
            report: Mutex::new(None),
            emitter,
            budget,
            breaker,
            quorum: AtomicU32::new(2),
            progress: Notify::new(),
            last_progress: Mutex::new(Instant::now()),
            consensus: AtomicBool::new(false),
            solution: AtomicBool::new(false),
            proposals_changed: AtomicBool::new(false),
            agents: Mutex::new(Vec::new()),
            usage: Mutex::new(UsageTotals::default()),
            recorded: Mutex::new(Recorded::default()),
        }
    }

    /// Marks progress (resets the STUCK clock) and wakes the supervisor.
    pub fn progressed(&self) {
        *self.last_progress.lock() = Instant::now();
        self.progress.notify_one();
    }

    /// Wakes the supervisor without counting as progress.
    pub fn poke(&self) {
        self.progress.notify_one();
    }

    pub fn quorum(&self) -> u32 {
        self.quorum.load(Ordering::Acquire)
    }

    pub fn update_agent(&self, agent_id: &str, f: impl FnOnce(&mut AgentRecord)) {
        if let Some(a) = self
            .agents
            .lock()
            .iter_mut()
            .find(|a| a.agent_id == agent_id)
        {
            f(a);
        }
    }

    /// Emits `proposal_created` / `vote_cast` for the proposals and votes on the blackboard
    /// (`snap`) that [`Shared::recorded`] does not list yet (of agent `only`, or of everyone),
    /// in blackboard order; vote counts are those after each vote. Returns how many it emitted.
    pub async fn record_unrecorded(
        &self,
        snap: &crate::blackboard::BlackboardSnapshot,
        only: Option<&crate::ids::AgentId>,
    ) -> crate::error::Result<usize> {
        use crate::event::EventKind;
        let quorum = self.quorum();
        let mut n = 0;
        for p in &snap.proposals {
            if only.is_none_or(|a| a == &p.author)
                && self.recorded.lock().proposals.insert(p.id.clone())
            {
                self.emitter
                    .emit(EventKind::ProposalCreated {
                        pipeline_id: self.id.clone(),
                        proposal_id: p.id.clone(),
                        author: p.author.clone(),
                        title: p.title.clone(),
                        content: p.content.clone(),
                    })
                    .await?;
                n += 1;
            }
            let (mut approvals, mut rejections) = (0u32, 0u32);
            for v in &p.votes {
                if v.approve {
                    approvals += 1;
                } else {
                    rejections += 1;
                }
                if only.is_some_and(|a| a != &v.voter)
                    || !self
                        .recorded
                        .lock()
                        .votes
                        .insert((p.id.clone(), v.voter.clone()))
                {
                    continue;
                }
                self.emitter
                    .emit(EventKind::VoteCast {
                        pipeline_id: self.id.clone(),
                        proposal_id: p.id.clone(),
                        voter: v.voter.clone(),
                        approve: v.approve,
                        approvals,
                        rejections,
                        score: v.score,
                        rationale: v.rationale.clone(),
                        quorum,
                    })
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn agent_state(&self, agent_id: &str) -> Option<AgentState> {
        self.agents
            .lock()
            .iter()
            .find(|a| a.agent_id == agent_id)
            .map(|a| a.state)
    }
}
