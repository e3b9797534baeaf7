//! Embedding `governance-core` in your own service: spawn a pipeline and wait for its results.
//!
//! Run with `cargo run -p governance-examples --example embed`.

use governance_core::{Governance, SpawnRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // In-memory backends and the deterministic local LLM: no setup needed.
    let gov = Governance::builder().build()?;
    let id = gov
        .spawn(SpawnRequest::new("Design a caching strategy"))
        .await?;
    let record = gov.wait(&id).await?;
    println!("pipeline {id}: {}", record.status);
    if let Some(results) = record.results {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
