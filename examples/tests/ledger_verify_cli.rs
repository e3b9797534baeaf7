//! `governance ledger verify --db PATH` on a real file: intact, tampered, missing.

use std::path::Path;
use std::process::{Command, Output};

use governance_core::{Event, LedgerStore, PipelineId};
use governance_sqlite::SqliteStore;

const ORIGINAL: &[u8] = b"original-text-of-message-3";
const FORGED: &[u8] = b"FORGED!!-text-of-message-3";

fn verify_cli(db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["ledger", "verify", "--db"])
        .arg(db)
        .env_remove("GOVERNANCE_DB")
        .output()
        .expect("run the governance binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn message(p: &PipelineId, seq: u64) -> Event {
    let content = if seq == 3 && p.as_str() == "pipeline-a" {
        text(ORIGINAL)
    } else {
        format!("message {seq}")
    };
    serde_json::from_value(serde_json::json!({
        "type": "agent_message",
        "seq": seq,
        "ts": format!("2026-01-01T00:00:{seq:02}Z"),
        "data": {"pipeline_id": p.as_str(), "from": "ALPHA", "to": "*", "content": content},
    }))
    .expect("event")
}

/// A closed database with two pipelines of five entries each (WAL folded into the file).
async fn ledger_file(path: &Path) {
    let store = SqliteStore::open(path).await.expect("open");
    for name in ["pipeline-a", "pipeline-b"] {
        let p = PipelineId::new(name).expect("id");
        let events: Vec<Event> = (1..=5).map(|s| message(&p, s)).collect();
        store.append(&events).await.expect("append");
    }
    store.close().await.expect("close");
}

#[tokio::test]
async fn verify_exits_zero_on_an_intact_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("good.sqlite");
    ledger_file(&db).await;
    let out = verify_cli(&db);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ledger intact (10 entries in 2 pipelines)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn verify_exits_non_zero_naming_the_tampered_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("tampered.sqlite");
    ledger_file(&db).await;
    // Edit the bytes of the file the way someone with a hex editor would: SQLite itself keeps
    // no checksum of the page, only the hash chain notices.
    let mut bytes = std::fs::read(&db).expect("read the file");
    let at = bytes
        .windows(ORIGINAL.len())
        .position(|w| w == ORIGINAL)
        .expect("the message text is in the database file");
    bytes[at..at + FORGED.len()].copy_from_slice(FORGED);
    std::fs::write(&db, bytes).expect("write the tampered file");

    let out = verify_cli(&db);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("BROKEN in 1 of 2 pipelines"), "{stdout}");
    assert!(
        stderr.contains("first broken entry: pipeline pipeline-a seq 3: hash does not match"),
        "{stderr}"
    );
}

#[tokio::test]
async fn verify_exits_two_naming_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("missing.sqlite");
    let out = verify_cli(&db);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.sqlite"), "{stderr}");
}
