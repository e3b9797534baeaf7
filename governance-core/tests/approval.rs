//! A human approves the outcome: AWAITING_APPROVAL, approve → COMPLETED, reject → a revision
//! round with the feedback in ALPHA's next prompt, at most GOVERNANCE_MAX_REVISIONS rounds,
//! 409 when not waiting, exactly one of racing decisions wins, the deadline, restarts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use governance_core::{
    ApprovalDecision, ApprovalSettings, Config, ErrorKind, Event, EventKind, Governance, LlmClient,
    LlmRequest, LlmResponse, LocalLlm, MemoryStore, PipelineId, PipelineStatus as S, Purpose,
    SpawnRequest,
};
use parking_lot::Mutex;

/// The local LLM, keeping ALPHA's proposal prompts.
#[derive(Debug, Clone, Default)]
struct Prompts {
    llm: LocalLlm,
    alpha: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl LlmClient for Prompts {
    fn name(&self) -> &str {
        "local"
    }
    fn default_model(&self) -> &str {
        self.llm.default_model()
    }
    async fn complete(&self, r: &LlmRequest) -> governance_core::Result<LlmResponse> {
        if r.meta.purpose == Purpose::Propose && r.meta.agent_id.as_str() == "ALPHA" {
            let text: Vec<&str> = r.messages.iter().map(|m| m.content.as_str()).collect();
            self.alpha.lock().push(text.join("\n"));
        }
        self.llm.complete(r).await
    }
}

fn config(approval: ApprovalSettings) -> Config {
    let mut conf = fast_config();
    conf.approval = approval;
    conf
}

fn engine(config: Config, store: &Arc<MemoryStore>, llm: &Prompts) -> Governance {
    Governance::builder()
        .config(config)
        .llm("local", Arc::new(llm.clone()))
        .store(store.clone())
        .build()
        .expect("engine builds")
}

async fn spawn_waiting(gov: &Governance) -> PipelineId {
    let mut req = SpawnRequest::new("Plan a zero-downtime database migration");
    req.require_approval = Some(true);
    let id = gov.spawn(req).await.unwrap();
    // it passes REPORT (auto-continue) on its way: wait for the rest it is meant to reach
    let mut rec = gov.wait_until_rest(&id).await.unwrap();
    while !(rec.status == S::AwaitingApproval || rec.status.is_terminal()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        rec = gov.wait_until_rest(&id).await.unwrap();
    }
    assert_eq!(rec.status, S::AwaitingApproval, "{:?}", rec.failure);
    id
}

async fn ledger(gov: &Governance, id: &PipelineId) -> Vec<Event> {
    let events = gov.events(id, 0, 100_000).await.unwrap();
    assert_gap_free(&events);
    events
}

/// The `approval_requested` events: (revision, proposal id, proposal text, solution).
fn requests(events: &[Event]) -> Vec<(u32, String, String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ApprovalRequested {
                revision,
                proposal_id,
                proposal,
                solution,
                ..
            } => Some((
                *revision,
                proposal_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                proposal.clone(),
                solution.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn decisions(events: &[Event]) -> Vec<(bool, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ApprovalDecided { approve, by, .. } => Some((*approve, by.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_approved_outcome_completes_and_the_ledger_names_the_reviewer() {
    let (store, llm) = (Arc::new(MemoryStore::default()), Prompts::default());
    let gov = engine(config(ApprovalSettings::default()), &store, &llm);
    let id = spawn_waiting(&gov).await;

    // waiting holds no agent and calls no model, however long it waits
    let rec = gov.get(&id).await.unwrap();
    assert!(
        rec.agents
            .iter()
            .all(|a| a.state != governance_core::AgentState::Running)
    );
    let calls = llm.llm.calls();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(llm.llm.calls(), calls);
    assert_eq!(gov.get(&id).await.unwrap().status, S::AwaitingApproval);

    let asked = requests(&ledger(&gov, &id).await);
    assert_eq!(asked.len(), 1);
    let (revision, proposal_id, proposal, solution) = &asked[0];
    assert_eq!(*revision, 0);
    assert!(!proposal.is_empty() && !solution.is_empty());

    let status = gov
        .approve(&id, ApprovalDecision::approve("alice"))
        .await
        .unwrap();
    assert_eq!(status, S::Completed);
    let (rec, events) = (gov.wait(&id).await.unwrap(), ledger(&gov, &id).await);
    assert_eq!(rec.status, S::Completed);
    let results = rec.results.expect("results");
    assert_eq!(
        results.consensus.map(|c| c.proposal_id.to_string()),
        Some(proposal_id.clone())
    );
    assert_eq!(decisions(&events), vec![(true, "alice".to_owned())]);
    let st = statuses(&events);
    assert_eq!(
        &st[st.len() - 3..],
        [S::Orchestrating, S::AwaitingApproval, S::Completed]
    );
    // the decision, the end and the final status are one commit, in this order
    let t = types(&events);
    let at = t.iter().position(|x| *x == "approval_decided").unwrap();
    assert_eq!(
        &t[at..],
        [
            "approval_decided",
            "orchestration_complete",
            "status_changed",
            "checkpoint_created"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejection_sends_the_feedback_to_alpha_and_runs_a_revision_round() {
    let (store, llm) = (Arc::new(MemoryStore::default()), Prompts::default());
    let gov = engine(config(ApprovalSettings::default()), &store, &llm);
    let id = spawn_waiting(&gov).await;
    let before = llm.alpha.lock().len();
    assert!(llm.alpha.lock().iter().all(|p| !p.contains("rollback")));

    let reject = ApprovalDecision::reject("alice", "Add a rollback plan for every step");
    assert_eq!(gov.approve(&id, reject).await.unwrap(), S::Orchestrating);
    let rec = gov.wait_until_rest(&id).await.unwrap();
    assert_eq!(rec.status, S::AwaitingApproval);
    assert_eq!(rec.revisions, 1);
    // a decision made on the rejected outcome does not land on the revision's
    let stale = ApprovalDecision::approve("bob").for_revision(0);
    let e = gov.approve(&id, stale).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("revision 1"), "{e}");

    // ALPHA's next prompt quotes the reviewer
    let prompts = llm.alpha.lock().clone();
    let next = prompts.get(before).expect("ALPHA proposed again");
    assert!(
        next.contains("Add a rollback plan for every step"),
        "{next}"
    );
    assert!(next.contains("alice"), "{next}");

    let events = ledger(&gov, &id).await;
    let asked = requests(&events);
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1].0, 1);
    assert_ne!(
        asked[0].1, asked[1].1,
        "the revision decided a new proposal"
    );
    let st = statuses(&events);
    assert_eq!(
        &st[st.len() - 3..],
        [S::AwaitingApproval, S::Orchestrating, S::AwaitingApproval]
    );

    assert_eq!(
        gov.approve(&id, ApprovalDecision::approve("bob"))
            .await
            .unwrap(),
        S::Completed
    );
    let rec = gov.wait(&id).await.unwrap();
    let consensus = rec.results.unwrap().consensus.unwrap();
    assert_eq!(consensus.proposal_id.to_string(), asked[1].1);
    assert_eq!(
        decisions(&ledger(&gov, &id).await),
        vec![(false, "alice".to_owned()), (true, "bob".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn rejections_past_the_maximum_end_the_pipeline_failed_with_the_reason() {
    let (store, llm) = (Arc::new(MemoryStore::default()), Prompts::default());
    let settings = {
        let mut conf = ApprovalSettings::default();
        conf.max_revisions = 1;
        conf
    };
    let gov = engine(config(settings), &store, &llm);
    let id = spawn_waiting(&gov).await;
    let first = ApprovalDecision::reject("alice", "too vague");
    assert_eq!(gov.approve(&id, first).await.unwrap(), S::Orchestrating);
    assert_eq!(
        gov.wait_until_rest(&id).await.unwrap().status,
        S::AwaitingApproval
    );
    let second = ApprovalDecision::reject("alice", "still too vague");
    assert_eq!(gov.approve(&id, second).await.unwrap(), S::Failed);

    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, S::Failed);
    let failure = rec.failure.unwrap();
    assert!(failure.contains("GOVERNANCE_MAX_REVISIONS"), "{failure}");
    assert!(failure.contains("still too vague"), "{failure}");
    let events = ledger(&gov, &id).await;
    assert_eq!(decisions(&events).len(), 2);
    assert_eq!(statuses(&events).last(), Some(&S::Failed));
}

#[tokio::test(start_paused = true)]
async fn a_decision_on_a_pipeline_that_is_not_waiting_is_a_conflict() {
    let (store, llm) = (Arc::new(MemoryStore::default()), Prompts::default());
    let gov = engine(config(ApprovalSettings::default()), &store, &llm);
    let ok = ApprovalDecision::approve("alice");

    // finished without asking for approval
    let done = gov.spawn(SpawnRequest::new("Write a haiku")).await.unwrap();
    assert_eq!(gov.wait(&done).await.unwrap().status, S::Completed);
    let e = gov.approve(&done, ok.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // resting at REPORT
    let mut req = SpawnRequest::new("Write a sonnet");
    req.auto_continue = Some(false);
    req.require_approval = Some(true);
    let resting = gov.spawn(req).await.unwrap();
    assert_eq!(
        gov.wait_until_rest(&resting).await.unwrap().status,
        S::Report
    );
    let e = gov.approve(&resting, ok.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(gov.get(&resting).await.unwrap().status, S::Report);

    // decided already
    let id = spawn_waiting(&gov).await;
    gov.approve(&id, ok.clone()).await.unwrap();
    let e = gov.approve(&id, ok.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // unknown pipeline; a bad decision names its field and changes nothing
    let unknown = PipelineId::new("nope").unwrap();
    assert_eq!(
        gov.approve(&unknown, ok).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let waiting = spawn_waiting(&gov).await;
    let e = gov
        .approve(&waiting, ApprovalDecision::approve(" "))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("by"), "{e}");
    assert_eq!(gov.get(&waiting).await.unwrap().status, S::AwaitingApproval);
    assert!(decisions(&ledger(&gov, &waiting).await).is_empty());

    // stopped while waiting: STOPPED, and no decision after that
    assert_eq!(gov.stop(&waiting).await.unwrap(), S::Stopped);
    let e = gov
        .approve(&waiting, ApprovalDecision::approve("alice"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_racing_decisions_exactly_one_wins() {
    let (store, llm) = (Arc::new(MemoryStore::default()), Prompts::default());
    let gov = engine(config(ApprovalSettings::default()), &store, &llm);
    for round in 0..4 {
        let id = spawn_waiting(&gov).await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let (gov, id) = (gov.clone(), id.clone());
            // decided on the outcome they saw: a rejection's next round is not theirs
            let d = if i % 2 == 0 {
                ApprovalDecision::approve(format!("approver-{i}"))
            } else {
                ApprovalDecision::reject(format!("rejecter-{i}"), "redo it")
            }
            .for_revision(0);
            tasks.push(tokio::spawn(async move { gov.approve(&id, d).await }));
        }
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(status) => won.push(status),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "round {round}: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        let events = ledger(&gov, &id).await;
        assert_eq!(decisions(&events).len(), 1, "round {round}");
        gov.stop(&id).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_wait_ends_timeout_at_its_deadline_and_a_decided_one_does_not() {
    let (store, llm) = (Arc::new(MemoryStore::default()), Prompts::default());
    let settings = {
        let mut conf = ApprovalSettings::default();
        conf.timeout = Some(Duration::from_secs(600));
        conf
    };
    let gov = engine(config(settings), &store, &llm);

    let id = spawn_waiting(&gov).await;
    let waiting_since = tokio::time::Instant::now();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, S::Timeout);
    assert!(waiting_since.elapsed() >= Duration::from_secs(600));
    let failure = rec.failure.unwrap();
    assert!(failure.contains("GOVERNANCE_APPROVAL_TIMEOUT"), "{failure}");
    let events = ledger(&gov, &id).await;
    let deadline = events.iter().find_map(|e| match &e.kind {
        EventKind::ApprovalRequested { deadline, .. } => *deadline,
        _ => None,
    });
    assert!(deadline.is_some(), "approval_requested names its deadline");
    assert!(decisions(&events).is_empty());

    // decided in time: the deadline passing later changes nothing
    let id = spawn_waiting(&gov).await;
    gov.approve(&id, ApprovalDecision::approve("alice"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1200)).await;
    assert_eq!(gov.get(&id).await.unwrap().status, S::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_pipeline_survives_a_restart_waiting_and_keeps_its_reviews() {
    let store = Arc::new(MemoryStore::default());
    let first = Prompts::default();
    let gov = engine(config(ApprovalSettings::default()), &store, &first);
    let id = spawn_waiting(&gov).await;
    let reject = ApprovalDecision::reject("alice", "cover the rollback");
    gov.approve(&id, reject).await.unwrap();
    assert_eq!(
        gov.wait_until_rest(&id).await.unwrap().status,
        S::AwaitingApproval
    );
    gov.shutdown(Duration::from_secs(5)).await;
    drop(gov);

    // a new process: an empty in-memory blackboard, the same system of record
    let second = Prompts::default();
    let gov = engine(config(ApprovalSettings::default()), &store, &second);
    assert_eq!(gov.resume_incomplete().await.unwrap(), vec![id.clone()]);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(gov.get(&id).await.unwrap().status, S::AwaitingApproval);
    assert_eq!(second.llm.calls(), 0, "a waiting pipeline is not run again");
    let events = ledger(&gov, &id).await;
    let resumed = types(&events)
        .iter()
        .rposition(|t| *t == "resumed")
        .unwrap();
    assert!(
        !types(&events[resumed..]).contains(&"agent_spawned"),
        "no agent after the resume"
    );

    // the second rejection's round hears both reviews: the first one read back from the ledger
    let reject = ApprovalDecision::reject("bob", "and name an owner per step");
    assert_eq!(gov.approve(&id, reject).await.unwrap(), S::Orchestrating);
    assert_eq!(
        gov.wait_until_rest(&id).await.unwrap().status,
        S::AwaitingApproval
    );
    let prompt = second
        .alpha
        .lock()
        .first()
        .cloned()
        .expect("ALPHA proposed");
    assert!(prompt.contains("cover the rollback"), "{prompt}");
    assert!(prompt.contains("name an owner per step"), "{prompt}");
    gov.shutdown(Duration::from_secs(5)).await;
    drop(gov);

    // and a third process with a deadline: counted from the request, it ends the wait
    let settings = {
        let mut conf = ApprovalSettings::default();
        conf.timeout = Some(Duration::from_secs(900));
        conf
    };
    let third = Prompts::default();
    let gov = engine(config(settings), &store, &third);
    gov.resume_incomplete().await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    assert_eq!(rec.status, S::Timeout);
    assert_eq!(rec.revisions, 2);
    assert_eq!(third.llm.calls(), 0);
}
