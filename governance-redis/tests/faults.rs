//! Races across connections, server restarts and pub/sub reconnects on a real redis-server.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{RedisServer, backend};
use futures::StreamExt;
use governance_core::{AgentId, Error, Message, PipelineId, Proposal, ProposalId, Vote};

fn agent(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

fn vote(voter: &str) -> Vote {
    Vote {
        voter: agent(voter),
        approve: true,
        score: 0.9,
        rationale: "ok".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_on_two_connections_racing_votes_never_double_count() {
    let server = RedisServer::start();
    // Two backends = two independent connections (as two processes would have).
    let (a, b) = (backend(&server).await, backend(&server).await);
    let (bb_a, bb_b) = (a.blackboard(), b.blackboard());
    let p = PipelineId::generate();
    for round in 0..20 {
        let id = ProposalId::new(format!("prop-{round}")).unwrap();
        bb_a.create_proposal(&p, Proposal::new(id.clone(), agent("ALPHA"), "t", "c"))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let bb = if i % 2 == 0 {
                bb_a.clone()
            } else {
                bb_b.clone()
            };
            let (p, id) = (p.clone(), id.clone());
            // Voters V0..V4, each voting twice (once per connection).
            tasks.push(tokio::spawn(async move {
                bb.vote(&p, &id, vote(&format!("V{}", i / 2)), three())
                    .await
                    .unwrap()
            }));
        }
        let outcomes: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let recorded = outcomes.iter().filter(|o| o.recorded).count();
        assert_eq!(recorded, 5, "round {round}: each of 5 voters counted once");
        let stored = bb_b.proposal(&p, &id).await.unwrap();
        assert_eq!(stored.approvals(), 5, "round {round}");
        let decided = outcomes.iter().filter(|o| o.consensus.is_some()).count();
        assert_eq!(
            decided,
            usize::from(round == 0),
            "round {round}: one consensus per pipeline"
        );
    }
    let consensus = bb_a.consensus(&p).await.unwrap().expect("consensus");
    assert_eq!(consensus.proposal_id.as_str(), "prop-0");
    assert_eq!(consensus.votes, 3);
}

fn assert_retryable_backend(e: &Error, what: &str) {
    assert!(
        matches!(
            e,
            Error::Backend {
                backend: "redis",
                retryable: true,
                ..
            }
        ),
        "{what}: expected a retryable redis backend error, got {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_fail_retryably_while_redis_is_down_and_work_after_restart() {
    let mut server = RedisServer::start();
    let mut config = governance_redis::RedisConfig::new(server.url());
    // Give up on the outage quickly: this test wants the errors.
    config.outage_timeout = Duration::from_millis(300);
    let b = governance_redis::RedisBackend::connect(config)
        .await
        .expect("connect");
    let (bb, bus) = (b.blackboard(), b.bus());
    let p = PipelineId::generate();
    let id = ProposalId::new("p1").unwrap();
    bb.create_proposal(&p, Proposal::new(id.clone(), agent("ALPHA"), "t", "c"))
        .await
        .unwrap();
    bb.vote(&p, &id, vote("V1"), three()).await.unwrap();
    assert_eq!(
        bus.publish(&p, Message::new(agent("A"), "*", "t", "1"))
            .await
            .unwrap(),
        1
    );

    server.stop_saving();
    // The first command notices the lost connection (a read: retryable either way).
    let first = bb.proposals(&p).await.expect_err("server is down");
    assert_retryable_backend(&first, "first read while down");
    // From then on nothing reaches the server: every operation is retryable, writes included.
    let e = bb
        .vote(&p, &id, vote("V2"), three())
        .await
        .expect_err("down");
    assert_retryable_backend(&e, "vote while down");
    let e = bus
        .publish(&p, Message::new(agent("A"), "*", "t", "2"))
        .await
        .expect_err("down");
    assert_retryable_backend(&e, "publish while down");
    let e = bb
        .add_solution(
            &p,
            governance_core::Solution {
                agent: agent("BETA"),
                proposal_id: None,
                content: "s".into(),
                created_at: chrono::Utc::now(),
            },
        )
        .await
        .expect_err("down");
    assert_retryable_backend(&e, "add_solution while down");
    assert!(!e.to_string().contains("s3cret"));

    server.start_again();
    // Same backend object: it reconnects by itself (bounded number of attempts, no timing).
    let mut outcome = None;
    for _ in 0..100 {
        match bb.vote(&p, &id, vote("V2"), three()).await {
            Ok(o) => {
                outcome = Some(o);
                break;
            }
            Err(e) => {
                assert_retryable_backend(&e, "vote while reconnecting");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let outcome = outcome.expect("vote succeeds after the restart");
    assert!(outcome.recorded);
    assert_eq!(
        outcome.approvals, 2,
        "the vote acknowledged before the restart is kept"
    );
    let o3 = bb.vote(&p, &id, vote("V3"), three()).await.unwrap();
    assert!(
        o3.consensus.is_some(),
        "the scripts were reloaded after NOSCRIPT"
    );
    assert_eq!(
        bus.publish(&p, Message::new(agent("A"), "*", "t", "2"))
            .await
            .unwrap(),
        2
    );
    let log = bus.read(&p, 0, 10).await.unwrap();
    assert_eq!(log.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_whose_connection_dies_resubscribes_and_replays_what_it_missed() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let bus = b.bus();
    let p = PipelineId::generate();
    let mut live = bus.subscribe(&p).await.unwrap();
    let publish = |n: u32| {
        let (bus, p) = (bus.clone(), p.clone());
        async move {
            bus.publish(&p, Message::new(agent("A"), "*", "t", n.to_string()))
                .await
                .unwrap()
        }
    };
    let mut seen = BTreeSet::new();
    publish(0).await;
    let m = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("first live message")
        .expect("stream open");
    seen.insert(m.seq);

    // Kill the pub/sub connection on the server side.
    let killed = server.raw(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    assert_ne!(killed, ":0", "a pub/sub client was connected");
    // Publish while it reconnects (these may be missed live) ...
    for n in 1..=5 {
        publish(n).await;
    }
    // ... then keep publishing until the resubscribed stream delivers something.
    let mut last_published = 6;
    let mut resubscribed = false;
    for n in 6..200 {
        last_published = publish(n).await;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), live.next()).await {
            seen.insert(m.seq);
            resubscribed = true;
            break;
        }
    }
    assert!(
        resubscribed,
        "the live stream resumed after the connection was killed"
    );
    // Drain what is already queued, then fill every gap from the log.
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), live.next()).await {
        seen.insert(m.seq);
    }
    let mut after = 0;
    loop {
        let page = bus.read(&p, after, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        seen.extend(page.iter().map(|m| m.seq));
    }
    let expected: BTreeSet<u64> = (1..=last_published).collect();
    assert_eq!(seen, expected, "live + replay covers every message exactly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribing_while_redis_is_down_is_a_retryable_error() {
    let mut server = RedisServer::start();
    let b = backend(&server).await;
    let bus = b.bus();
    server.kill();
    let Err(e) = bus.subscribe(&PipelineId::generate()).await else {
        panic!("subscribed while the server is down");
    };
    assert_retryable_backend(&e, "subscribe while down");
}

#[tokio::test]
async fn errors_and_debug_never_show_the_password() {
    let config = governance_redis::RedisConfig::new("redis://:hunter2pw@127.0.0.1:1");
    assert!(!format!("{config:?}").contains("hunter2pw"));
    let e = governance_redis::RedisBackend::connect(config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(e.is_retryable(), "connection refused is retryable: {e}");
    assert!(!e.to_string().contains("hunter2pw"), "{e}");
    let bad = governance_redis::RedisBackend::connect(governance_redis::RedisConfig::new(
        "redis://:hunter2pw@[bad",
    ))
    .await
    .expect_err("bad url");
    assert!(!bad.to_string().contains("hunter2pw"), "{bad}");
    assert!(!format!("{bad:?}").contains("hunter2pw"), "{bad:?}");
}

fn three() -> &'static governance_core::ConsensusRule {
    static RULE: std::sync::LazyLock<governance_core::ConsensusRule> =
        std::sync::LazyLock::new(|| {
            governance_core::ConsensusRule::new(
                governance_core::Quorum::new(3).expect("a quorum of 3"),
            )
        });
    &RULE
}
