//! Migrations, the append-only ledger, `verify`, recorded exchanges and error reporting on the
//! real server, each test in a schema of its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governance_core::{
    AgentId, Event, EventKind, ExchangeOutcome, ExchangeStore, LedgerStore, LlmExchange,
    LlmRequest, PipelineId, Purpose, RequestMeta,
};
use governance_postgres::{PgConfig, PgStore, SCHEMA_VERSION};

fn message(p: &PipelineId, seq: u64, text: &str) -> Event {
    Event {
        seq,
        ts: Utc::now(),
        kind: EventKind::AgentMessage {
            pipeline_id: p.clone(),
            from: AgentId::new("ALPHA").unwrap(),
            to: "*".into(),
            content: text.into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_when_many_nodes_start_together() {
    let db = common::TestSchema::new();
    let config = db.config();
    let starts: Vec<_> = (0..8)
        .map(|_| tokio::spawn(PgStore::connect(config.clone())))
        .collect();
    for s in starts {
        let store = s.await.unwrap().expect("every node starts");
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    }
    // and once more, on a database that is up to date
    let store = db.store().await;
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            &format!(
                "SELECT version FROM {}.governance_migrations ORDER BY version",
                db.name
            ),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let p = PipelineId::generate();
    store.append(&[message(&p, 1, "works")]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_naming_both_versions() {
    let db = common::TestSchema::new();
    drop(db.store().await);
    db.exec("INSERT INTO governance_migrations (version, name) VALUES (99, 'from the future')")
        .await;
    let err = PgStore::connect(db.config()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("99") && text.contains(&SCHEMA_VERSION.to_string()),
        "{text}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_append_only_and_verify_names_a_changed_entry() {
    let db = common::TestSchema::new();
    let store = db.store().await;
    let p = PipelineId::generate();
    let events: Vec<Event> = (1..=5).map(|s| message(&p, s, &format!("m{s}"))).collect();
    store.append(&events).await.unwrap();
    // an identical repeat (a retried write) is a no-op
    store.append(&events[3..]).await.unwrap();
    assert_eq!(store.last_seq(&p).await.unwrap(), 5);
    assert!(store.verify().await.unwrap().is_intact());

    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ledger = format!("{}.ledger", db.name);
    let err = client
        .execute(
            &format!("UPDATE {ledger} SET data = '{{}}' WHERE seq = 3"),
            &[],
        )
        .await
        .unwrap_err();
    let why = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(why.contains("append-only"), "{err:?}");
    assert!(
        client
            .execute(&format!("DELETE FROM {ledger}"), &[])
            .await
            .is_err()
    );

    // someone with the rights drops the trigger and edits entry 3
    client
        .batch_execute(&format!(
            "DROP TRIGGER ledger_no_update ON {ledger}; \
             UPDATE {ledger} SET data = replace(data, 'm3', 'forged') WHERE seq = 3"
        ))
        .await
        .unwrap();
    let report = store.verify().await.unwrap();
    assert!(!report.is_intact());
    assert_eq!(report.broken[0].pipeline_id, p.as_str());
    assert_eq!(report.broken[0].seq, 3);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("ledger_no_update")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_round_trip_in_order_and_a_repeat_is_stored_once() {
    let db = common::TestSchema::new();
    let store = Arc::new(db.store().await);
    let p = PipelineId::generate();
    let request = |attempt| LlmRequest {
        model: Some("m".into()),
        messages: vec![governance_core::ChatMessage::user("objective")].into(),
        max_tokens: 64,
        temperature: 0.0,
        response_format: governance_core::ResponseFormat::JsonObject,
        fallback_models: Vec::new(),
        meta: RequestMeta {
            pipeline_id: p.clone(),
            agent_id: AgentId::new("BETA").unwrap(),
            purpose: Purpose::Evaluate,
            attempt,
        },
    };
    let first = LlmExchange::new(
        &request(0),
        ExchangeOutcome::Abandoned,
        "default",
        Duration::ZERO,
    );
    let second = LlmExchange::new(
        &request(1),
        ExchangeOutcome::Abandoned,
        "default",
        Duration::ZERO,
    );
    let dyn_store: Arc<dyn ExchangeStore> = store.clone();
    dyn_store.record(&first).await.unwrap();
    dyn_store.record(&first).await.unwrap();
    dyn_store.record(&second).await.unwrap();
    let back = ExchangeStore::exchanges(&*store, &p).await.unwrap();
    assert_eq!(back, vec![first, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_retryable_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = PgConfig::new(format!("postgres://gov:hunter2@127.0.0.1:{port}/gov"));
    config.outage_timeout = Duration::from_millis(300);
    config.connect_timeout = Duration::from_millis(200);
    let err = PgStore::connect(config).await.unwrap_err();
    let text = err.to_string();
    assert!(err.is_retryable(), "{text}");
    assert_eq!(err.kind(), governance_core::ErrorKind::Backend);
    assert!(!text.contains("hunter2") && text.contains("***"), "{text}");
}
