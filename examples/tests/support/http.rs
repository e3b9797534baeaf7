//! HTTP over a plain socket: requests, pipelines, statuses and ledgers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::is_terminal;

/// One HTTP request: status and JSON body.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path} on {addr}: no status in {raw:?}"));
    let payload = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

pub fn get(addr: &str, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, None);
    assert_eq!(code, 200, "GET {path} on {addr}: {body}");
    body
}

pub fn spawn_pipeline(addr: &str, objective: &str) -> String {
    let body = serde_json::json!({"objective": objective, "auto_continue": true}).to_string();
    let (code, resp) = http(addr, "POST", "/api/spawn", Some(&body));
    assert_eq!(code, 201, "spawn on {addr}: {resp}");
    resp["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_owned()
}

/// Every pipeline's status as `addr` sees it, or `None` when the request failed (a 503
/// during an outage).
pub fn statuses(addr: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let (code, list) = http(addr, "GET", "/api/pipelines?limit=1000", None);
    if code != 200 {
        return None;
    }
    Some(
        list["pipelines"]
            .as_array()?
            .iter()
            .map(|p| {
                (
                    p["pipeline_id"].as_str().unwrap_or("?").to_owned(),
                    p["status"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect(),
    )
}

/// The whole ledger of `id` read from `addr`, page by page.
pub fn all_logs(addr: &str, id: &str) -> Vec<Value> {
    all_logs_paged(addr, id, 200)
}

/// The whole ledger of `id` read from `addr` in pages of `page_size` entries (`after` /
/// `next_after` / `has_more`), checking that every page keeps to the limit and moves on.
pub fn all_logs_paged(addr: &str, id: &str, page_size: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = get(
            addr,
            &format!("/api/pipeline/logs?pipeline_id={id}&after={after}&limit={page_size}"),
        );
        let events = page["events"].as_array().expect("events array");
        assert!(events.len() <= page_size, "page larger than limit: {page}");
        out.extend(events.iter().cloned());
        let next = page["next_after"].as_u64().expect("next_after");
        if !page["has_more"].as_bool().expect("has_more") {
            return out;
        }
        assert!(
            next > after,
            "logs of {id} on {addr}: has_more without progress at {after}"
        );
        after = next;
    }
}

/// Waits until every pipeline of `ids` is terminal as `addrs` (in turn) see it.
pub fn wait_terminal(
    addrs: &[&str],
    ids: &std::collections::BTreeSet<String>,
    deadline: Instant,
) -> std::collections::BTreeMap<String, String> {
    let mut round = 0usize;
    loop {
        let addr = addrs[round % addrs.len()];
        round += 1;
        if let Some(seen) = statuses(addr) {
            let open: Vec<_> = ids
                .iter()
                .filter(|id| seen.get(*id).is_none_or(|s| !is_terminal(s)))
                .collect();
            if open.is_empty() {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{} pipelines not terminal in time: {:?}",
                open.len(),
                open.iter().take(10).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (up to two minutes) until pipeline `id` on `addr` has status `want`; its record.
pub fn wait_status(addr: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, rec) = http(addr, "GET", &format!("/api/pipeline/{id}"), None);
        assert_eq!(code, 200, "GET /api/pipeline/{id} on {addr}: {rec}");
        if rec["status"] == want {
            return rec;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline {id} is {} (waited for {want})",
            rec["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
