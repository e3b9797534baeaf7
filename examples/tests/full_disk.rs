//! A full disk under the SQLite ledger (issue 15, item 3), with real parts: the store's size cap
//! (`PRAGMA max_page_count`, which yields the same `SQLITE_FULL` as a full disk, on the same
//! code path) is filled by another connection on the same file while 20 pipelines run, then
//! freed again. The pipelines wait for the disk and finish by themselves; `/readyz` goes
//! 503 (naming the ledger) and back to 200.

mod outage_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use governance_core::{
    Governance, LedgerStore, LocalLlm, LocalLlmConfig, PipelineId, PipelineRegistry, PipelineStatus,
};
use governance_sqlite::{SqliteOptions, SqliteStore};
use outage_support::{Server, wait_until};

/// The size cap of the test database: small, so a filler reaches it at once.
const CAP_BYTES: u64 = 2 * 1024 * 1024;
const PAGE: u64 = 4096;

/// Another connection on the same file takes every page the size cap leaves, as another
/// program filling the disk would; `DELETE FROM filler` frees them again.
fn fill(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    // no fsync per insert: the filler is quick even on a loaded machine
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn.pragma_update(
        None,
        "max_page_count",
        i64::try_from(CAP_BYTES / PAGE).unwrap(),
    )
    .unwrap();
    conn.execute_batch("CREATE TABLE filler (b BLOB)").unwrap();
    for chunk in [65_536, 4096, 512, 64] {
        loop {
            match conn.execute("INSERT INTO filler VALUES (zeroblob(?1))", [chunk]) {
                Ok(_) => {}
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => break,
                Err(e) => panic!("filling the database: {e}"),
            }
        }
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_running_pipelines_until_space_returns_then_they_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("governance.db");
    let store = Arc::new(
        SqliteStore::open_with(&db, {
            let mut conf = SqliteOptions::default();
            conf.max_size_bytes = Some(CAP_BYTES);
            conf
        })
        .await
        .unwrap(),
    );
    // paced, so the pipelines are still running when the disk fills
    let llm = LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.latency = Duration::from_millis(250);
        conf
    });
    let gov = Governance::builder()
        .store(store.clone())
        .llm("local", Arc::new(llm))
        .build()
        .unwrap();
    let server = Server::start(gov.clone(), Vec::new()).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (code, body) = server.spawn().await;
        assert_eq!(code, 201, "{body}");
        ids.push(PipelineId::new(body["pipeline_id"].as_str().unwrap()).unwrap());
    }
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 200, "{body}");

    let filler = fill(&db);
    assert!(
        gov.live_count() > 0,
        "every pipeline ended before the disk filled: pace the LLM more"
    );

    // the ledger cannot write: readiness says so (503 with the reason) ...
    wait_until(
        Duration::from_secs(60),
        "/readyz reports the ledger",
        || async {
            let (code, body) = server.get("/readyz").await;
            let msg = body["error"]["message"].as_str().unwrap_or_default();
            if code == 503 && msg.contains("ledger") && msg.contains("full") {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    // ... and every pipeline still running waits for the disk instead of dying
    wait_until(
        Duration::from_secs(60),
        "every running pipeline waits to write",
        || async {
            let (live, waiting) = (gov.live_count(), gov.pipelines_waiting_to_write());
            if live > 0 && waiting == live {
                Ok(())
            } else {
                Err(format!("{waiting} of {live} running pipelines wait"))
            }
        },
    )
    .await;
    let held = gov.live_count();
    // a new spawn is refused at once (or fits in what is left), never hangs or fails with 500
    let (code, body) = server.spawn().await;
    assert!(code == 503 || code == 201, "{code} {body}");
    eprintln!("{held} running pipelines waited for the disk; a spawn meanwhile got {code}");
    if code == 201 {
        ids.push(PipelineId::new(body["pipeline_id"].as_str().unwrap()).unwrap());
    } else {
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("full"),
            "{body}"
        );
    }

    // space returns: the pipelines go on by themselves and finish
    filler.execute("DELETE FROM filler", []).unwrap();
    drop(filler);
    wait_until(
        Duration::from_secs(120),
        "every pipeline finished",
        || async {
            for id in &ids {
                let rec = store.get(id).await.map_err(|e| e.to_string())?;
                match rec {
                    Some(r) if r.status.is_terminal() => {}
                    other => return Err(format!("{id}: {:?}", other.map(|r| r.status))),
                }
            }
            Ok(())
        },
    )
    .await;
    for id in &ids {
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            rec.status,
            PipelineStatus::Completed,
            "{id} ended {} ({:?}) though only the disk was full for a while",
            rec.status,
            rec.failure
        );
        let events = store.read(id, 0, 100_000).await.unwrap();
        let last_status = events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                governance_core::EventKind::StatusChanged { status, .. } => Some(*status),
                _ => None,
            })
            .expect("status events");
        assert_eq!(
            last_status, rec.status,
            "{id}: registry and ledger disagree"
        );
        assert_eq!(
            events.last().map(|e| e.seq),
            Some(rec.last_seq),
            "{id}: the registry's record is not the ledger's last state"
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "{id}: gap in the ledger");
        }
    }
    let report = governance_sqlite::verify(&db).unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    assert!(held > 0);
    wait_until(
        Duration::from_secs(30),
        "/readyz is ready again",
        || async {
            let (code, body) = server.get("/readyz").await;
            if code == 200 {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
}
