//! Bad files and paths give clear errors naming the file, never a panic.

mod common;

use std::os::unix::fs::PermissionsExt;

use governance_core::{Error, ErrorKind, LedgerStore};
use governance_sqlite::{SCHEMA_VERSION, SqliteOptions, SqliteStore, verify};

fn backend_message(err: &Error) -> &str {
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    match err {
        Error::Backend {
            backend, message, ..
        } => {
            assert_eq!(*backend, "sqlite");
            message
        }
        other => panic!("not a backend error: {other}"),
    }
}

#[tokio::test]
async fn a_non_sqlite_file_is_refused_naming_the_file() {
    let db = common::temp_db();
    std::fs::write(
        &db.path,
        b"this is not a database, just some garbage bytes ....".repeat(100),
    )
    .expect("write garbage");
    let err = SqliteStore::open(&db.path).await.expect_err("garbage file");
    let message = backend_message(&err);
    assert!(
        message.contains(&db.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("not a SQLite database"), "{message}");
    // the error keeps SQLite's own error as its source
    let source = std::error::Error::source(&err).expect("a source");
    let sqlite = source
        .downcast_ref::<rusqlite::Error>()
        .expect("the rusqlite error");
    assert_eq!(
        sqlite.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    );
    let err = verify(&db.path).expect_err("verify garbage");
    assert!(
        err.to_string().contains(&db.path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_path_that_cannot_be_created_is_refused_naming_it() {
    let db = common::temp_db();
    let path = db.dir.path().join("no-such-dir").join("db.sqlite");
    let err = SqliteStore::open(&path).await.expect_err("missing dir");
    let message = backend_message(&err);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(!err.is_retryable());

    let err = SqliteStore::open(db.dir.path())
        .await
        .expect_err("a directory");
    assert!(backend_message(&err).contains("directory"), "{err}");
}

#[tokio::test]
async fn a_read_only_file_is_refused_naming_it() {
    let db = common::temp_db();
    common::open(&db).await.close().await.expect("close");
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let err = SqliteStore::open(&db.path)
        .await
        .expect_err("read-only file");
    let message = backend_message(&err);
    assert!(
        message.contains(&db.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("read-only"), "{message}");
    // verify only reads, so it works on a read-only file.
    assert!(verify(&db.path).expect("verify read-only").is_intact());
}

#[tokio::test]
async fn a_newer_schema_is_refused_naming_both_versions() {
    let db = common::temp_db();
    common::open(&db).await.close().await.expect("close");
    let newer = SCHEMA_VERSION + 5;
    rusqlite::Connection::open(&db.path)
        .expect("raw")
        .pragma_update(None, "user_version", newer)
        .expect("bump version");
    let err = SqliteStore::open(&db.path).await.expect_err("newer schema");
    let message = backend_message(&err);
    assert!(
        message.contains(&db.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("version {newer}")), "{message}");
    assert!(
        message.contains(&format!("version {SCHEMA_VERSION}")),
        "{message}"
    );
    assert!(verify(&db.path).is_err());
}

#[tokio::test]
async fn another_applications_database_is_left_alone() {
    let db = common::temp_db();
    rusqlite::Connection::open(&db.path)
        .expect("raw")
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        .expect("foreign table");
    let err = SqliteStore::open(&db.path).await.expect_err("foreign db");
    assert!(
        backend_message(&err).contains("another application"),
        "{err}"
    );
}

#[tokio::test]
async fn a_full_disk_fails_the_write_and_keeps_what_was_committed() {
    let db = common::temp_db();
    let options = {
        let mut conf = SqliteOptions::default();
        conf.max_size_bytes = Some(256 * 1024);
        conf
    };
    let store = SqliteStore::open_with(&db.path, options)
        .await
        .expect("open");
    let p = common::pid("big");
    let big = "x".repeat(16 * 1024);
    let mut seq = 0;
    let err = loop {
        seq += 1;
        assert!(seq < 1000, "the size cap never hit");
        if let Err(e) = store.append(&[common::message(&p, seq, &big)]).await {
            break e;
        }
    };
    let message = backend_message(&err);
    assert!(
        message.contains(&db.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("full"), "{message}");
    assert!(
        err.is_retryable(),
        "nothing was written, so it may be retried: {err}"
    );
    assert_eq!(store.last_seq(&p).await.expect("last"), seq - 1);
    assert!(verify(&db.path).expect("verify").is_intact());
}

#[tokio::test]
async fn ping_reports_a_store_that_cannot_write_until_space_returns() {
    let db = common::temp_db();
    let cap: i64 = 256 * 1024;
    let options = {
        let mut conf = SqliteOptions::default();
        conf.max_size_bytes = Some(cap.unsigned_abs());
        conf
    };
    let store = SqliteStore::open_with(&db.path, options)
        .await
        .expect("open");
    store.ping().await.expect("a fresh store is healthy");
    // another program takes what is left (as on a full disk); the store's write then fails
    let filler = rusqlite::Connection::open(&db.path).expect("filler");
    filler
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    filler
        .pragma_update(None, "max_page_count", cap / 4096)
        .unwrap();
    filler
        .execute_batch("CREATE TABLE filler (b BLOB)")
        .unwrap();
    for chunk in [16_384, 1024, 64] {
        while filler
            .execute("INSERT INTO filler VALUES (zeroblob(?1))", [chunk])
            .is_ok()
        {}
    }
    let p = common::pid("full");
    let big = "x".repeat(16 * 1024);
    store
        .append(&[common::message(&p, 1, &big)])
        .await
        .expect_err("the file is full");
    // reads still answer, but the store cannot write: ping says so
    let err = store.ping().await.expect_err("a store that cannot write");
    assert!(backend_message(&err).contains("full"), "{err}");
    assert!(err.is_retryable(), "{err}");
    // space returns: ping passes again and so does the write
    filler.execute("DELETE FROM filler", []).unwrap();
    store.ping().await.expect("writable again");
    store
        .append(&[common::message(&p, 1, &big)])
        .await
        .expect("the write goes through now");
    assert_eq!(store.last_seq(&p).await.expect("last"), 1);
    assert!(verify(&db.path).expect("verify").is_intact());
}
