//! The baseline of `scripts/bench-http.sh`: a bare axum 0.8 handler answering a small JSON,
//! on the same runtime settings as `governance serve`.
//!
//! `cargo run --release -p governance-http --example bare_axum -- 127.0.0.1:3100`

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

async fn small() -> Json<Value> {
    Json(json!({"pipeline_id": "01a212c676b07110a90de1a354d060cc", "status": "SPAWNED"}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".to_owned());
    let app = Router::new()
        .route("/", get(small))
        .route("/api/spawn", post(small));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare axum on http://{addr}/");
    axum::serve(listener, app).await
}
