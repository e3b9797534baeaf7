//! Several engines ("nodes") on one redis-server: the Redis ledger/checkpoint/registry store
//! passes the conformance suites, leases fence an old owner, a node takes over the
//! pipelines of a node that stopped renewing its leases, and the archiver copies a finished
//! pipeline into an archive store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::testkit::{
    checkpoint_suite, failed_commit_leaves_nothing, ledger_suite, registry_suite, state_store_suite,
};
use governance_core::{
    Config, Error, Event, EventKind, Governance, LedgerStore, LocalLlm, LocalLlmConfig, Ownership,
    PipelineId, PipelineStatus, SpawnRequest,
};
use governance_redis::{RedisLeases, RedisStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suites() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    ledger_suite(Arc::new(b.store())).await;
    checkpoint_suite(Arc::new(b.store())).await;
    registry_suite(Arc::new(b.store())).await;
    state_store_suite(Arc::new(b.store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_stale_fencing_token_leaves_nothing_behind() {
    let server = RedisServer::start();
    let lease = Duration::from_secs(60);
    let a = backend(&server).await;
    let (leases_a, store_a) = a.cluster("node-a", lease).unwrap();
    let b = backend(&server).await;
    let (leases_b, _store_b) = b.cluster("node-b", lease).unwrap();
    let id = PipelineId::generate();
    leases_a.claim_new(&id).await.unwrap();
    // after A's first commit, its lease runs out and B takes the pipeline over: A's token is
    // stale when it commits the next status change
    let err = failed_commit_leaves_nothing(Arc::new(store_a), id.clone(), 16, || async {
        expire_lease(&server, &id).await;
        assert!(leases_b.take_over(&id).await.unwrap(), "B takes over");
    })
    .await;
    assert!(matches!(err, Error::Fenced { .. }), "got {err:?}");
}

async fn node(
    server: &RedisServer,
    name: &str,
    lease: Duration,
    latency: Duration,
) -> (Governance, RedisLeases, RedisStore) {
    let b = backend(server).await;
    let (leases, store) = b.cluster(name, lease).expect("cluster parts");
    let store_arc = Arc::new(store.clone());
    let gov = Governance::builder()
        .config({
            let mut conf = Config::default();
            conf.agent_poll_interval = Duration::from_millis(20);
            conf
        })
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(store_arc)
        .ownership(Arc::new(leases.clone()))
        .llm(
            "local",
            Arc::new(LocalLlm::new({
                let mut conf = LocalLlmConfig::default();
                conf.latency = latency;
                conf
            })),
        )
        .build()
        .expect("engine builds");
    (gov, leases, store)
}

fn running_record(id: &PipelineId) -> governance_core::PipelineRecord {
    let now = chrono::Utc::now();
    let mut r = governance_core::PipelineRecord::new(id.clone(), "fencing", now);
    r.status = governance_core::PipelineStatus::Running;
    r.history = vec![(governance_core::PipelineStatus::Running, now)];
    r.model = "local/scripted".into();
    r
}

fn event(id: &PipelineId, seq: u64) -> Event {
    Event {
        seq,
        ts: chrono::Utc::now(),
        kind: EventKind::AgentMessage {
            pipeline_id: id.clone(),
            from: "ALPHA".parse().unwrap(),
            to: "*".into(),
            content: format!("entry {seq}"),
        },
    }
}

/// Lets the lease of `id` run out now (as if its owner stopped renewing it for a whole lease)
/// and waits until Redis no longer has it.
async fn expire_lease(server: &RedisServer, id: &PipelineId) {
    let owner = governance_redis::PipelineKeys::new("gov", id).owner();
    assert_eq!(
        server.raw(&["PEXPIRE", &owner, "1"]).unwrap(),
        ":1",
        "{id} has a lease"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.raw(&["EXISTS", &owner]).unwrap() != ":0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_owner_cannot_write_after_its_lease_was_taken_over() {
    let server = RedisServer::start();
    // a lease no scheduling delay can outlast: it ends only when the test expires it
    let lease = Duration::from_secs(60);
    let a = backend(&server).await;
    let (leases_a, store_a) = a.cluster("node-a", lease).unwrap();
    let b = backend(&server).await;
    let (leases_b, store_b) = b.cluster("node-b", lease).unwrap();
    let id = PipelineId::generate();

    leases_a.claim_new(&id).await.unwrap();
    assert!(
        !leases_b.take_over(&id).await.unwrap(),
        "a held lease cannot be taken"
    );
    governance_core::PipelineRegistry::upsert(&store_a, &running_record(&id))
        .await
        .unwrap();
    store_a.append(&[event(&id, 1)]).await.unwrap();

    // node A "pauses": it stops renewing; its lease expires and B takes the pipeline over
    expire_lease(&server, &id).await;
    assert!(leases_b.take_over(&id).await.unwrap(), "B takes over");
    store_b.append(&[event(&id, 2)]).await.unwrap();

    // A wakes up and writes with its old token: refused, nothing changes
    let err = store_a.append(&[event(&id, 3)]).await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "got {err:?}");
    assert_eq!(store_b.last_seq(&id).await.unwrap(), 2);
    // its renewal tells it the lease is lost, and it cannot take it back
    assert!(
        leases_a.renew_all().await.unwrap().is_empty(),
        "A no longer holds it"
    );
    assert!(!leases_a.take_over(&id).await.unwrap());
    // the new owner goes on, and the chain is intact
    store_b.append(&[event(&id, 3)]).await.unwrap();
    let report = store_b.verify().await.unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_over_the_pipelines_of_a_node_that_went_silent() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(600);
    // node A runs pipelines but never renews its leases (as if frozen or killed)
    let (gov_a, _leases_a, _store_a) =
        node(&server, "node-a", lease, Duration::from_millis(250)).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            gov_a
                .spawn(SpawnRequest::new(format!("takeover objective {i}")))
                .await
                .unwrap(),
        );
    }
    // node B scans, adopts them once A's leases expire, and finishes them
    let (gov_b, leases_b, store_b) = node(&server, "node-b", lease, Duration::from_millis(1)).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let runner = tokio::spawn(leases_b.clone().run(gov_b.clone(), cancel.clone()));
    for id in &ids {
        let rec = loop {
            let rec = gov_b.get(id).await.unwrap();
            if rec.status.is_terminal() {
                break rec;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            rec.status,
            PipelineStatus::Completed,
            "{id}: {:?}",
            rec.failure
        );
        // the ledger is gap-free and has exactly one consensus
        let events = gov_b.events(id, 0, 10_000).await.unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "{id}: gap-free");
        }
        let consensus = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ConsensusReached { .. }))
            .count();
        assert!(consensus <= 1, "{id}: consensus decided {consensus} times");
    }
    let report = store_b.verify().await.unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    assert!(store_b.active_ids().await.unwrap().is_empty());
    cancel.cancel();
    runner.await.unwrap();
    // A, still holding its Live copies, is fenced out: its pipelines end there without
    // writing anything more (they are dropped, not marked failed in the shared registry)
    gov_a.shutdown(Duration::from_secs(5)).await;
    for id in &ids {
        assert_eq!(
            store_b.get_record(id).await.status,
            PipelineStatus::Completed
        );
    }
}

