//! `RedisStore::verify` on a ledger someone changed in Redis behind the store's back: each
//! kind of tampering is found and named by pipeline and `seq`, and the intact chain next to
//! them is not reported.

mod common;

use common::{RedisServer, backend};
use governance_core::{Event, EventKind, LedgerStore, PipelineId, PipelineRegistry};
use governance_redis::{LedgerEntry, PipelineKeys};
use redis::AsyncCommands;

fn record(id: &PipelineId) -> governance_core::PipelineRecord {
    let now = chrono::Utc::now();
    let mut r = governance_core::PipelineRecord::new(id.clone(), "tamper", now);
    r.status = governance_core::PipelineStatus::Running;
    r.history = vec![(governance_core::PipelineStatus::Running, now)];
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_tampered_entry_by_pipeline_and_seq() {
    let server = RedisServer::start();
    let store = backend(&server).await.store();
    let ids: Vec<PipelineId> = (0..4).map(|_| PipelineId::generate()).collect();
    for id in &ids {
        PipelineRegistry::upsert(&store, &record(id)).await.unwrap();
        let events: Vec<Event> = (1..=4).map(|s| event(id, s)).collect();
        store.append(&events).await.unwrap();
    }
    let clean = store.verify().await.unwrap();
    assert_eq!(
        (clean.pipelines, clean.entries, clean.broken.len()),
        (4, 16, 0),
        "{clean:?}"
    );

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ledger = |id: &PipelineId| PipelineKeys::new("gov", id).ledger();
    let entry = |json: String| serde_json::from_str::<LedgerEntry>(&json).unwrap();
    let (intact, edited, removed, rehashed) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    // 1. an entry's content is edited in place
    let mut e: LedgerEntry = entry(conn.lindex(ledger(edited), 2).await.unwrap());
    assert_eq!(e.seq, 3);
    e.data = e.data.replace("entry 3", "entry 3, amended");
    let _: () = conn
        .lset(ledger(edited), 2, serde_json::to_string(&e).unwrap())
        .await
        .unwrap();

    // 2. an entry is removed: seq 3 now sits where seq 2 was
    let second: String = conn.lindex(ledger(removed), 1).await.unwrap();
    let _: () = conn.lrem(ledger(removed), 1, second).await.unwrap();

    // 3. an entry is rewritten with a hash recomputed over the new content: it checks out on
    //    its own, but the next entry's `prev` no longer matches
    let first = entry(conn.lindex(ledger(rehashed), 0).await.unwrap());
    let mut e = entry(conn.lindex(ledger(rehashed), 1).await.unwrap());
    e.data = e.data.replace("entry 2", "entry 2, rewritten");
    e.hash = hex(&e.row(rehashed.as_str()).hash(&unhex(&first.hash)));
    let _: () = conn
        .lset(ledger(rehashed), 1, serde_json::to_string(&e).unwrap())
        .await
        .unwrap();

    let report = store.verify().await.unwrap();
    let mut broken = report.broken.clone();
    broken.sort();
    let mut expected = vec![
        (
            edited.to_string(),
            3,
            "hash does not match its content".to_owned(),
        ),
        (
            removed.to_string(),
            2,
            "holds seq 3 at position 2".to_owned(),
        ),
        (
            rehashed.to_string(),
            3,
            "prev hash does not match".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(broken, expected, "{report:?}");
    assert!(
        !report.broken.iter().any(|(p, _, _)| p == intact.as_str()),
        "the intact chain is not reported"
    );
    assert_eq!(report.pipelines, 4);
}
