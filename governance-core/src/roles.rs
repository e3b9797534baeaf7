//! The built-in roles: ALPHA (research → proposals), BETA (evaluation → votes → synthesis) and
//! GAMMA (mediator: decomposes, arbitrates, unblocks).
//!
//! ## Consensus rule
//! A proposal's author endorses it with an approving vote when it is written. It is *accepted*
//! when it has `quorum` approvals (2 by default: the author plus one evaluator — BETA, GAMMA or
//! a custom voting role) and becomes the pipeline's consensus if it is the first; it is
//! *rejected* at `quorum` rejections. When one of ALPHA/BETA has failed or been revoked and no
//! other voter is running, the quorum drops to 1 and the surviving agent takes over its
//! partner's work from the handoff (results are marked `degraded` when the consensus was then
//! accepted with that lone approval).
//! The pipeline is COMPLETED when it has a consensus and a solution built from it (or, when it
//! requires approval, rests at AWAITING_APPROVAL for a human; a rejection starts a revision
//! round in which every earlier proposal is SUPERSEDED and ALPHA's first prompt quotes the
//! reviewer's feedback, [`AgentContext::reviewer_feedback`]).

use async_trait::async_trait;

use crate::agent::{Agent, AgentContext, AgentOutcome, Inbox};
use crate::blackboard::{Consensus, Proposal, ProposalStatus};
use crate::control::Control;
use crate::error::{Error, Result};
use crate::event::GammaReason;
use crate::ids::AgentId;
use crate::llm::Purpose;
use crate::message_bus::Message;
use crate::parse::{EvaluationDraft, MediationDraft, ProposalDraft, SolutionDraft};
use crate::prompt;
use crate::role::Role;

/// ALPHA: research and proposal generation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Alpha;
/// BETA: evaluation, votes and synthesis.
#[derive(Debug, Default, Clone, Copy)]
pub struct Beta;
/// GAMMA: the mediator spawned on STUCK, CONFLICT or COMPLEXITY.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gamma;

/// Per-run working state shared by the built-in roles.
struct Work {
    inbox: Inbox,
    written: u32,
    /// Own proposals of earlier rounds (superseded by a revision): not counted against the
    /// per-round maximum.
    earlier: u32,
    takeover: bool,
    wrote_since_takeover: bool,
    feedback: Vec<String>,
    first: bool,
}

impl Work {
    async fn new(ctx: &AgentContext) -> Result<Self> {
        // a restarted agent continues its numbering instead of colliding with its own ids
        let own: Vec<Proposal> = ctx
            .board()
            .proposals()
            .await?
            .into_iter()
            .filter(|p| &p.author == ctx.agent_id())
            .collect();
        let written = own.len();
        let earlier = own
            .iter()
            .filter(|p| p.status == ProposalStatus::Superseded)
            .count();
        // an earlier run that died between writing a proposal and endorsing it: endorse now
        // (one vote per voter, so a repeat changes nothing)
        for p in own
            .iter()
            .filter(|p| p.status == ProposalStatus::Open && !voted(p, ctx.agent_id()))
        {
            ctx.vote(&p.id, true, 1.0, "author endorses its proposal")
                .await?;
        }
        Ok(Self {
            inbox: ctx.inbox().await?,
            written: u32::try_from(written).unwrap_or(u32::MAX),
            earlier: u32::try_from(earlier).unwrap_or(u32::MAX),
            takeover: false,
            wrote_since_takeover: false,
            // a revision round: what the human reviewer asked for comes first
            feedback: ctx.reviewer_feedback(),
            first: true,
        })
    }

