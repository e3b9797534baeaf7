//! Every Lua script declares every key it touches in `KEYS[]` (Dragonfly refuses undeclared
//! keys; Redis Cluster needs them to route). Checked two ways, both able to fail:
//!
//! 1. **Statically**: every `redis.call`/`redis.pcall` in the source names a known command whose
//!    key argument is `KEYS[n]` (n within the declared count), or a loop variable over
//!    `#KEYS`; `PUBLISH` (a channel, not a key) is the only keyless command allowed. And every
//!    declared key is used.
//! 2. **On a real server**: each script runs as an ACL user that may touch *exactly* the keys
//!    the caller declares for it (`ACL SETUSER … resetkeys ~<key>…`). Redis checks ACLs on
//!    every command a script calls, so an undeclared key is refused — shown by the
//!    negative control at the end.

mod common;

use common::RedisServer;
use governance_core::PipelineId;
use governance_redis::PipelineKeys;
use governance_redis::scripts::{self, ScriptSource};

const KEY_COMMANDS: &[&str] = &[
    "GET", "SET", "HGET", "HSET", "HSETNX", "HEXISTS", "RPUSH", "EXISTS", "DEL", "XADD", "INCR",
    "LLEN", "HINCRBY", "PEXPIRE",
];

fn calls(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pat in ["redis.call(", "redis.pcall("] {
        let mut rest = source;
        while let Some(i) = rest.find(pat) {
            let after = &rest[i + pat.len()..];
            let end = after.find(')').expect("closing parenthesis");
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

fn check_static(s: &ScriptSource) -> Result<(), String> {
    let loops_over_keys = s.source.contains("for k = 1, #KEYS do");
    let mut used = std::collections::BTreeSet::new();
    for call in calls(s.source) {
        let args: Vec<&str> = call.split(',').map(str::trim).collect();
        let cmd = args[0].trim_matches('\'').to_ascii_uppercase();
        if cmd == "PUBLISH" {
            continue;
        }
        if !KEY_COMMANDS.contains(&cmd.as_str()) {
            return Err(format!("{}: unknown command in `{call}`", s.name));
        }
        let key = args.get(1).copied().unwrap_or("");
        let idx = key
            .strip_prefix("KEYS[")
            .and_then(|k| k.strip_suffix(']'))
            .ok_or_else(|| format!("{}: key of `{call}` is not KEYS[..]", s.name))?;
        if idx == "k" && loops_over_keys {
            used.extend(1..=s.num_keys);
            continue;
        }
        let n: usize = idx
            .parse()
            .map_err(|_| format!("{}: computed key index in `{call}`", s.name))?;
        if n == 0 || n > s.num_keys {
            return Err(format!(
                "{}: KEYS[{n}] beyond the {} declared",
                s.name, s.num_keys
            ));
        }
        used.insert(n);
    }
    if used.len() != s.num_keys {
        return Err(format!(
            "{}: declares {} keys, uses {used:?}",
            s.name, s.num_keys
        ));
    }
    Ok(())
}

#[test]
fn every_script_names_only_declared_keys() {
    for s in scripts::ALL {
        check_static(s).unwrap();
    }
}

#[test]
fn the_static_check_catches_an_undeclared_key() {
    let bad = ScriptSource {
        name: "bad",
        num_keys: 1,
        source: "redis.call('SET', KEYS[1], 'x') redis.call('SET', 'gov:{p}:other', 'y')",
    };
    assert!(check_static(&bad).is_err());
    let computed = ScriptSource {
        name: "computed",
        num_keys: 1,
        source: "redis.call('SET', KEYS[1] .. ':x', 'y')",
    };
    assert!(check_static(&computed).is_err());
}

/// A connection as a user allowed exactly `keys` (and every channel and command).
async fn restricted(
    server: &RedisServer,
    user: &str,
    keys: &[String],
) -> redis::aio::MultiplexedConnection {
    let mut args = vec!["ACL", "SETUSER", user, "reset", "on", ">pw", "&*", "+@all"];
    let patterns: Vec<String> = keys.iter().map(|k| format!("~{k}")).collect();
    args.extend(patterns.iter().map(String::as_str));
    assert_eq!(server.raw(&args).unwrap(), "+OK");
    redis::Client::open(format!("redis://{user}:pw@127.0.0.1:{}", server.port()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn run(
    server: &RedisServer,
    s: &ScriptSource,
    keys: &[String],
    args: &[&str],
) -> redis::RedisResult<redis::Value> {
    assert_eq!(
        keys.len(),
        s.num_keys,
        "{}: the test passes the declared keys",
        s.name
    );
    let mut conn = restricted(server, &format!("u_{}", s.name), keys).await;
    let script = redis::Script::new(s.source);
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    for a in args {
        inv.arg(*a);
    }
    inv.invoke_async(&mut conn).await
}

#[tokio::test]
async fn every_script_runs_touching_only_its_declared_keys() {
    let server = RedisServer::start();
    let k = PipelineKeys::new("gov", &PipelineId::new("pipe-1").unwrap());
    let body = r#"{"v":1,"id":"p1","author":"ALPHA","title":"t","content":"c","created_at":"2026-01-01T00:00:00Z"}"#;
    let vote = r#"{"v":1,"voter":"BETA","approve":true,"score":0.5,"rationale":"r"}"#;
    let handoff = r#"{"v":1,"id":"h1","from":"ALPHA","role":"ALPHA","reason":"r","pending":[],"created_at":"2026-01-01T00:00:00Z"}"#;
    let bb = k.blackboard_keys();
    let [
        proposals,
        proposal_ids,
        status,
        votes,
        consensus,
        _,
        handoffs,
        handoff_ids,
        claims,
        _,
    ] = bb.clone();
    let channel = k.bus_channel();
    let cases: Vec<(&ScriptSource, Vec<String>, Vec<&str>)> = vec![
        (
            &scripts::CREATE_PROPOSAL,
            vec![
                proposals.clone(),
                proposal_ids.clone(),
                status.clone(),
                votes.clone(),
            ],
            vec!["p1", "ALPHA", body, "OPEN", "[]"],
        ),
        // Second create: the "exists" path reads other keys.
        (
            &scripts::CREATE_PROPOSAL,
            vec![
                proposals.clone(),
                proposal_ids,
                status.clone(),
                votes.clone(),
            ],
            vec!["p1", "ALPHA", body, "OPEN", "[]"],
        ),
        (
            &scripts::VOTE,
            vec![
                proposals.clone(),
                status.clone(),
                votes.clone(),
                consensus.clone(),
            ],
            vec!["p1", "BETA", "1", vote, "1", "2026-01-01T00:00:00Z", "1"],
        ),
        (
            &scripts::VOTE,
            vec![proposals, status, votes, consensus],
            vec!["p1", "BETA", "1", vote, "1", "2026-01-01T00:00:00Z", "1"],
        ),
        (
            &scripts::CREATE_HANDOFF,
            vec![handoffs.clone(), handoff_ids, claims.clone()],
            vec!["h1", handoff, "GAMMA"],
        ),
        (
            &scripts::CLAIM_HANDOFF,
            vec![handoffs, claims],
            vec!["h1", "BETA"],
        ),
        (
            &scripts::RESTORE,
            bb.to_vec(),
            vec![
                "1",
                "p1",
                body,
                "ACCEPTED",
                "[]",
                r#"{"v":1}"#,
                "1",
                r#"{"v":1}"#,
                "1",
                "h1",
                handoff,
                "BETA",
                "1",
                "ALPHA/x",
                r#"{"v":1,"value":1}"#,
            ],
        ),
        (
            &scripts::PUBLISH,
            vec![k.bus_seq(), k.bus_log()],
            vec![r#"{"v":1,"content":"x"}"#, "", &channel],
        ),
        (
            &scripts::PUBLISH,
            vec![k.bus_seq(), k.bus_log()],
            vec![r#"{"v":1,"content":"y"}"#, "10", &channel],
        ),
        (
            &scripts::LEASE_ACQUIRE,
            vec![k.owner(), k.fence()],
            vec!["node-a", "5000"],
        ),
        (
            &scripts::LEASE_RENEW,
            vec![k.owner(), k.fence()],
            vec!["node-a:1", "1", "5000"],
        ),
        (
            &scripts::APPEND_STATE,
            vec![
                k.fence(),
                k.ledger(),
                k.checkpoint(),
                k.checkpoint_meta(),
                k.record(),
            ],
            vec![
                "1",
                "1",
                "1",
                r#"{"v":1}"#,
                r#"{"v":1}"#,
                "1",
                r#"{"v":1}"#,
                &channel,
                "x",
            ],
        ),
        (&scripts::LEASE_RELEASE, vec![k.owner()], vec!["node-a:1"]),
        (
            &scripts::COST_RESERVE,
            vec![k.cost()],
            vec!["agent:ALPHA", "300", "1000", ""],
        ),
        // refused: nothing written
        (
            &scripts::COST_RESERVE,
            vec![k.cost()],
            vec!["agent:ALPHA", "300", "", "500"],
        ),
        (
            &scripts::COST_SETTLE,
            vec![k.cost()],
            vec!["agent:ALPHA", "-400"],
        ),
        (
            &scripts::COST_SEED,
            vec![k.cost()],
            vec!["700", "agent:ALPHA", "700", "agent:BETA", "5"],
        ),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (s, keys, args) in &cases {
        run(&server, s, keys, args)
            .await
            .unwrap_or_else(|e| panic!("{} touched an undeclared key or failed: {e}", s.name));
        covered.insert(s.name);
    }
    assert_eq!(
        covered.len(),
        scripts::ALL.len(),
        "every script is exercised"
    );

    // Negative control: the same harness refuses a script that touches an undeclared key.
    let bad = ScriptSource {
        name: "bad",
        num_keys: 1,
        source: "redis.call('SET', KEYS[1], 'x') return redis.call('GET', 'gov:{pipe-1}:other')",
    };
    let e = run(&server, &bad, &[k.proposals()], &[])
        .await
        .expect_err("an undeclared key must be refused");
    let text = e.to_string();
    assert!(
        text.contains("NOPERM") || text.contains("can't access at least one of the keys"),
        "refused for the wrong reason: {text}"
    );
}
