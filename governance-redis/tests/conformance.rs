//! The governance-core conformance suites, on a real redis-server.

mod common;

use common::{RedisServer, backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blackboard_conforms() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    governance_core::testkit::blackboard_suite(b.blackboard()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bus_conforms() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    governance_core::testkit::bus_suite(b.bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suites_pass_through_a_password_protected_server() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    let b = governance_redis::RedisBackend::connect(governance_redis::RedisConfig::new(url))
        .await
        .expect("connect with the password in the URL");
    governance_core::testkit::bus_suite(b.bus()).await;
    let from_config = governance_redis::RedisBackend::connect(
        governance_redis::RedisConfig::new(server.url()).with_password("s3cret-pw"),
    )
    .await
    .expect("connect with the password from the config");
    governance_core::testkit::blackboard_suite(from_config.blackboard()).await;
}
