//! Required approvers (`required` in a role's settings; BETA by default), over the real
//! engine on the in-memory backends and the local LLM (tokio's paused clock: no waiting).
//!
//! - ALPHA endorsing its own proposal and a custom CRITIC approving it make the quorum, but
//!   without BETA's approval there is no consensus (with BETA's requirement lifted, the same
//!   pipeline completes on ALPHA's and CRITIC's approvals: the rule is what blocks it);
//! - BETA approving completes the pipeline, also when CRITIC is required as well (both in the
//!   consensus);
//! - a required approver revoked with nobody to take its role over ends the pipeline FAILED
//!   with a reason naming it, at once (not at the timeout).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use governance_core::{
    Agent, AgentContext, AgentOutcome, Error, EventKind, Governance, LocalLlm, LocalLlmConfig,
    PipelineStatus as S, Result, RoleSettings, RoleSettingsMap, SpawnRequest, async_trait,
};

/// Approves every proposal once.
#[derive(Debug)]
struct Critic;

#[async_trait]
impl Agent for Critic {
    fn role(&self) -> &str {
        "CRITIC"
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut inbox = ctx.inbox().await?;
        let mut seen = Vec::new();
        loop {
            for p in ctx.board().proposals().await? {
                if !seen.contains(&p.id) {
                    seen.push(p.id.clone());
                    ctx.vote(&p.id, true, 1.0, "rubber stamp").await?;
                }
            }
            if ctx.board().consensus().await?.is_some() {
                return Ok(AgentOutcome::Done);
            }
            ctx.wait_messages(&mut inbox).await?;
        }
    }
}

/// Breaks the procedure until its error budget revokes it.
#[derive(Debug)]
struct DoomedCritic;

#[async_trait]
impl Agent for DoomedCritic {
    fn role(&self) -> &str {
        "CRITIC"
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        loop {
            ctx.record_error(&Error::ProcedureViolation("voted for someone else".into()))
                .await?;
        }
    }
}

/// An engine with `critic`, BETA rejecting every proposal when `beta_rejects`, and no GAMMA
/// (the mediator would stand in for BETA: kept out to see the rule alone).
fn engine(critic: Arc<dyn Agent>, beta_rejects: bool) -> Governance {
    let mut cfg = fast_config();
    cfg.gamma.max_spawns = 0;
    let mut llm = LocalLlmConfig::default();
    if beta_rejects {
        llm.disagree_first = u32::MAX;
    }
    Governance::builder()
        .config(cfg)
        .llm("local", Arc::new(LocalLlm::new(llm)))
        .role(critic)
        .build()
        .expect("engine builds")
}

fn roles(pairs: &[(&str, bool)]) -> RoleSettingsMap {
    pairs
        .iter()
        .map(|(role, required)| {
            (
                (*role).to_owned(),
                RoleSettings {
                    required: Some(*required),
                    ..RoleSettings::default()
                },
            )
        })
        .collect()
}

fn request(roles: RoleSettingsMap) -> SpawnRequest {
    let mut req = SpawnRequest::new("Design a caching strategy");
    req.timeout = Some(Duration::from_secs(120));
    req.roles = roles;
    req
}

#[tokio::test(start_paused = true)]
async fn alpha_and_a_voting_critic_do_not_decide_without_beta() {
    let gov = engine(Arc::new(Critic), true);
    let id = gov.spawn(request(RoleSettingsMap::new())).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    let events = gov.events(&id, 0, 100_000).await.unwrap();
    assert_eq!(rec.status, S::Timeout, "{:?}", rec.failure);
    assert_eq!(count(&events, "consensus_reached"), 0);
    let bb = gov.blackboard_snapshot(&id).await.unwrap();
    assert!(bb.consensus.is_none());
    // the quorum was there: ALPHA's and CRITIC's approvals on ALPHA's first proposal
    let first = &bb.proposals[0];
    let approvers: Vec<&str> = first
        .votes
        .iter()
        .filter(|v| v.approve)
        .map(|v| v.voter.as_str())
        .collect();
    assert!(
        approvers.contains(&"ALPHA") && approvers.contains(&"CRITIC"),
        "{approvers:?}"
    );
    assert!(
        first
            .votes
            .iter()
            .any(|v| v.voter.as_str() == "BETA" && !v.approve),
        "BETA rejected it: {:?}",
        first.votes
    );

    // the same pipeline with BETA's requirement lifted: ALPHA and CRITIC decide
    let id = gov.spawn(request(roles(&[("BETA", false)]))).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
    let voters: Vec<String> = rec
        .results
        .expect("results")
        .consensus
        .expect("consensus")
        .voters
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(!voters.contains(&"BETA".to_owned()), "{voters:?}");
    assert!(voters.contains(&"CRITIC".to_owned()), "{voters:?}");
}

#[tokio::test(start_paused = true)]
async fn beta_approving_completes_and_a_required_critic_is_in_the_consensus() {
    let gov = engine(Arc::new(Critic), false);
    for extra in [RoleSettingsMap::new(), roles(&[("CRITIC", true)])] {
        let critic_required = !extra.is_empty();
        let id = gov.spawn(request(extra)).await.unwrap();
        let rec = gov.wait(&id).await.unwrap();
        assert_eq!(rec.status, S::Completed, "{:?}", rec.failure);
        let voters: Vec<String> = rec
            .results
            .expect("results")
            .consensus
            .expect("consensus")
            .voters
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(voters.contains(&"BETA".to_owned()), "{voters:?}");
        if critic_required {
            assert!(voters.contains(&"CRITIC".to_owned()), "{voters:?}");
            assert_eq!(rec.roles["CRITIC"].required, Some(true));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_required_approver_revoked_with_nobody_to_take_over_fails_the_pipeline() {
    let gov = engine(Arc::new(DoomedCritic), false);
    let id = gov
        .spawn(request(roles(&[("CRITIC", true)])))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    let events = gov.events(&id, 0, 100_000).await.unwrap();
    assert_eq!(rec.status, S::Failed, "{:?}", rec.failure);
    let reason = rec.failure.clone().unwrap_or_default();
    assert!(
        reason.contains("required approver CRITIC") && reason.contains("was revoked"),
        "{reason}"
    );
    assert_eq!(count(&events, "consensus_reached"), 0);
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::AgentRevoked { agent_id, .. } if agent_id.as_str() == "CRITIC")
    ));
}