trait GetRecord {
    async fn get_record(&self, id: &PipelineId) -> governance_core::PipelineRecord;
}

impl GetRecord for RedisStore {
    async fn get_record(&self, id: &PipelineId) -> governance_core::PipelineRecord {
        governance_core::PipelineRegistry::get(self, id)
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_and_stop_sent_to_another_node_are_carried_out_by_the_owner() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(900);
    // slow enough that the orchestration is still running when the stop arrives
    let (gov_a, leases_a, _) = node(&server, "node-a", lease, Duration::from_millis(500)).await;
    let (gov_b, leases_b, _) = node(&server, "node-b", lease, Duration::from_millis(500)).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let ra = tokio::spawn(leases_a.clone().run(gov_a.clone(), cancel.clone()));
    let rb = tokio::spawn(leases_b.clone().run(gov_b.clone(), cancel.clone()));
    let mut req = SpawnRequest::new("rest at the report, then continue elsewhere");
    req.auto_continue = Some(false);
    let id = gov_a.spawn(req).await.unwrap();
    assert_eq!(
        gov_a.wait_until_rest(&id).await.unwrap().status,
        PipelineStatus::Report
    );
    assert_eq!(gov_b.live_count(), 0, "node B does not run it");
    // B's live feed carries A's events (relayed through Redis)
    let mut feed_b = gov_b.subscribe();

    gov_b
        .continue_pipeline(&id, governance_core::ContinueRequest::default())
        .await
        .expect("B hands the continue to A");
    let rec = gov_b.get(&id).await.unwrap();
    assert_ne!(rec.status, PipelineStatus::Report, "A continued it");
    assert_eq!(leases_a.owned(), vec![id.clone()], "A still owns it");

    let status = gov_b.stop(&id).await.expect("B hands the stop to A");
    assert_eq!(status, PipelineStatus::Stopped);
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), feed_b.recv())
            .await
            .expect("B's live feed goes on")
            .expect("B's live feed is open");
        if e.pipeline_id() != &id {
            continue;
        }
        seen.push(e.seq);
        if matches!(
            e.kind,
            EventKind::StatusChanged {
                status: PipelineStatus::Stopped,
                ..
            }
        ) {
            break;
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "relayed events arrive in seq order: {seen:?}"
    );
    let events = gov_a.events(&id, 0, 10_000).await.unwrap();
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::StatusChanged {
            status: PipelineStatus::Stopped,
            ..
        }
    )));
    cancel.cancel();
    ra.await.unwrap();
    rb.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_claimed_by_a_node_that_died_before_writing_is_dropped_from_the_index() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(300);
    let (leases_a, store) = backend(&server).await.cluster("node-a", lease).unwrap();
    let (leases_b, _) = backend(&server).await.cluster("node-b", lease).unwrap();
    let id = PipelineId::generate();
    leases_a.claim_new(&id).await.unwrap();
    assert_eq!(store.active_ids().await.unwrap(), vec![id.clone()]);
    // A dies before its first write; once the lease is gone there is nothing to resume
    tokio::time::sleep(lease * 3).await;
    assert!(!leases_b.take_over(&id).await.unwrap());
    assert!(
        store.active_ids().await.unwrap().is_empty(),
        "no node keeps scanning it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_copies_a_finished_pipeline_into_the_archive_and_dequeues_it() {
    use governance_core::{MemoryStore, PipelineRegistry as _};
    use governance_redis::Archiver;
    use governance_redis::cluster::archive_pipeline;

    let server = RedisServer::start();
    let b = backend(&server).await;
    let lease = Duration::from_secs(60);
    let (leases, store) = b.cluster("node-a", lease).unwrap();
    let id = PipelineId::generate();
    leases.claim_new(&id).await.unwrap();
    store
        .append(&[event(&id, 1), event(&id, 2), event(&id, 3)])
        .await
        .unwrap();
    let mut done = running_record(&id);
    done.status = PipelineStatus::Completed;
    done.last_seq = 3;
    // a terminal record in cluster mode queues the pipeline for archiving
    store.upsert(&done).await.unwrap();
    assert!(
        store
            .unarchived(Duration::ZERO)
            .await
            .unwrap()
            .contains(&id)
    );

    let archive = Arc::new(MemoryStore::new());
    let (tx, finished) = tokio::sync::mpsc::unbounded_channel();
    tx.send(id.clone()).unwrap();
    drop(tx);
    // returns once `finished` is closed and drained
    Archiver::new(store.clone(), Some(archive.clone()), "node-a", lease)
        .run(finished, tokio_util::sync::CancellationToken::new())
        .await;

    let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(archive.read(&id, 0, 100).await.unwrap()), [1, 2, 3]);
    assert_eq!(
        archive.get(&id).await.unwrap().map(|r| r.status),
        Some(PipelineStatus::Completed)
    );
    assert_eq!(
        store.archived_by(&id).await.unwrap().as_deref(),
        Some("node-a")
    );
    assert!(
        !store
            .unarchived(Duration::ZERO)
            .await
            .unwrap()
            .contains(&id)
    );

    // copying it again adds nothing
    archive_pipeline(&store, &*archive, &id).await.unwrap();
    assert_eq!(seqs(archive.read(&id, 0, 100).await.unwrap()), [1, 2, 3]);
}
