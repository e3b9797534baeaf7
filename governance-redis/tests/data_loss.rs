//! The data generation of a real redis-server (`Blackboard::generation`): a restart that came
//! back empty, one that came back from an older snapshot and a flush all read as a loss; calls
//! on a server that lost nothing do not.

mod common;

use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{Blackboard, DataGeneration, MemoryBlackboard, MemoryBus, MessageBus};
use governance_redis::RedisBackend;

/// The generation, waiting (bounded) for the server to answer after a restart.
async fn generation(b: &RedisBackend) -> DataGeneration {
    for _ in 0..200 {
        if let Ok(Some(g)) = b.blackboard().generation().await {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never answered the generation");
}

#[tokio::test]
async fn calls_on_a_server_that_lost_nothing_are_not_a_loss() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let first = generation(&b).await;
    let second = generation(&b).await;
    let via_bus = b.bus().generation().await.expect("bus").expect("some");
    assert!(!second.lost_since(&first), "{first:?} then {second:?}");
    assert!(!via_bus.lost_since(&second), "{second:?} then {via_bus:?}");
    assert!(second.counter > first.counter);
}

#[tokio::test]
async fn a_restart_that_came_back_empty_is_a_loss() {
    let mut server = RedisServer::start();
    let b = backend(&server).await;
    let before = generation(&b).await;
    server.kill();
    server.start_again();
    let after = generation(&b).await;
    assert!(after.lost_since(&before), "{before:?} then {after:?}");
    // the marker is gone too: even without the server's run_id the id differs
    let marker = |g: &DataGeneration| g.id.split('/').nth(1).map(str::to_owned);
    assert_ne!(marker(&before), marker(&after));
}

#[tokio::test]
async fn a_restart_from_an_older_snapshot_is_a_loss() {
    let mut server = RedisServer::start();
    let b = backend(&server).await;
    let _ = generation(&b).await;
    assert_eq!(server.raw(&["SAVE"]).expect("SAVE"), "+OK");
    // written after the snapshot: lost by the restart below
    let mut before = generation(&b).await;
    for _ in 0..3 {
        before = generation(&b).await;
    }
    server.kill();
    server.start_again();
    let after = generation(&b).await;
    assert!(after.lost_since(&before), "{before:?} then {after:?}");
    // the marker came back with the snapshot: the counter alone shows the loss (a server
    // refusing INFO, hence without run_id, is still judged right)
    let marker = |g: &DataGeneration| g.id.split('/').nth(1).map(str::to_owned);
    assert_eq!(marker(&before), marker(&after));
    assert!(after.counter <= before.counter, "{before:?} then {after:?}");
}

#[tokio::test]
async fn a_flush_is_a_loss() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let before = generation(&b).await;
    assert_eq!(server.raw(&["FLUSHALL"]).expect("FLUSHALL"), "+OK");
    let after = generation(&b).await;
    assert!(after.lost_since(&before), "{before:?} then {after:?}");
}

#[tokio::test]
async fn the_memory_backends_never_lose_data() {
    assert_eq!(
        MemoryBlackboard::default().generation().await.expect("bb"),
        None
    );
    assert_eq!(MemoryBus::default().generation().await.expect("bus"), None);
}
