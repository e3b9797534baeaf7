//! The hash chain: `verify` on intact and tampered files, concurrency, persistence.

mod common;

use std::sync::Arc;

use common::{message, pid};
use governance_core::{ErrorKind, LedgerStore, PipelineId};
use governance_sqlite::verify;

#[tokio::test]
async fn verify_reports_an_intact_ledger() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    for name in ["a", "b"] {
        let p = pid(name);
        let events: Vec<_> = (1..=5).map(|s| message(&p, s, "hi")).collect();
        store.append(&events).await.expect("append");
    }
    let report = verify(&db.path).expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.pipelines, report.entries), (2, 10));
    assert!(report.warnings.is_empty(), "{report}");
}

#[tokio::test]
async fn updates_and_deletes_of_ledger_rows_are_refused() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    store
        .append(&[message(&pid("p"), 1, "x")])
        .await
        .expect("append");
    let raw = rusqlite::Connection::open(&db.path).expect("raw open");
    let update = raw.execute("UPDATE ledger SET data = '{}' WHERE seq = 1", []);
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = raw.execute("DELETE FROM ledger", []);
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test]
async fn verify_names_a_tampered_entry() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    let (a, b) = (pid("a-pipeline"), pid("b-pipeline"));
    for p in [&a, &b] {
        let events: Vec<_> = (1..=6).map(|s| message(p, s, &format!("m{s}"))).collect();
        store.append(&events).await.expect("append");
    }
    store.close().await.expect("close");

    let raw = rusqlite::Connection::open(&db.path).expect("raw open");
    raw.execute_batch("DROP TRIGGER ledger_no_update")
        .expect("drop trigger");
    let changed = raw
        .execute(
            "UPDATE ledger SET data = replace(data, 'm4', 'forged') \
             WHERE pipeline_id = 'b-pipeline' AND seq = 4",
            [],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(raw);

    let report = verify(&db.path).expect("verify");
    assert!(!report.is_intact());
    let first = report.first_broken().expect("a broken entry");
    assert_eq!((first.pipeline_id.as_str(), first.seq), ("b-pipeline", 4));
    assert!(first.reason.contains("hash"), "{first}");
    assert_eq!(report.broken.len(), 1, "pipeline a is intact: {report}");
    assert!(report.to_string().contains("b-pipeline seq 4"), "{report}");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("ledger_no_update")),
        "{report}"
    );
}

#[tokio::test]
async fn verify_names_a_deleted_entry() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    let p = pid("p");
    let events: Vec<_> = (1..=5).map(|s| message(&p, s, "m")).collect();
    store.append(&events).await.expect("append");
    let raw = rusqlite::Connection::open(&db.path).expect("raw open");
    raw.execute_batch("DROP TRIGGER ledger_no_delete; DELETE FROM ledger WHERE seq = 3;")
        .expect("tamper");
    let report = verify(&db.path).expect("verify");
    let first = report.first_broken().expect("broken");
    assert_eq!(first.seq, 4, "{report}");
    assert!(first.reason.contains("missing"), "{first}");
}

#[tokio::test]
async fn events_survive_reopening_the_file() {
    let db = common::temp_db();
    let p = pid("persisted");
    let events: Vec<_> = (1..=3).map(|s| message(&p, s, "kept")).collect();
    {
        let store = common::open(&db).await;
        store.append(&events).await.expect("append");
        // No close: an acknowledged write is committed, whatever happens to the handle.
        drop(store);
    }
    let store = common::open(&db).await;
    assert_eq!(store.last_seq(&p).await.expect("last"), 3);
    assert_eq!(store.read(&p, 0, 10).await.expect("read"), events);
    store
        .append(&[message(&p, 4, "more")])
        .await
        .expect("append after reopen");
    assert!(verify(&db.path).expect("verify").is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_pipelines_lose_no_rows() {
    const PIPELINES: usize = 1000;
    const EVENTS: u64 = 10;
    let db = common::temp_db();
    let store = Arc::new(common::open(&db).await);
    let tasks: Vec<_> = (0..PIPELINES)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let p = PipelineId::new(format!("pipeline-{i:04}")).expect("id");
                for seq in 1..=EVENTS {
                    store
                        .append(&[message(&p, seq, &format!("{i}/{seq}"))])
                        .await
                        .expect("append");
                }
                p
            })
        })
        .collect();
    for task in tasks {
        let p = task.await.expect("task");
        assert_eq!(store.last_seq(&p).await.expect("last"), EVENTS, "{p}");
    }
    let report = verify(&db.path).expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.pipelines, PIPELINES as u64);
    assert_eq!(report.entries, PIPELINES as u64 * EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_batch_does_not_fail_other_callers_in_the_same_group() {
    let db = common::temp_db();
    let store = Arc::new(common::open(&db).await);
    // Half of the callers send a batch with a gap, half a valid one, all at once, so many
    // share a group commit.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let p = PipelineId::new(format!("p{i}")).expect("id");
                let batch = if i % 2 == 0 {
                    vec![message(&p, 1, "a"), message(&p, 2, "b")]
                } else {
                    vec![message(&p, 1, "a"), message(&p, 3, "gap")]
                };
                (i, p, store.append(&batch).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, p, result) = task.await.expect("task");
        let last = store.last_seq(&p).await.expect("last");
        if i % 2 == 0 {
            result.expect("valid batch");
            assert_eq!(last, 2);
        } else {
            assert_eq!(result.expect_err("gap").kind(), ErrorKind::Conflict);
            assert_eq!(last, 0, "nothing of a rejected batch is stored");
        }
    }
    assert!(verify(&db.path).expect("verify").is_intact());
}