    /// Waits for news (not on the first round) and handles handoffs and feedback.
    async fn next_round(&mut self, ctx: &AgentContext) -> Result<()> {
        let msgs: Vec<Message> = if self.first {
            self.first = false;
            Vec::new()
        } else {
            ctx.wait_messages(&mut self.inbox).await?
        };
        for m in msgs {
            if let Some(control) = Control::from_message(&m) {
                if let Control::Handoff { handoff_id: id, .. } = control
                    && ctx.claim_handoff(&id).await?
                {
                    self.takeover = true;
                    self.wrote_since_takeover = false;
                    ctx.publish(
                        crate::message_bus::BROADCAST,
                        "handoff_claimed",
                        format!("claimed {id}"),
                    )
                    .await?;
                }
            } else if m.topic == "evaluation" && m.content.starts_with("reject") {
                self.feedback.push(m.content);
            }
        }
        Ok(())
    }

    async fn propose(&mut self, ctx: &AgentContext) -> Result<()> {
        let summary = ctx.report().map(|r| r.summary.clone()).unwrap_or_default();
        let draft: ProposalDraft = ctx
            .ask(
                Purpose::Propose,
                prompt::propose(ctx.objective(), &summary, &self.feedback),
                |_| Ok(()),
            )
            .await?;
        self.written += 1;
        self.wrote_since_takeover = true;
        ctx.create_proposal(self.written, &draft.title, &draft.content)
            .await?;
        Ok(())
    }
}

fn voted(p: &Proposal, me: &AgentId) -> bool {
    p.votes.iter().any(|v| &v.voter == me)
}

async fn synthesize_if_missing(ctx: &AgentContext, cons: &Consensus) -> Result<()> {
    let snap = ctx.board().snapshot().await?;
    if !snap.solutions.is_empty() {
        return Ok(());
    }
    let p = snap
        .proposals
        .iter()
        .find(|p| p.id == cons.proposal_id)
        .ok_or_else(|| Error::not_found("proposal", &cons.proposal_id))?;
    let s: SolutionDraft = ctx
        .ask(
            Purpose::Synthesize,
            prompt::synthesize(ctx.objective(), &p.title, &p.content),
            |_| Ok(()),
        )
        .await?;
    ctx.add_solution(Some(cons.proposal_id.clone()), &s.solution)
        .await
}

async fn evaluate(ctx: &AgentContext, role: &str, p: &Proposal) -> Result<EvaluationDraft> {
    let id = p.id.as_str().to_owned();
    ctx.ask(
        Purpose::Evaluate,
        prompt::evaluate(role, ctx.objective(), &id, &p.title, &p.content),
        move |e: &EvaluationDraft| match &e.proposal_id {
            Some(other) if other != &id => Err(Error::ProcedureViolation(format!(
                "evaluation names proposal {other:?} but {id:?} was asked"
            ))),
            _ => Ok(()),
        },
    )
    .await
}

#[async_trait]
impl Agent for Alpha {
    fn role(&self) -> &'static str {
        const ROLE: &Role = &Role::ALPHA;
        ROLE.as_str()
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut w = Work::new(&ctx).await?;
        let max = ctx
            .config()
            .max_proposals_per_agent
            .saturating_add(w.earlier);
        loop {
            w.next_round(&ctx).await?;
            if let Some(cons) = ctx.board().consensus().await? {
                if w.takeover {
                    synthesize_if_missing(&ctx, &cons).await?;
                }
                return Ok(AgentOutcome::Done);
            }
            let props = ctx.board().proposals().await?;
            let pending = props.iter().any(|p| {
                &p.author == ctx.agent_id()
                    && p.status == ProposalStatus::Open
                    && p.rejections() == 0
            });
            if (!pending || (w.takeover && !w.wrote_since_takeover)) && w.written < max {
                w.propose(&ctx).await?;
            }
        }
    }
}

