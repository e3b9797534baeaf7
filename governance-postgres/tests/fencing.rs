//! Ownership leases and fencing on the real server: a write carrying a stale fencing token is
//! refused by the database (in the write's own transaction) with `Error::Fenced`, and nothing
//! of it is stored.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governance_core::testkit::failed_commit_leaves_nothing;
use governance_core::{
    AgentId, Error, Event, EventKind, LedgerStore, Ownership, PipelineId, PipelineRecord,
    PipelineRegistry,
};

const LEASE: Duration = Duration::from_secs(30);

fn message(p: &PipelineId, seq: u64) -> Event {
    Event {
        seq,
        ts: Utc::now(),
        kind: EventKind::AgentMessage {
            pipeline_id: p.clone(),
            from: AgentId::new("ALPHA").unwrap(),
            to: "*".into(),
            content: format!("m{seq}"),
        },
    }
}

/// Ends `p`'s lease now (as if its owner had stopped renewing it for a whole lease).
async fn expire(db: &common::TestSchema, p: &PipelineId) {
    db.exec(&format!(
        "UPDATE leases SET expires_at = clock_timestamp() - interval '1 second' \
         WHERE pipeline_id = '{p}'"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_with_a_stale_token_is_refused_and_leaves_nothing() {
    let db = common::TestSchema::new();
    let store = db.store().await;
    let (a, a_store) = store.cluster("node-a", LEASE).unwrap();
    let (b, _b_store) = store.cluster("node-b", LEASE).unwrap();
    let p = PipelineId::generate();
    a.claim_new(&p).await.unwrap();
    let err = failed_commit_leaves_nothing(Arc::new(a_store), p.clone(), 16, || async {
        expire(&db, &p).await;
        assert!(
            b.take_over(&p).await.unwrap(),
            "node b takes the pipeline over"
        );
    })
    .await;
    assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    // the lease row says b, and a's renewal learns it lost the lease
    assert_eq!(a.renew_all().await.unwrap(), vec![p.clone()]);
    assert!(a.owned().is_empty());
    assert_eq!(b.owned(), vec![p]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_a_takeover_stop_at_it_and_the_new_owner_continues() {
    let db = common::TestSchema::new();
    let store = db.store().await;
    let (a, a_store) = store.cluster("node-a", LEASE).unwrap();
    let (b, b_store) = store.cluster("node-b", LEASE).unwrap();
    let p = PipelineId::generate();
    a.claim_new(&p).await.unwrap();
    a_store
        .upsert(&PipelineRecord::new(p.clone(), "objective", Utc::now()))
        .await
        .unwrap();
    // node a appends one event after another while b takes the pipeline over
    let writer = {
        let (a_store, p) = (a_store.clone(), p.clone());
        tokio::spawn(async move {
            let mut seq = 1;
            loop {
                match a_store.append(&[message(&p, seq)]).await {
                    Ok(()) => seq += 1,
                    Err(e) => return (seq - 1, e),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    expire(&db, &p).await;
    assert!(b.take_over(&p).await.unwrap());
    let (written, err) = writer.await.unwrap();
    assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    // everything node a was told was written is there, and nothing after it
    let stored = b_store.last_seq(&p).await.unwrap();
    assert_eq!(stored, written, "acknowledged writes = stored writes");
    b_store.append(&[message(&p, stored + 1)]).await.unwrap();
    assert!(matches!(
        a_store.append(&[message(&p, stored + 2)]).await,
        Err(Error::Fenced { .. })
    ));
    assert!(store.verify().await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_owner_at_a_time() {
    let db = common::TestSchema::new();
    let store = db.store().await;
    let (a, a_store) = store.cluster("node-a", LEASE).unwrap();
    let nodes: Vec<_> = (0..6)
        .map(|i| store.cluster(&format!("node-{i}"), LEASE).unwrap())
        .collect();
    let p = PipelineId::generate();
    a.claim_new(&p).await.unwrap();
    a_store
        .upsert(&PipelineRecord::new(p.clone(), "objective", Utc::now()))
        .await
        .unwrap();
    // a live lease cannot be claimed or taken over
    let (other, other_store) = &nodes[0];
    assert!(matches!(other.claim_new(&p).await, Err(Error::Conflict(_))));
    assert!(!other.take_over(&p).await.unwrap());
    // a store of a node that holds no lease is refused before it reaches the database
    assert!(matches!(
        other_store.append(&[message(&p, 1)]).await,
        Err(Error::Fenced { .. })
    ));
    // once it expired, exactly one of six racing nodes wins
    expire(&db, &p).await;
    let races: Vec<_> = nodes
        .iter()
        .map(|(l, _)| {
            let (l, p) = (l.clone(), p.clone());
            tokio::spawn(async move { l.take_over(&p).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for r in races {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);
    // a terminal pipeline is not taken over, and its lease is let go
    let (winner, winner_store) = nodes.iter().find(|(l, _)| !l.owned().is_empty()).unwrap();
    let mut done = PipelineRecord::new(p.clone(), "objective", Utc::now());
    done.status = governance_core::PipelineStatus::Completed;
    winner_store.upsert(&done).await.unwrap();
    winner.release(&p, true).await;
    assert!(!a.take_over(&p).await.unwrap());
    assert!(a.owned().is_empty());
}
