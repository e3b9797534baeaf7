//! `governance run` with the `otlp` feature exports its spans to an OTLP/HTTP collector: a tiny
//! local server stands in for the collector and records what arrives at `POST /v1/traces`.
#![cfg(feature = "otlp")]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the fake collector received.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

type Received = Arc<Mutex<Vec<Request>>>;

/// Reads one HTTP/1.1 request (Content-Length or chunked body); `None` at end of stream.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2]; // data + CRLF
            r.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request { method, path, body })
}

/// Serves one keep-alive connection: records each request, answers 200 with an empty
/// (valid, all-defaults) protobuf `ExportTraceServiceResponse`.
fn serve_connection(stream: TcpStream, received: &Received) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        received.lock().unwrap().push(req);
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Starts the fake collector on 127.0.0.1; returns its base URL and what it receives.
fn start_collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let received: Received = Arc::default();
    let r = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let r = r.clone();
            std::thread::spawn(move || serve_connection(stream, &r));
        }
    });
    (url, received)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn run_exports_spans_carrying_the_pipeline_id_over_otlp_http() {
    let (endpoint, received) = start_collector();
    let mut child = Command::new(env!("CARGO_BIN_EXE_governance"))
        .args(["run", "--objective", "Design a caching strategy"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env("GOVERNANCE_NODE_ID", "otlp-test-node")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // only a guard against hanging forever, not a performance assertion
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`governance run` did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    assert!(status.success(), "stdout: {stdout}\nstderr: {stderr}");

    // `run` ends with "pipeline <id> ended COMPLETED"
    let id = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("pipeline ")?
                .strip_suffix(" ended COMPLETED")
        })
        .unwrap_or_else(|| panic!("no final line in\n{stdout}"))
        .to_owned();

    // the process flushed before exiting, and the collector records before it answers
    let received = received.lock().unwrap();
    let traces: Vec<&Request> = received
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/traces")
        .collect();
    assert!(
        !traces.is_empty(),
        "no POST /v1/traces arrived (got {:?}); stderr: {stderr}",
        received
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    // protobuf carries strings verbatim
    assert!(
        traces.iter().any(|r| contains(&r.body, id.as_bytes())),
        "no exported span carries pipeline id {id}"
    );
    for attr in ["governance", "otlp-test-node", "pipeline_id", "agent_id"] {
        assert!(
            traces.iter().any(|r| contains(&r.body, attr.as_bytes())),
            "no export carries {attr:?}"
        );
    }
}