#[async_trait]
impl Agent for Beta {
    fn role(&self) -> &'static str {
        const ROLE: &Role = &Role::BETA;
        ROLE.as_str()
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut w = Work::new(&ctx).await?;
        loop {
            w.next_round(&ctx).await?;
            if let Some(cons) = ctx.board().consensus().await? {
                synthesize_if_missing(&ctx, &cons).await?;
                return Ok(AgentOutcome::Done);
            }
            let props = ctx.board().proposals().await?;
            for p in props.iter().filter(|p| {
                p.status == ProposalStatus::Open
                    && &p.author != ctx.agent_id()
                    && !voted(p, ctx.agent_id())
            }) {
                let e = evaluate(&ctx, "BETA (synthesis, evaluation)", p).await?;
                let out = ctx.vote(&p.id, e.approve, e.score, &e.rationale).await?;
                let verdict = if e.approve { "approve" } else { "reject" };
                ctx.publish(
                    p.author.as_str(),
                    "evaluation",
                    format!("{verdict} {}: {}", p.id, e.rationale),
                )
                .await?;
                if out.consensus.is_some() {
                    break;
                }
            }
            if w.takeover && !w.wrote_since_takeover && ctx.board().consensus().await?.is_none() {
                w.propose(&ctx).await?;
            }
        }
    }
}

#[async_trait]
impl Agent for Gamma {
    fn role(&self) -> &'static str {
        const ROLE: &Role = &Role::GAMMA;
        ROLE.as_str()
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut w = Work::new(&ctx).await?;
        let reason = ctx.gamma_reason().unwrap_or(GammaReason::Stuck);
        if reason == GammaReason::Complexity {
            let summary = ctx.report().map(|r| r.summary.clone()).unwrap_or_default();
            let m: MediationDraft = ctx
                .ask(
                    Purpose::Mediate,
                    prompt::mediate(ctx.objective(), &summary, reason.as_str()),
                    |_| Ok(()),
                )
                .await?;
            ctx.put_partial(
                "decomposition",
                serde_json::json!({"subtasks": m.subtasks, "guidance": m.guidance}),
            )
            .await?;
            ctx.publish(
                crate::message_bus::BROADCAST,
                "decomposition",
                format!("sub-tasks: {}", m.subtasks.join("; ")),
            )
            .await?;
        } else {
            ctx.publish(
                crate::message_bus::BROADCAST,
                "mediation",
                format!("GAMMA mediating ({reason})"),
            )
            .await?;
        }
        // pick up work nobody claimed
        for h in ctx.board().handoffs().await? {
            if h.claimed_by.is_none() && ctx.claim_handoff(&h.id).await? {
                w.takeover = true;
            }
        }
        loop {
            w.next_round(&ctx).await?;
            if let Some(cons) = ctx.board().consensus().await? {
                synthesize_if_missing(&ctx, &cons).await?;
                return Ok(AgentOutcome::Done);
            }
            let props = ctx.board().proposals().await?;
            let open: Vec<&Proposal> = props
                .iter()
                .filter(|p| p.status == ProposalStatus::Open && !voted(p, ctx.agent_id()))
                .collect();
            let mut evals = Vec::with_capacity(open.len());
            for p in &open {
                evals.push((*p, evaluate(&ctx, "GAMMA (mediator, arbiter)", p).await?));
            }
            if reason == GammaReason::Conflict && !evals.is_empty() {
                // arbitrate: approve the best, reject the rest
                let best = evals
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.1.score.total_cmp(&b.1.1.score))
                    .map_or(0, |(i, _)| i);
                for (i, (p, e)) in evals.iter().enumerate() {
                    ctx.vote(&p.id, i == best, e.score, &e.rationale).await?;
                }
            } else {
                for (p, e) in &evals {
                    if ctx
                        .vote(&p.id, e.approve, e.score, &e.rationale)
                        .await?
                        .consensus
                        .is_some()
                    {
                        break;
                    }
                }
            }
            if open.is_empty()
                && props.iter().all(|p| p.status != ProposalStatus::Open)
                && !w.wrote_since_takeover
            {
                // nothing to judge and nobody is producing: write a proposal ourselves
                w.propose(&ctx).await?;
            }
        }
    }
}
