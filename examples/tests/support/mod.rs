//! What the end-to-end tests of the `governance` binary share: `governance serve` nodes and the
//! CLI (`serve`), HTTP helpers (`http`), a redis-server of their own (`redis`), a schema of their
//! own on the machine's PostgreSQL and a private PostgreSQL server they may restart (`pg`).
//! Each test file takes what it needs with `mod support;`.
#![allow(dead_code, unused_imports)]

pub mod http;
pub mod pg;
pub mod redis;
pub mod serve;

use std::net::TcpListener;

pub use http::*;
pub use pg::{PrivatePg, Schema, psql};
pub use redis::Redis;
pub use serve::{LogsOnPanic, Node, governance};

pub const TERMINAL: [&str; 6] = [
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "ORCHESTRATION_FAILED",
    "ORCHESTRATION_ERROR",
    "STOPPED",
];

/// Whether `status` is a final status.
pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}
