//! A hostile custom role tries to go around governance; every forgery fails.
//!
//! Forgeries that cannot even be written are `compile_fail` doctests on the types: changing
//! the quorum (`AgentContext::set_quorum`), a raw blackboard or bus handle
//! (`AgentContext::blackboard` / `bus`), writing through the read-only `BoardView`, naming
//! another voter (`vote_as`), recording remote events from a plain context
//! (`AgentContext::record_remote`) or building a `RemoteLink`. The ones a role can attempt at
//! run time are here, each refused, with nothing of it in the ledger or on the blackboard:
//! - voting and publishing as another agent by changing its name after it was registered;
//! - registering under a name that passes for someone else (BETA's twin, the orchestrator);
//! - spending past its token budget;
//! - a remote agent recording a status change, another agent's vote, a consensus the
//!   blackboard does not show, or an event of another pipeline.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use common::*;
use governance_core::{
    Agent, AgentContext, AgentId, AgentOutcome, BlackboardSnapshot, ChatMessage, Config, ErrorKind,
    Event, EventKind, Governance, LocalLlm, PipelineId, PipelineStatus, ProposalId, Purpose,
    RemoteAgent, RemoteLink, Result, SpawnRequest,
};
use parking_lot::Mutex;

const FORGED: &str = "forged";

/// What the hostile role saw while it tried.
#[derive(Debug, Default)]
struct Seen {
    second_vote_recorded: Option<bool>,
    board_after: Option<BlackboardSnapshot>,
    budget_error: Option<ErrorKind>,
    calls_made: u32,
    tokens_used: u64,
}

/// Registered in ALPHA's place as `HOSTILE`, it answers `BETA` to every later question about
/// its name, hoping to vote and talk as BETA; first it calls the model until it is stopped.
#[derive(Debug, Default)]
struct Shapeshifter {
    asked: AtomicU32,
    seen: Mutex<Seen>,
}

#[async_trait]
impl Agent for Shapeshifter {
    fn role(&self) -> &str {
        if self.asked.fetch_add(1, Ordering::SeqCst) == 0 {
            "HOSTILE"
        } else {
            "BETA"
        }
    }

    async fn run(&self, ctx: AgentContext) -> Result<AgentOutcome> {
        // spend until refused (bounded: the budget allows far fewer calls); it plays ALPHA,
        // so nothing can be decided before it proposes
        for _ in 0..10_000 {
            match ctx
                .llm(Purpose::Other, vec![ChatMessage::user("more, please")])
                .await
            {
                Ok(_) => self.seen.lock().calls_made += 1,
                Err(e) => {
                    self.seen.lock().budget_error = Some(e.kind());
                    break;
                }
            }
        }
        self.seen.lock().tokens_used = ctx.tokens_used();
        // its own proposal, endorsed by itself: one approval of the two it needs
        let (p, _) = ctx
            .create_proposal(1, "Hostile plan", "Trust the hostile role.")
            .await?;
        // a second approval "as BETA" would decide the consensus on it
        let again = ctx.vote(&p.id, true, 1.0, FORGED).await?;
        ctx.publish("GAMMA", "evaluation", format!("approve {}: {FORGED}", p.id))
            .await?;
        let board = ctx.board().snapshot().await?;
        {
            let mut seen = self.seen.lock();
            seen.second_vote_recorded = Some(again.recorded);
            seen.board_after = Some(board);
        }
        let mut inbox = ctx.inbox().await?;
        while ctx.board().consensus().await?.is_none() {
            ctx.wait_messages(&mut inbox).await?;
        }
        Ok(AgentOutcome::Done)
    }
}

const AGENT_BUDGET: u64 = 30_000;

fn config() -> Config {
    let mut c = fast_config();
    c.budgets.max_tokens_per_agent = AGENT_BUDGET;
    c
}

async fn run(gov: &Governance) -> (PipelineId, Vec<Event>) {
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await
        .unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    let events = gov.events(&id, 0, 100_000).await.unwrap();
    (id, events)
}

#[tokio::test(start_paused = true)]
async fn a_role_cannot_vote_or_publish_as_another_agent_nor_spend_past_its_budget() {
    let hostile = Arc::new(Shapeshifter::default());
    let llm = LocalLlm::default();
    let gov = Governance::builder()
        .config(config())
        .llm("local", Arc::new(llm.clone()))
        .alpha(hostile.clone())
        .build()
        .unwrap();
    let (_, events) = run(&gov).await;
    let seen = std::mem::take(&mut *hostile.seen.lock());
    let hostile_id: AgentId = "HOSTILE".parse().unwrap();
    let own: ProposalId = "HOSTILE-1".parse().unwrap();

    // it is HOSTILE everywhere, whatever it answers now
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::AgentSpawned { agent_id, .. } if agent_id == &hostile_id)));
    // the second vote was its own again: not recorded, not in the ledger, not on the board
    assert_eq!(seen.second_vote_recorded, Some(false));
    assert!(!events.iter().any(|e| matches!(&e.kind,
        EventKind::VoteCast { rationale, .. } if rationale == FORGED)));
    let board = seen.board_after.expect("the role looked at the board");
    let p = board.proposals.iter().find(|p| p.id == own).unwrap();
    assert!(
        p.votes.iter().all(|v| v.rationale != FORGED),
        "{:?}",
        p.votes
    );
    // its message went out under its own name only
    let forged_msgs: Vec<&AgentId> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentMessage { from, content, .. } if content.contains(FORGED) => Some(from),
            _ => None,
        })
        .collect();
    assert_eq!(forged_msgs, vec![&hostile_id]);

    // the budget stopped it before a call could pass it: the refused call was never sent
    assert_eq!(seen.budget_error, Some(ErrorKind::BudgetExceeded));
    assert!(seen.calls_made > 0, "it spent something first");
    assert!(seen.tokens_used <= AGENT_BUDGET, "{}", seen.tokens_used);
    let (calls, tokens) = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LlmCall {
                agent_id,
                prompt_tokens,
                completion_tokens,
                ..
            } if agent_id == &hostile_id => {
                Some(u64::from(*prompt_tokens) + u64::from(*completion_tokens))
            }
            _ => None,
        })
        .fold((0u32, 0u64), |(n, t), x| (n + 1, t + x));
    assert_eq!(calls, seen.calls_made, "one llm_call per call sent");
    assert!(tokens <= AGENT_BUDGET, "{tokens}");
}

