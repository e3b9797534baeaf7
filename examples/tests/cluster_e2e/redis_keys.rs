//! Reading the cluster's keys in Redis directly (RESP over a socket, one round trip): ledger
//! lengths and lease owners, as docs/wire-protocol.md lays them out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs `commands` in one round trip (pipelined) and returns each reply: a bulk string or an
/// integer (as text), `None` for a nil reply.
pub fn redis_pipeline(port: u16, commands: &[Vec<String>]) -> Vec<Option<String>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = Vec::new();
    for args in commands {
        write!(req, "*{}\r\n", args.len()).unwrap();
        for a in args {
            write!(req, "${}\r\n{a}\r\n", a.len()).unwrap();
        }
    }
    s.write_all(&req).expect("send commands");
    let mut r = BufReader::new(s);
    commands
        .iter()
        .map(|args| {
            let mut line = String::new();
            r.read_line(&mut line).expect("reply line");
            let line = line.trim_end();
            if let Some(n) = line.strip_prefix(':') {
                return Some(n.to_owned());
            }
            let len: i64 = line
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{args:?}: unexpected reply {line:?}"));
            let Ok(len) = usize::try_from(len) else {
                return None; // $-1: nil
            };
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf).expect("bulk string");
            buf.truncate(len);
            Some(String::from_utf8(buf).expect("utf-8 reply"))
        })
        .collect()
}

/// Keys of a pipeline in Redis (docs/wire-protocol.md): `gov:{P}:<name>`.
pub fn key(id: &str, name: &str) -> String {
    format!("gov:{{{id}}}:{name}")
}

/// Length of each pipeline's shared ledger (`LLEN gov:{P}:ledger`), in one round trip.
pub fn ledger_lengths(port: u16, ids: &[String]) -> Vec<u64> {
    let cmds: Vec<Vec<String>> = ids
        .iter()
        .map(|id| vec!["LLEN".to_owned(), key(id, "ledger")])
        .collect();
    redis_pipeline(port, &cmds)
        .into_iter()
        .map(|v| v.and_then(|n| n.parse().ok()).expect("LLEN is an integer"))
        .collect()
}

/// The node holding each pipeline's ownership lease (`gov:{P}:owner` = `<node>:<token>`, see
/// docs/wire-protocol.md), `None` when no lease is held.
pub fn lease_owners(port: u16, ids: &[String]) -> Vec<Option<String>> {
    let cmds: Vec<Vec<String>> = ids
        .iter()
        .map(|id| vec!["GET".to_owned(), key(id, "owner")])
        .collect();
    redis_pipeline(port, &cmds)
        .into_iter()
        .map(|v| v.and_then(|v| v.rsplit_once(':').map(|(node, _)| node.to_owned())))
        .collect()
}
