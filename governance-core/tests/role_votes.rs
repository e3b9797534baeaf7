//! `votes = false` in a role's settings: the role's votes do not count. A custom CRITIC that
//! tries to approve every proposal is refused by `AgentContext::vote` (nothing reaches the
//! blackboard), the quorum is not counted with it, and the consensus is ALPHA's and BETA's.

use std::sync::Arc;
use std::sync::Mutex;

use governance_core::{
    Agent, AgentContext, AgentOutcome, ErrorKind, Governance, PipelineStatus, Result, RoleSettings,
    RoleSettingsMap, SpawnRequest, async_trait,
};

/// Tries to approve every proposal; remembers what `vote` answered.
#[derive(Debug, Default)]
struct Critic {
    refusals: Mutex<Vec<ErrorKind>>,
}

#[async_trait]
impl Agent for Critic {
    fn role(&self) -> &str {
        "CRITIC"
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        let mut inbox = ctx.inbox().await?;
        let mut tried = Vec::new();
        loop {
            // every proposal, open or decided (a vote on a decided one is still recorded)
            for p in ctx.board().proposals().await? {
                if !tried.contains(&p.id) {
                    tried.push(p.id.clone());
                    if let Err(e) = ctx.vote(&p.id, true, 1.0, "rubber stamp").await {
                        self.refusals.lock().unwrap().push(e.kind());
                    }
                }
            }
            if ctx.board().consensus().await?.is_some() {
                return Ok(AgentOutcome::Done);
            }
            ctx.wait_messages(&mut inbox).await?;
        }
    }
}

fn critic_settings(votes: Option<bool>) -> RoleSettingsMap {
    RoleSettingsMap::from([(
        "CRITIC".to_owned(),
        RoleSettings {
            votes,
            ..RoleSettings::default()
        },
    )])
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_role_whose_votes_do_not_count_cannot_vote() {
    let critic = Arc::new(Critic::default());
    let gov = Governance::builder()
        .role(critic.clone())
        .role_settings(critic_settings(Some(false)))
        .build()
        .unwrap();
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    let refusals = critic.refusals.lock().unwrap().clone();
    assert!(!refusals.is_empty(), "CRITIC saw at least one proposal");
    assert!(refusals.iter().all(|k| *k == ErrorKind::ProcedureViolation));
    let bb = gov.blackboard_snapshot(&id).await.unwrap();
    assert!(
        bb.proposals
            .iter()
            .flat_map(|p| &p.votes)
            .all(|v| v.voter.as_str() != "CRITIC"),
        "no CRITIC vote reached the blackboard"
    );
    let consensus = bb.consensus.expect("consensus");
    let voters: Vec<&str> = consensus.voters.iter().map(|v| v.as_str()).collect();
    assert!(voters.contains(&"BETA"), "{voters:?}");
    assert!(!voters.contains(&"CRITIC"), "{voters:?}");
    assert_eq!(rec.roles["CRITIC"].votes, Some(false));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_spawn_may_take_the_vote_from_a_custom_role_but_not_from_beta() {
    let critic = Arc::new(Critic::default());
    let gov = Governance::builder().role(critic.clone()).build().unwrap();
    let mut req = SpawnRequest::new("Design a caching strategy");
    req.roles = critic_settings(Some(false));
    let id = gov.spawn(req).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed);
    assert!(!critic.refusals.lock().unwrap().is_empty());

    let mut req = SpawnRequest::new("Design a caching strategy");
    req.roles.insert(
        "BETA".into(),
        RoleSettings {
            votes: Some(false),
            ..RoleSettings::default()
        },
    );
    let err = gov.spawn(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("roles.BETA.votes"), "{err}");
}

#[test]
fn the_engine_refuses_settings_for_a_role_it_does_not_have() {
    let err = Governance::builder()
        .role_settings(critic_settings(None))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("roles.CRITIC"), "{err}");
}