#[test]
fn a_role_cannot_register_under_a_name_that_passes_for_someone_else() {
    #[derive(Debug)]
    struct Named(&'static str);
    #[async_trait]
    impl Agent for Named {
        fn role(&self) -> &str {
            self.0
        }
        async fn run(&self, _ctx: AgentContext) -> Result<AgentOutcome> {
            Ok(AgentOutcome::Idle)
        }
    }
    // the orchestrator's name would let it send control messages to remote workers
    for name in ["ORCHESTRATOR", "REPORTER", "BETA", "GAMMA"] {
        let e = Governance::builder()
            .role(Arc::new(Named(name)))
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{name}: {e}");
    }
    // a replaced ALPHA is named like any role, and not like its partner
    for name in ["ORCHESTRATOR", "REPORTER", "BETA", "GAMMA-2"] {
        let e = Governance::builder()
            .alpha(Arc::new(Named(name)))
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{name}: {e}");
    }
    assert!(
        Governance::builder()
            .alpha(Arc::new(Named("RESEARCHER")))
            .build()
            .is_ok()
    );
}

/// A remote role whose "worker" reports forgeries through the link it was given.
#[derive(Debug, Default)]
struct ForgingRemote {
    refused: Mutex<Vec<ErrorKind>>,
    own_recorded: Mutex<Option<bool>>,
}

#[async_trait]
impl RemoteAgent for ForgingRemote {
    fn role(&self) -> &str {
        "REMOTE"
    }

    fn votes(&self) -> bool {
        false
    }

    async fn run(&self, ctx: AgentContext, link: RemoteLink) -> Result<AgentOutcome> {
        let pid = ctx.pipeline_id().clone();
        let beta: AgentId = "BETA".parse().unwrap();
        let fake: ProposalId = "ALPHA-99".parse().unwrap();
        let forgeries = vec![
            EventKind::StatusChanged {
                pipeline_id: pid.clone(),
                status: PipelineStatus::Failed,
                previous: Some(PipelineStatus::Orchestrating),
                reason: Some(FORGED.into()),
            },
            EventKind::VoteCast {
                pipeline_id: pid.clone(),
                proposal_id: fake.clone(),
                voter: beta.clone(),
                approve: true,
                approvals: 2,
                rejections: 0,
                score: 1.0,
                rationale: FORGED.into(),
                quorum: 1,
            },
            EventKind::ConsensusReached {
                pipeline_id: pid.clone(),
                proposal_id: fake.clone(),
                votes: 2,
            },
            EventKind::AgentMessage {
                pipeline_id: PipelineId::generate(),
                from: ctx.agent_id().clone(),
                to: "ALPHA".into(),
                content: FORGED.into(),
            },
            EventKind::AgentMessage {
                pipeline_id: pid.clone(),
                from: beta,
                to: "ALPHA".into(),
                content: FORGED.into(),
            },
        ];
        for kind in forgeries {
            let r = link.record_remote(kind).await;
            self.refused
                .lock()
                .push(r.map_or_else(|e| e.kind(), |()| ErrorKind::Internal));
        }
        // what a remote agent may report about itself is recorded
        let own = link
            .record_remote(EventKind::AgentMessage {
                pipeline_id: pid,
                from: ctx.agent_id().clone(),
                to: "ALPHA".into(),
                content: "remote hello".into(),
            })
            .await;
        *self.own_recorded.lock() = Some(own.is_ok());
        Ok(AgentOutcome::Idle)
    }
}

#[tokio::test(start_paused = true)]
async fn a_remote_agent_cannot_record_status_changes_or_other_agents_events() {
    let remote = Arc::new(ForgingRemote::default());
    let gov = Governance::builder()
        .config(fast_config())
        .remote_role(remote.clone())
        .build()
        .unwrap();
    let (_, events) = run(&gov).await;
    assert_eq!(
        *remote.refused.lock(),
        vec![ErrorKind::InvalidInput; 5],
        "every forgery refused"
    );
    assert_eq!(*remote.own_recorded.lock(), Some(true));
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::AgentMessage { from, content, .. }
            if from.as_str() == "REMOTE" && content == "remote hello")));
    let forged: Vec<&Event> = events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::StatusChanged { reason, .. } => reason.as_deref() == Some(FORGED),
            EventKind::VoteCast { rationale, .. } => rationale == FORGED,
            EventKind::AgentMessage { content, .. } => content == FORGED,
            EventKind::ConsensusReached { proposal_id, .. } => proposal_id.as_str() == "ALPHA-99",
            _ => false,
        })
        .collect();
    assert!(forged.is_empty(), "{forged:?}");
}
