//! The state of one running pipeline that its agents, the supervisor and resume share.
//!
//! Every field is private. Agents (through their [`AgentContext`](crate::AgentContext)) report
//! what they did with intent methods — [`record_progress`](PipelineState::record_progress),
//! [`mark_consensus`](PipelineState::mark_consensus), [`record_llm_call`](PipelineState::record_llm_call),
//! ... — and never set a flag of the engine's; what only the engine decides (the quorum, an
//! agent's end, the STUCK clock, which events a resume found in the ledger) is visible only
//! inside [`crate::engine`].

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::blackboard::BlackboardSnapshot;
use crate::circuit_breaker::CircuitBreaker;
use crate::emitter::EventEmitter;
use crate::error::Result;
use crate::event::EventKind;
use crate::ids::{AgentId, PipelineId, ProposalId};
use crate::llm::Usage;
use crate::quorum::{ConsensusRule, Quorum, QuorumHandle};
use crate::store::{AgentRecord, AgentState, Report, UsageTotals};
use crate::token_budget::PipelineBudget;

/// Shared, in-process state of one running pipeline (see the module docs).
#[derive(Debug)]
pub(crate) struct PipelineState {
    id: PipelineId,
    objective: Arc<str>,
    report: Mutex<Option<Arc<Report>>>,
    emitter: EventEmitter,
    budget: Arc<PipelineBudget>,
    breaker: Arc<CircuitBreaker>,
    /// Approvals a proposal needs (2 normally; 1 when a lone agent continues).
    quorum: QuorumHandle,
    progress: Notify,
    last_progress: Mutex<Instant>,
    consensus: AtomicBool,
    solution: AtomicBool,
    proposals_changed: AtomicBool,
    agents: Mutex<Vec<AgentRecord>>,
    usage: Mutex<UsageTotals>,
    /// Proposals and votes whose events are in the ledger, as far as a remote agent's reports
    /// are concerned (filled on resume from the ledger, then by `record_remote`), so a report
    /// replayed after a takeover is not recorded twice.
    recorded: Mutex<Recorded>,
    /// Reviewers' rejections of earlier outcomes, oldest first (see [`Review`]).
    reviews: Mutex<Vec<Review>>,
    /// Whose approval the consensus rule requires (`super::required`).
    required: super::required::Required,
}

/// A human reviewer's rejection of an outcome: ALPHA reads it as reviewer feedback in the
/// revision rounds that follow, and its proposal never counts as the consensus again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Review {
    /// The rejected consensus proposal.
    pub proposal_id: Option<ProposalId>,
    /// Its title.
    pub title: String,
    /// Who rejected it.
    pub by: String,
    /// What they want changed.
    pub feedback: Option<String>,
}

impl Review {
    /// How ALPHA's prompt quotes it.
    fn as_feedback(&self) -> String {
        let what = format!(
            "the human reviewer {:?} rejected the outcome {:?}",
            self.by, self.title
        );
        match self.feedback.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => format!("{what}: {f}"),
            _ => format!("{what} without a comment"),
        }
    }
}

/// What of the blackboard and the agents the ledger already records (see
/// [`PipelineState::restore_recorded`]).
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub proposals: HashSet<ProposalId>,
    pub votes: HashSet<(ProposalId, AgentId)>,
    /// `orchestration_started` is in the ledger (a resumed orchestration does not repeat it).
    pub orchestration_started: bool,
    /// Agents whose `agent_spawned` is in the ledger (a restart does not repeat it).
    pub spawned: HashSet<AgentId>,
}

