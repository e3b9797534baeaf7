//! Operator conventions of the `governance` binary: `RUST_LOG` for every subcommand, JSON logs
//! (`GOVERNANCE_LOG_FORMAT=json`) with one line per pipeline status change, no ANSI colours on a
//! pipe, and a closed stdout ending `run` cleanly.

use std::process::{Command, Stdio};

use serde_json::Value;

fn governance() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_governance"));
    c.env_remove("RUST_LOG")
        .env_remove("GOVERNANCE_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env_remove("GOVERNANCE_LOCAL_LATENCY_MS")
        .env_remove("REDIS_URL");
    c
}

/// The status-change log lines of JSON-formatted `stderr`: every line must be a JSON object.
fn status_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l:?}"))
        })
        .filter(|v| v["message"] == "pipeline status changed")
        .collect()
}

#[test]
fn json_logs_have_one_info_line_per_status_change_with_the_pipeline_id() {
    let out = governance()
        .args(["run", "--objective", "Design a caching strategy", "--json"])
        .env("GOVERNANCE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|e| e["data"]["pipeline_id"].as_str().map(str::to_owned))
        .expect("first event names the pipeline");
    let lines = status_lines(&stderr);
    let statuses: Vec<&str> = lines.iter().filter_map(|l| l["status"].as_str()).collect();
    assert_eq!(
        statuses,
        ["SPAWNED", "RUNNING", "REPORT", "ORCHESTRATING", "COMPLETED"],
        "{stderr}"
    );
    for l in &lines {
        assert_eq!(l["level"], "INFO", "{l}");
        assert_eq!(l["pipeline_id"], id.as_str(), "{l}");
        assert!(l["timestamp"].is_string(), "{l}");
    }
}

#[test]
fn rust_log_is_honoured_and_a_piped_stderr_gets_no_colours() {
    // text format on a pipe, for `run` and `bench`: the status lines are there, no escape codes
    let run = governance()
        .args(["run", "--objective", "Design a caching strategy"])
        .env("RUST_LOG", "info")
        .output()
        .expect("runs");
    let bench = governance()
        .args(["bench", "--pipelines", "2", "--concurrency", "1", "--json"])
        .env("RUST_LOG", "governance_core=info")
        .output()
        .expect("runs");
    for (name, out) in [("run", &run), ("bench", &bench)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("pipeline status changed"),
            "{name}: RUST_LOG=info ignored: {stderr:?}"
        );
        assert!(
            stderr.contains("pipeline_id="),
            "{name}: no pipeline_id: {stderr:?}"
        );
        assert!(
            !stderr.contains("\x1b["),
            "{name}: ANSI codes on a pipe: {stderr:?}"
        );
    }
    // and without RUST_LOG, `run` keeps stderr quiet (its output is the events on stdout)
    let quiet = governance()
        .args(["run", "--objective", "Design a caching strategy"])
        .output()
        .expect("runs");
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
}

#[test]
fn an_invalid_log_format_names_the_variable() {
    let out = governance()
        .args(["run", "--objective", "x"])
        .env("GOVERNANCE_LOG_FORMAT", "xml")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GOVERNANCE_LOG_FORMAT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_json_into_a_closed_pipe_exits_zero_without_a_panic() {
    // what `governance run --json | head -1` does once head has exited: every write to stdout
    // fails with EPIPE. The reading end is closed before the process starts, so no write can
    // slip through first.
    for extra in [&["--json"][..], &[][..]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = governance()
            .args(["run", "--objective", "Design a caching strategy"])
            .args(extra)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert_eq!(stderr, "", "{extra:?}");
    }
}
