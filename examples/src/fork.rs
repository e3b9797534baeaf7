//! `governance fork`: asks a running server (`POST /api/pipeline/{id}/fork`) for a fork of one
//! of its pipelines and prints the new pipeline's id.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value, json};

/// `governance fork`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["at_seq", "at_status"])))]
pub struct ForkArgs {
    /// The pipeline to fork.
    pub pipeline_id: String,
    /// The server's base URL.
    #[arg(
        long,
        env = "GOVERNANCE_SERVER",
        default_value = "http://127.0.0.1:3000"
    )]
    pub server: String,
    /// Fork after the pipeline's event with this seq.
    #[arg(long)]
    pub at_seq: Option<u64>,
    /// Fork after the event where the pipeline first entered this status (e.g. REPORT).
    #[arg(long)]
    pub at_status: Option<String>,
    /// A new objective (only at a point before the report is written).
    #[arg(long)]
    pub objective: Option<String>,
    /// The orchestration timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// A role's model, `ROLE=MODEL` (repeatable).
    #[arg(long = "role-model", value_name = "ROLE=MODEL")]
    pub role_model: Vec<String>,
}

/// The request body `args` asks for.
fn body(args: &ForkArgs) -> anyhow::Result<Value> {
    let mut b = Map::new();
    if let Some(n) = args.at_seq {
        b.insert("at_seq".into(), json!(n));
    }
    if let Some(s) = &args.at_status {
        b.insert("at_status".into(), json!(s.to_ascii_uppercase()));
    }
    if let Some(o) = &args.objective {
        b.insert("objective".into(), json!(o));
    }
    if let Some(t) = args.timeout {
        b.insert("timeout".into(), json!(t));
    }
    let mut roles = Map::new();
    for rm in &args.role_model {
        let Some((role, model)) = rm.split_once('=') else {
            bail!("--role-model {rm:?}: expected ROLE=MODEL");
        };
        if role.is_empty() || model.is_empty() {
            bail!("--role-model {rm:?}: expected ROLE=MODEL, both non-empty");
        }
        roles.insert(role.to_owned(), json!({"model": model}));
    }
    if !roles.is_empty() {
        b.insert("roles".into(), Value::Object(roles));
    }
    Ok(Value::Object(b))
}

/// Runs `governance fork`: prints the new pipeline's id on stdout; a refusal (the server's
/// status and error body) or an unreachable server is an error.
///
/// # Errors
/// Bad arguments, the server unreachable, or a non-2xx answer.
pub async fn fork(args: ForkArgs) -> anyhow::Result<ExitCode> {
    let body = body(&args)?;
    let base = args.server.trim_end_matches('/');
    let url = format!("{base}/api/pipeline/{}/fork", args.pipeline_id);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let mut req = client.post(&url).json(&body);
    if let Ok(token) = std::env::var("GOVERNANCE_API_TOKEN")
        && !token.is_empty()
    {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base} (GOVERNANCE_SERVER)"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("the server refused the fork ({status}): {message}");
    }
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("the server's answer is not JSON: {text}"))?;
    let Some(id) = v["pipeline_id"].as_str() else {
        bail!("the server's answer has no pipeline_id: {text}");
    };
    println!("{id}");
    eprintln!(
        "forked {} at seq {} ({}): {id}",
        v["forked_from"]["pipeline_id"]
            .as_str()
            .unwrap_or(&args.pipeline_id),
        v["forked_from"]["seq"],
        v["status"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
