//! The live subscriber's keep-alive must not tear down a healthy connection: in subscribed
//! mode Redis answers PING with an array, which once made every keep-alive "fail" and the
//! subscriber reconnect every 5 s (losing live messages each time).

mod common;

use std::time::Duration;

use common::{RedisServer, backend};
use futures::StreamExt;
use governance_core::{Message, PipelineId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_subscription_is_not_reconnected_by_its_keep_alive() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let bus = b.bus();
    let id = PipelineId::generate();
    let mut live = bus.subscribe(&id).await.unwrap();
    // longer than two keep-alive intervals (5 s)
    tokio::time::sleep(Duration::from_secs(12)).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let subscriber = list
        .lines()
        .find(|l| l.split_whitespace().any(|f| f == "sub=1"))
        .unwrap_or_else(|| panic!("no subscribed client in:\n{list}"));
    let age: u64 = subscriber
        .split_whitespace()
        .find_map(|f| f.strip_prefix("age="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no age in {subscriber}"));
    assert!(
        age >= 10,
        "the subscriber's connection is {age} s old: it was re-established ({subscriber})"
    );
    // and it still delivers
    bus.publish(
        &id,
        Message::new("ALPHA".parse().unwrap(), "*", "t", "hello"),
    )
    .await
    .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("a live message")
        .expect("stream open");
    assert_eq!(m.content, "hello");
}
