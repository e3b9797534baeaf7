//! `governance bench --json` through the built binary: the report's fields and that every
//! pipeline completed, in memory and with the SQLite ledger (`--db`). No timing assertions.

use std::process::Command;

use serde_json::Value;

fn bench(extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_governance"))
        .args([
            "bench",
            "--pipelines",
            "50",
            "--concurrency",
            "10",
            "--json",
        ])
        .args(extra)
        .env_remove("REDIS_URL")
        .env_remove("GOVERNANCE_LOCAL_LATENCY_MS")
        .output()
        .expect("run the governance binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

fn check(report: &Value) {
    for field in [
        "seconds",
        "pipelines_per_s",
        "p50_ms",
        "p99_ms",
        "peak_rss_mb",
    ] {
        let v = report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing or not a number: {report}"));
        assert!(v.is_finite() && v >= 0.0, "{field} = {v}");
    }
    assert_eq!(report["pipelines"], 50, "{report}");
    assert_eq!(report["completed"], 50, "{report}");
    assert!(report["p99_ms"].as_f64() >= report["p50_ms"].as_f64());
    assert!(report["peak_rss_mb"].as_f64() > Some(0.0), "{report}");
}

#[test]
fn bench_json_in_memory() {
    let report = bench(&[]);
    check(&report);
    assert_eq!(report["backends"]["ledger"], "memory", "{report}");
    assert_eq!(report["backends"]["blackboard"], "memory", "{report}");
}

#[test]
fn bench_json_with_sqlite_ledger() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bench.db");
    let report = bench(&["--db", db.to_str().expect("utf-8 path")]);
    check(&report);
    assert!(
        report["backends"]["ledger"]
            .as_str()
            .is_some_and(|l| l.starts_with("sqlite:")),
        "{report}"
    );
    // the real code path wrote the ledger: every pipeline's hash chain is in the file
    let verify = Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["ledger", "verify", "--db"])
        .arg(&db)
        .env_remove("GOVERNANCE_DB")
        .output()
        .expect("run the governance binary");
    assert!(
        verify.status.success(),
        "ledger verify failed: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
