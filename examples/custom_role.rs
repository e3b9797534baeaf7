//! A custom agent role: a SECURITY reviewer that votes on every proposal beside BETA.
//!
//! It gets the same blackboard, bus, budgets, events and ledger as ALPHA/BETA/GAMMA: its LLM
//! calls go through the governed `AgentContext::ask` (token budget, circuit breaker, error
//! budget, lenient parsing), its votes count toward consensus, and every step it takes is an
//! event in the pipeline's ledger.
//!
//! Run with `cargo run -p governance-examples --example custom_role`.

use std::sync::Arc;

use async_trait::async_trait;
use governance_core::parse::EvaluationDraft;
use governance_core::{
    Agent, AgentContext, AgentOutcome, EventKind, Governance, ProposalStatus, Purpose, Result,
    SpawnRequest, prompt,
};

#[derive(Debug)]
struct SecurityReviewer;

#[async_trait]
impl Agent for SecurityReviewer {
    fn role(&self) -> &str {
        "SECURITY"
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut inbox = ctx.inbox().await?;
        loop {
            if ctx.board().consensus().await?.is_some() {
                return Ok(AgentOutcome::Done);
            }
            for p in ctx.board().proposals().await? {
                let mine = p.votes.iter().any(|v| &v.voter == ctx.agent_id());
                if p.status != ProposalStatus::Open || mine {
                    continue;
                }
                // Proposal text is quoted as data by `prompt::evaluate`, never as instructions.
                let messages = prompt::evaluate(
                    "SECURITY (threat review)",
                    ctx.objective(),
                    p.id.as_str(),
                    &p.title,
                    &p.content,
                );
                let review: EvaluationDraft =
                    ctx.ask(Purpose::Evaluate, messages, |_| Ok(())).await?;
                ctx.vote(&p.id, review.approve, review.score, &review.rationale)
                    .await?;
                ctx.publish(
                    p.author.as_str(),
                    "security_review",
                    format!(
                        "{} {}",
                        if review.approve { "approve" } else { "reject" },
                        p.id
                    ),
                )
                .await?;
            }
            ctx.wait_messages(&mut inbox).await?;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gov = Governance::builder()
        .role(Arc::new(SecurityReviewer))
        .build()?;
    let mut events = gov.subscribe();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await?;
    let record = gov.wait(&id).await?;
    while let Ok(ev) = events.try_recv() {
        match &ev.kind {
            EventKind::VoteCast {
                voter,
                proposal_id,
                approve,
                ..
            } => println!(
                "{voter} {} {proposal_id}",
                if *approve { "approves" } else { "rejects" }
            ),
            EventKind::AgentMessage {
                from, to, content, ..
            } if from.as_str() == "SECURITY" => println!("SECURITY → {to}: {content}"),
            _ => {}
        }
    }
    println!("pipeline {id} ended {}", record.status);
    for a in &record.agents {
        println!(
            "  {:<9} {:?} tokens={} errors={}",
            a.agent_id, a.state, a.tokens_used, a.errors
        );
    }
    Ok(())
}
