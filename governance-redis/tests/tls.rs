//! `rediss://` (TLS via rustls) is compiled in: the URL gets past configuration, and a TLS
//! handshake against a plain-text server fails with a backend error that never shows the
//! password.

mod common;

use common::RedisServer;
use governance_core::ErrorKind;
use governance_redis::{RedisBackend, RedisConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_is_accepted_and_a_handshake_with_a_plain_server_fails_cleanly() {
    let server = RedisServer::start_with(&["--requirepass", "tls-s3cret"]);
    let url = format!("rediss://:tls-s3cret@127.0.0.1:{}", server.port());
    let config = RedisConfig::new(url);
    assert!(!format!("{config:?}").contains("tls-s3cret"));
    let e = RedisBackend::connect(config)
        .await
        .expect_err("a TLS handshake with a plain-text server cannot succeed");
    assert_eq!(
        e.kind(),
        ErrorKind::Backend,
        "rediss:// got past configuration (TLS is compiled in): {e}"
    );
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("tls-s3cret"), "{shown}");
    println!(
        "rediss:// against a plain server: retryable={} {e}",
        e.is_retryable()
    );
}
