//! The OpenAPI document is true to the server: schemathesis (`st`) runs against `governance
//! serve` (a real process on a free port, SQLite file, API token on) with every check and every
//! phase, and any finding fails the test.
//!
//! Bounded by examples, not by time: `--max-examples` per operation and a fixed seed, so a run
//! is reproducible and takes a few minutes on 2 cores. `/ws` is left out: it is a WebSocket
//! handshake, which a request/response tester cannot follow past the 101 (the document says so;
//! `governance-http/tests/live.rs` covers it over a real socket).
//!
//! Needs schemathesis on the PATH (`.ci/run` installs it with pip); without it the test fails
//! and says so rather than skipping.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Node;

const TOKEN: &str = "schemathesis-test-token";
/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "25";
/// The whole run is killed (and the test fails) past this: it only trips on a hang.
const HANG: Duration = Duration::from_secs(15 * 60);

/// `governance serve` on a SQLite file in `dir`, with the API token on.
fn serve(dir: &std::path::Path) -> Node {
    let db = dir
        .join("governance.db")
        .to_str()
        .expect("UTF-8")
        .to_owned();
    let env = [
        ("GOVERNANCE_DB", db),
        ("GOVERNANCE_API_TOKEN", TOKEN.to_owned()),
    ];
    Node::start("serve", dir, &env, 0)
}

fn schemathesis() -> &'static str {
    for bin in ["st", "schemathesis"] {
        if Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return bin;
        }
    }
    panic!(
        "schemathesis (`st`) is not installed: `.ci/run` installs it \
         (or run `python3 -m pip install schemathesis`)"
    );
}

/// The last `n` characters of `s`.
fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

#[test]
fn schemathesis_finds_nothing_against_the_running_server() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let mut run = Command::new(st)
        .current_dir(dir.path())
        .args([
            "run",
            &format!("http://{}/openapi.json", server.addr),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "15",
            "--workers",
            "1",
            "--request-timeout",
            "5",
            "--exclude-operation-id",
            "ws",
            "--generation-database",
            "none",
            "--report-dir",
            &dir.path().join("report").to_string_lossy(),
            "--no-color",
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("schemathesis starts");
    let mut out = run.stdout.take().expect("stdout");
    let mut err = run.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        text + &e
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().expect("wait for schemathesis") {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = run.kill();
            let _ = run.wait();
            panic!("schemathesis hung for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.join().unwrap_or_default();
    println!("{}", tail(&output, 4000));
    assert!(
        status.success(),
        "schemathesis reported findings ({status}):\n{}",
        tail(&output, 30_000)
    );
    assert!(
        output.contains("Tested:") && !output.contains("Tested: 0"),
        "schemathesis tested nothing:\n{output}"
    );
    drop(server);
}