impl PipelineState {
    pub(crate) fn new(
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
            quorum: QuorumHandle::default(),
            progress: Notify::new(),
            last_progress: Mutex::new(Instant::now()),
            consensus: AtomicBool::new(false),
            solution: AtomicBool::new(false),
            proposals_changed: AtomicBool::new(false),
            agents: Mutex::new(Vec::new()),
            usage: Mutex::new(UsageTotals::default()),
            recorded: Mutex::new(Recorded::default()),
            reviews: Mutex::new(Vec::new()),
            required: super::required::Required::default(),
        }
    }

    /// With approvers its owner feeds (a worker's context).
    #[must_use]
    pub(crate) fn with_approvers(mut self, handle: crate::quorum::ApproversHandle) -> Self {
        self.required = super::required::Required::fed(handle);
        self
    }

    /// With the RUNNING stage's report (a worker's context gets its owner's).
    #[must_use]
    pub(crate) fn with_report(self, report: Option<Report>) -> Self {
        *self.report.lock() = report.map(Arc::new);
        self
    }

    /// With the agents and usage of a stored record (a pipeline rebuilt from its record).
    #[must_use]
    pub(in crate::engine) fn with_agents(
        self,
        agents: Vec<AgentRecord>,
        usage: UsageTotals,
    ) -> Self {
        *self.agents.lock() = agents;
        *self.usage.lock() = usage;
        self
    }

    // ---- reads ----

    pub(crate) fn id(&self) -> &PipelineId {
        &self.id
    }

    pub(crate) fn objective(&self) -> &str {
        &self.objective
    }

    pub(crate) fn report(&self) -> Option<Arc<Report>> {
        self.report.lock().clone()
    }

    /// Where the pipeline's events go (ledger first, then the live stream).
    pub(crate) fn emitter(&self) -> &EventEmitter {
        &self.emitter
    }

    pub(crate) fn budget(&self) -> &Arc<PipelineBudget> {
        &self.budget
    }

    pub(crate) fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    pub(crate) fn quorum(&self) -> Quorum {
        self.quorum.get()
    }

    /// The rule a vote is decided with: `quorum` and the required approvers.
    pub(crate) fn consensus_rule(&self, quorum: Quorum) -> ConsensusRule {
        self.required.handle().rule(quorum)
    }

    /// Whose approval the consensus rule requires.
    pub(crate) fn required(&self) -> &super::required::Required {
        &self.required
    }

    /// `claimer` took the work of `from` over: the required approvers follow.
    pub(crate) fn note_claim(&self, from: AgentId, claimer: AgentId) {
        self.required.note_claim(from, claimer);
        self.required.refresh(&self.agents());
    }

    pub(crate) fn consensus_reached(&self) -> bool {
        self.consensus.load(Ordering::Acquire)
    }

    pub(crate) fn has_solution(&self) -> bool {
        self.solution.load(Ordering::Acquire)
    }

    pub(crate) fn agent_state(&self, agent_id: &str) -> Option<AgentState> {
        self.agents
            .lock()
            .iter()
            .find(|a| a.agent_id == agent_id)
            .map(|a| a.state)
    }

    /// The role of agent `agent_id` (empty when it is unknown).
    pub(crate) fn agent_role(&self, agent_id: &str) -> String {
        self.agents
            .lock()
            .iter()
            .find(|a| a.agent_id == agent_id)
            .map(|a| a.role.clone())
            .unwrap_or_default()
    }

    pub(crate) fn agents(&self) -> Vec<AgentRecord> {
        self.agents.lock().clone()
    }

    pub(crate) fn usage(&self) -> UsageTotals {
        *self.usage.lock()
    }

    /// Human reviewers' rejections of earlier outcomes, oldest first, as text for a prompt
    /// (empty unless the pipeline is in a revision round).
    pub(crate) fn reviewer_feedback(&self) -> Vec<String> {
        self.reviews
            .lock()
            .iter()
            .map(Review::as_feedback)
            .collect()
    }

    // ---- what agents report (the governed path) ----

    /// Marks progress (resets the STUCK clock) and wakes the supervisor.
    pub(crate) fn record_progress(&self) {
        *self.last_progress.lock() = Instant::now();
        self.progress.notify_one();
    }

    /// Wakes the supervisor without counting as progress.
    pub(crate) fn poke(&self) {
        self.progress.notify_one();
    }

    /// A proposal was created or voted on: the supervisor counts the open ones again.
    pub(crate) fn proposals_changed(&self) {
        self.proposals_changed.store(true, Ordering::Release);
    }

    /// The blackboard decided a consensus. Returns `false` when it was already marked.
    pub(crate) fn mark_consensus(&self) -> bool {
        !self.consensus.swap(true, Ordering::AcqRel)
    }

    /// A solution is on the blackboard. Returns `false` when it was already marked.
    pub(crate) fn mark_solution(&self) -> bool {
        !self.solution.swap(true, Ordering::AcqRel)
    }

    /// The blackboard was rebuilt (`super::rebuild`): the consensus and solution flags say
    /// what the rebuilt blackboard holds.
    pub(in crate::engine) fn reset_board_flags(&self, consensus: bool, solution: bool) {
        self.consensus.store(consensus, Ordering::Release);
        self.solution.store(solution, Ordering::Release);
    }

    /// An LLM call of `agent_id` ended: adds its usage (`None`: it failed, it only counts as a
    /// call) and the agent's tokens so far.
    pub(crate) fn record_llm_call(
        &self,
        agent_id: &str,
        usage: Option<&Usage>,
        tokens_used: u64,
        cost_usd: f64,
    ) {
        self.record_llm_usage(usage);
        self.record_agent_usage(agent_id, tokens_used, cost_usd);
    }

    /// One LLM call was sent (with its usage when it succeeded).
    pub(crate) fn record_llm_usage(&self, usage: Option<&Usage>) {
        let mut u = self.usage.lock();
        match usage {
            Some(usage) => u.add(usage),
            None => u.calls += 1,
        }
    }

    /// Agent `agent_id` has used `tokens_used` tokens and spent `cost_usd` so far.
    pub(crate) fn record_agent_usage(&self, agent_id: &str, tokens_used: u64, cost_usd: f64) {
        self.update_agent(agent_id, |a| {
            a.tokens_used = tokens_used;
            a.cost_usd = cost_usd;
        });
    }

    /// Agent `agent_id` has had `errors` errors so far.
    pub(crate) fn record_agent_errors(&self, agent_id: &str, errors: u32) {
        self.update_agent(agent_id, |a| a.errors = errors);
    }

    /// Notes that the `proposal_created` of `proposal` is in the ledger; `false` when it
    /// already was.
    pub(crate) fn note_proposal_recorded(&self, proposal: &ProposalId) -> bool {
        self.recorded.lock().proposals.insert(proposal.clone())
    }

    /// Notes that the `vote_cast` of `voter` on `proposal` is in the ledger; `false` when it
    /// already was.
    pub(crate) fn note_vote_recorded(&self, proposal: &ProposalId, voter: &AgentId) -> bool {
        self.recorded
            .lock()
            .votes
            .insert((proposal.clone(), voter.clone()))
    }

    /// Emits `proposal_created` / `vote_cast` for the proposals and votes on the blackboard
    /// (`snap`) whose events are not in the ledger yet (of agent `only`, or of everyone),
    /// in blackboard order; vote counts are those after each vote. Returns how many it emitted.
    pub(crate) async fn record_unrecorded(
        &self,
        snap: &BlackboardSnapshot,
        only: Option<&AgentId>,
    ) -> Result<usize> {
        let quorum = self.quorum().get();
        let mut n = 0;
        for p in &snap.proposals {
            if only.is_none_or(|a| a == &p.author) && self.note_proposal_recorded(&p.id) {
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
                if only.is_some_and(|a| a != &v.voter) || !self.note_vote_recorded(&p.id, &v.voter)
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

    // ---- what only the engine decides ----

    pub(in crate::engine) fn set_report(&self, report: Report) {
        *self.report.lock() = Some(Arc::new(report));
    }

    pub(in crate::engine) fn set_quorum(&self, quorum: Quorum) {
        self.quorum.set(quorum);
    }

    /// Whether proposals changed since the last call (and forgets it).
    pub(in crate::engine) fn take_proposals_changed(&self) -> bool {
        self.proposals_changed.swap(false, Ordering::AcqRel)
    }

    /// Completes when an agent reported progress or poked the supervisor.
    pub(in crate::engine) fn progress_notified(&self) -> Notified<'_> {
        self.progress.notified()
    }

    /// Time since the last progress.
    pub(in crate::engine) fn since_progress(&self) -> Duration {
        self.last_progress.lock().elapsed()
    }

    /// Starts the STUCK clock again (an orchestration begins).
    pub(in crate::engine) fn restart_progress_clock(&self) {
        *self.last_progress.lock() = Instant::now();
    }

    /// A new (or restarted) agent runs.
    pub(in crate::engine) fn register_agent(&self, agent_id: &str, role: &str, model: &str) {
        let mut agents = self.agents.lock();
        agents.retain(|a| a.agent_id != agent_id);
        agents.push(AgentRecord {
            agent_id: agent_id.to_owned(),
            role: role.to_owned(),
            state: AgentState::Running,
            tokens_used: 0,
            cost_usd: 0.0,
            errors: 0,
            reason: None,
            model: Some(model.to_owned()),
        });
    }

    /// Agent `agent_id` ended in `state` (for `reason`).
    pub(in crate::engine) fn agent_finished(
        &self,
        agent_id: &str,
        state: AgentState,
        reason: Option<String>,
    ) {
        self.update_agent(agent_id, |a| {
            a.state = state;
            a.reason = reason;
        });
    }

    /// Agent `agent_id`, if still running, ends in `leftover` (the orchestration is over).
    pub(in crate::engine) fn settle_agent(&self, agent_id: &str, leftover: AgentState) {
        self.update_agent(agent_id, |a| {
            if a.state == AgentState::Running {
                a.state = leftover;
            }
        });
    }

    /// Every agent still running ends in `leftover`.
    pub(in crate::engine) fn settle_all_agents(&self, leftover: AgentState) {
        for a in self
            .agents
            .lock()
            .iter_mut()
            .filter(|a| a.state == AgentState::Running)
        {
            a.state = leftover;
        }
    }

    /// Notes that `orchestration_started` is in the ledger; `false` when it already was.
    pub(in crate::engine) fn note_orchestration_started(&self) -> bool {
        !std::mem::replace(&mut self.recorded.lock().orchestration_started, true)
    }

    /// Notes that the `agent_spawned` of `agent` is in the ledger; `false` when it already was.
    pub(in crate::engine) fn note_spawned(&self, agent: &AgentId) -> bool {
        self.recorded.lock().spawned.insert(agent.clone())
    }

    /// What a resume read from the ledger.
    pub(in crate::engine) fn restore_recorded(&self, from_ledger: Recorded) {
        let mut r = self.recorded.lock();
        r.proposals.extend(from_ledger.proposals);
        r.votes.extend(from_ledger.votes);
        r.orchestration_started = from_ledger.orchestration_started;
        r.spawned.extend(from_ledger.spawned);
    }

    /// A reviewer rejected an outcome (on the decision, or read back from the ledger).
    pub(in crate::engine) fn add_review(&self, review: Review) {
        self.reviews.lock().push(review);
    }

    /// Whether a reviewer rejected `proposal` as an outcome.
    pub(in crate::engine) fn was_rejected(&self, proposal: &ProposalId) -> bool {
        self.reviews
            .lock()
            .iter()
            .any(|r| r.proposal_id.as_ref() == Some(proposal))
    }

    /// A revision round begins on a fresh blackboard: no consensus, no solution, every voter
    /// back (quorum 2).
    pub(in crate::engine) fn start_revision(&self) {
        self.consensus.store(false, Ordering::Release);
        self.solution.store(false, Ordering::Release);
        self.set_quorum(Quorum::DEFAULT);
        self.proposals_changed();
    }

    fn update_agent(&self, agent_id: &str, f: impl FnOnce(&mut AgentRecord)) {
        if let Some(a) = self
            .agents
            .lock()
            .iter_mut()
            .find(|a| a.agent_id == agent_id)
        {
            f(a);
        }
    }
}
