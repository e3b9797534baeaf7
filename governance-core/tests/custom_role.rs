//! A user-defined role takes part like ALPHA and BETA: blackboard, bus, budgets, events, ledger.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use governance_core::{
    Agent, AgentContext, AgentOutcome, EventKind, Governance, LocalLlm, LocalLlmConfig,
    PipelineStatus, ProposalStatus, Purpose, Result, SpawnRequest,
};

/// Rejects every proposal that lacks the word "checkpoints"; approves the others.
#[derive(Debug)]
struct Critic;

#[async_trait]
impl Agent for Critic {
    fn role(&self) -> &str {
        "CRITIC"
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut inbox = ctx.inbox().await?;
        loop {
            if ctx.board().consensus().await?.is_some() {
                return Ok(AgentOutcome::Done);
            }
            for p in ctx.board().proposals().await? {
                if p.status == ProposalStatus::Open
                    && !p.votes.iter().any(|v| &v.voter == ctx.agent_id())
                {
                    // the critic also asks the model, under its own token budget
                    ctx.llm(
                        Purpose::Other,
                        vec![governance_core::ChatMessage::user("check")],
                    )
                    .await?;
                    let ok = p.content.contains("checkpoints");
                    ctx.vote(&p.id, ok, if ok { 0.9 } else { 0.1 }, "critic")
                        .await?;
                    ctx.publish(
                        p.author.as_str(),
                        "critique",
                        format!("{} {}", if ok { "approve" } else { "reject" }, p.id),
                    )
                    .await?;
                }
            }
            ctx.wait_messages(&mut inbox).await?;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_role_votes_talks_and_is_audited() {
    // BETA rejects everything: the critic approves, but BETA's approval is required, so the
    // proposals pile up until GAMMA (CONFLICT) arbitrates in BETA's stead
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.disagree_first = u32::MAX;
        conf
    });
    let gov = Governance::builder()
        .config(fast_config())
        .llm("local", Arc::new(llm))
        .role(Arc::new(Critic))
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    let events = gov.events(&id, 0, 10_000).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::OrchestrationStarted { agents, .. } if agents.contains(&"CRITIC".to_owned()))));
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::AgentSpawned { agent_id, .. } if agent_id.as_str() == "CRITIC")));
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::LlmCall { agent_id, .. } if agent_id.as_str() == "CRITIC")
    ));
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::AgentMessage { from, .. } if from.as_str() == "CRITIC")
    ));
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::VoteCast { voter, approve: true, .. } if voter.as_str() == "CRITIC")));
    let critic = rec
        .agents
        .iter()
        .find(|a| a.agent_id == "CRITIC")
        .expect("critic in the registry");
    assert!(critic.tokens_used > 0);
}

#[test]
fn custom_role_names_are_validated() {
    #[derive(Debug)]
    struct Bad(&'static str);
    #[async_trait]
    impl Agent for Bad {
        fn role(&self) -> &str {
            self.0
        }
        async fn run(&self, _ctx: AgentContext) -> Result<AgentOutcome> {
            Ok(AgentOutcome::Idle)
        }
    }
    for name in ["ALPHA", "GAMMA-X", "bad name", ""] {
        let e = Governance::builder()
            .role(Arc::new(Bad(name)))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("role"), "{name}: {e}");
    }
}
