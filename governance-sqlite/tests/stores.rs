//! Checkpoint retention, registry queries and recorded LLM exchanges.

mod common;

use common::{checkpoint, pid, record};
use governance_core::{AgentId, CheckpointStore, PipelineFilter, PipelineRegistry, PipelineStatus};

#[tokio::test]
async fn a_final_checkpoint_replaces_the_intermediate_ones() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    let (p, other) = (pid("p"), pid("other"));
    for seq in 1..=4 {
        store
            .save(&checkpoint(&p, seq, PipelineStatus::Orchestrating, false))
            .await
            .expect("save");
    }
    store
        .save(&checkpoint(&other, 1, PipelineStatus::Running, false))
        .await
        .expect("save other");
    assert_eq!(store.count(&p).await.expect("count"), 4);

    let last = checkpoint(&p, 9, PipelineStatus::Completed, true);
    store.save(&last).await.expect("save final");
    assert_eq!(store.count(&p).await.expect("count"), 1);
    assert_eq!(store.latest(&p).await.expect("latest"), Some(last));
    assert_eq!(store.count(&other).await.expect("other untouched"), 1);
}

#[tokio::test]
async fn the_registry_lists_newest_first_filtered_by_status_and_time() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    let statuses = [
        PipelineStatus::Running,
        PipelineStatus::Completed,
        PipelineStatus::Running,
        PipelineStatus::Failed,
    ];
    for (i, status) in statuses.into_iter().enumerate() {
        let created = i64::try_from(i).expect("i") * 10;
        store
            .upsert(&record(&pid(&format!("p{i}")), status, created))
            .await
            .expect("upsert");
    }
    let ids = |recs: Vec<governance_core::PipelineRecord>| {
        recs.into_iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
    };
    let all = store.list(&PipelineFilter::default()).await.expect("list");
    assert_eq!(ids(all), ["p3", "p2", "p1", "p0"]);
    let running = PipelineFilter {
        statuses: vec![PipelineStatus::Running],
        ..PipelineFilter::default()
    };
    assert_eq!(ids(store.list(&running).await.expect("list")), ["p2", "p0"]);
    let window = PipelineFilter {
        created_after: Some(common::at(10)),
        created_before: Some(common::at(30)),
        limit: 1,
        offset: 1,
        ..PipelineFilter::default()
    };
    assert_eq!(ids(store.list(&window).await.expect("list")), ["p1"]);

    // upsert replaces: p0 finishes.
    store
        .upsert(&record(&pid("p0"), PipelineStatus::Completed, 0))
        .await
        .expect("upsert");
    assert_eq!(
        store.count_by_status().await.expect("counts"),
        [
            (PipelineStatus::Running, 1),
            (PipelineStatus::Completed, 2),
            (PipelineStatus::Failed, 1)
        ]
    );
}

#[tokio::test]
async fn llm_exchanges_round_trip_in_recording_order() {
    let db = common::temp_db();
    let store = common::open(&db).await;
    let (p, other) = (pid("p"), pid("other"));
    let alpha = AgentId::new("ALPHA").expect("agent");
    let beta = AgentId::new("BETA").expect("agent");
    for (i, agent) in [&alpha, &beta, &alpha].into_iter().enumerate() {
        store
            .record_exchange(
                &p,
                agent,
                &serde_json::json!({"n": i, "messages": [{"role": "user", "content": "q"}]}),
                &serde_json::json!({"n": i, "content": "a", "usage": {"prompt_tokens": 3}}),
            )
            .await
            .expect("record");
    }
    let got = store.exchanges(&p).await.expect("exchanges");
    let order: Vec<_> = got
        .iter()
        .map(|x| (x.agent_id.to_string(), x.request["n"].clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("ALPHA".to_owned(), serde_json::json!(0)),
            ("BETA".to_owned(), serde_json::json!(1)),
            ("ALPHA".to_owned(), serde_json::json!(2))
        ]
    );
    assert_eq!(got[1].response["usage"]["prompt_tokens"], 3);
    assert!(store.exchanges(&other).await.expect("none").is_empty());
}
