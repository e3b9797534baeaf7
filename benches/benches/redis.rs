//! Redis backend throughput at 50 concurrent clients, against the raw server limit.
//!
//! - `redis/create_proposal`, `redis/vote`, `redis/publish`: operations per second through
//!   `governance-redis` (one `RedisBackend`, i.e. one multiplexed connection, 50 concurrent
//!   tasks) against a `redis-server` this bench starts on a free port.
//! - Then, printed once: the same three operations measured over a fixed count, next to
//!   `redis-benchmark -c 50` at `-P 1` and `-P 16` running the *same script via EVALSHA* with equivalent
//!   arguments against the same server, and the ratio governance / raw.
//!
//! `cargo bench -p governance-benches --bench redis`
//! (needs `/usr/bin/redis-server` and `/usr/bin/redis-benchmark`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use governance_core::{
    AgentId, Blackboard, Message, MessageBus, PipelineId, Proposal, ProposalId, Vote,
};
use governance_redis::{PipelineKeys, RedisBackend, RedisConfig, scripts};

const CLIENTS: u64 = 50;
/// Votes per proposal in the vote workload (quorum is above it: no consensus write).
const VOTES_PER_PROPOSAL: u64 = 4;

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new("/usr/bin/redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("/usr/bin/redis-server is required for this bench");
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(s: &str) -> AgentId {
    AgentId::new(s).expect("id")
}

#[derive(Clone, Copy)]
enum Op {
    Create,
    Vote,
    Publish,
}

/// Runs `total` operations split over 50 concurrent tasks; returns the elapsed time.
async fn run(
    bb: &Arc<dyn Blackboard>,
    bus: &Arc<dyn MessageBus>,
    op: Op,
    total: u64,
    round: u64,
) -> Duration {
    let per_client = total.div_ceil(CLIENTS);
    let pipeline = |c: u64| PipelineId::new(format!("bench-{round}-{c}")).expect("id");
    if matches!(op, Op::Vote) {
        // Setup (not timed): the proposals the votes go to.
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (bb, p) = (bb.clone(), pipeline(c));
            tasks.push(tokio::spawn(async move {
                for i in 0..per_client.div_ceil(VOTES_PER_PROPOSAL) {
                    let id = ProposalId::new(format!("p{i}")).expect("id");
                    bb.create_proposal(&p, Proposal::new(id, agent("ALPHA"), "t", "c"))
                        .await
                        .expect("create");
                }
            }));
        }
        futures::future::join_all(tasks).await;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (bb, bus, p) = (bb.clone(), bus.clone(), pipeline(c));
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                match op {
                    Op::Create => {
                        let id = ProposalId::new(format!("c{i}")).expect("id");
                        bb.create_proposal(
                            &p,
                            Proposal::new(id, agent("ALPHA"), "title", "content"),
                        )
                        .await
                        .expect("create");
                    }
                    Op::Vote => {
                        let id =
                            ProposalId::new(format!("p{}", i / VOTES_PER_PROPOSAL)).expect("id");
                        let vote = Vote {
                            voter: agent(&format!("V{}", i % VOTES_PER_PROPOSAL)),
                            approve: true,
                            score: 0.8,
                            rationale: "looks right".into(),
                        };
                        bb.vote(
                            &p,
                            &id,
                            vote,
                            &governance_core::Quorum::new(100).expect("quorum").into(),
                        )
                        .await
                        .expect("vote");
                    }
                    Op::Publish => {
                        bus.publish(&p, Message::new(agent("ALPHA"), "*", "note", "hello"))
                            .await
                            .expect("publish");
                    }
                }
            }
        }));
    }
    futures::future::join_all(tasks).await;
    start.elapsed()
}

/// `redis-benchmark -c 50 -P <pipelining> -n <n> -r <keyspace>` running `args`; requests/s.
fn redis_benchmark(port: u16, n: u64, keyspace: u64, pipelining: u32, args: &[String]) -> f64 {
    let out = Command::new("/usr/bin/redis-benchmark")
        .args(["-p", &port.to_string(), "-c", "50", "-q"])
        .args(["-P", &pipelining.to_string()])
        .args(["-n", &n.to_string(), "-r", &keyspace.to_string()])
        .args(args)
        .output()
        .expect("/usr/bin/redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    // `-q` prints progress lines separated by '\r'; the last one ends in
    // "<n> requests per second, p50=…".
    let rps = text
        .rsplit('\r')
        .find_map(|l| {
            l.split(" requests per second")
                .next()
                .filter(|_| l.contains(" requests per second"))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    rps.unwrap_or_else(|| panic!("cannot parse redis-benchmark output: {text}"))
}

fn compare(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    bb: &Arc<dyn Blackboard>,
    bus: &Arc<dyn MessageBus>,
) {
    const N: u64 = 50_000;
    const PROPOSALS: u64 = N / VOTES_PER_PROPOSAL;
    let k = PipelineKeys::new("gov", &PipelineId::new("raw").expect("id"));
    let sha = |s: &scripts::ScriptSource| redis::Script::new(s.source).get_hash().to_owned();
    let body = r#"{"v":1,"id":"c__rand_int__","author":"ALPHA","title":"title","content":"content","created_at":"2026-01-24T10:00:00.000Z"}"#;
    let vote =
        r#"{"v":1,"voter":"V__rand_int__","approve":true,"score":0.8,"rationale":"looks right"}"#;
    let msg = r#"{"v":1,"from":"ALPHA","to":"*","topic":"note","content":"hello","ts":"2026-01-24T10:00:00.000Z"}"#;
    let s = |x: &str| x.to_owned();
    // The proposals the raw votes go to: a keyspace of 12,500 ids, ~98% of them created here,
    // so the N raw votes land ≈ 4 per proposal like ours (not on missing proposals).
    let _ = redis_benchmark(
        server.port,
        N,
        PROPOSALS,
        16,
        &[
            s("EVALSHA"),
            sha(&scripts::CREATE_PROPOSAL),
            s("4"),
            k.proposals(),
            k.proposal_ids(),
            k.proposal_status(),
            k.votes(),
            s("p__rand_int__"),
            s("ALPHA"),
            s(body),
            s("OPEN"),
            s("[]"),
        ],
    );
    let cases: Vec<(&str, Op, u64, Vec<String>)> = vec![
        (
            "create_proposal",
            Op::Create,
            1_000_000_000,
            vec![
                s("EVALSHA"),
                sha(&scripts::CREATE_PROPOSAL),
                s("4"),
                k.proposals(),
                k.proposal_ids(),
                k.proposal_status(),
                k.votes(),
                s("c__rand_int__"),
                s("ALPHA"),
                s(body),
                s("OPEN"),
                s("[]"),
            ],
        ),
        (
            "vote",
            Op::Vote,
            PROPOSALS,
            vec![
                s("EVALSHA"),
                sha(&scripts::VOTE),
                s("4"),
                k.proposals(),
                k.proposal_status(),
                k.votes(),
                k.consensus(),
                s("p__rand_int__"),
                s("V__rand_int__"),
                s("1"),
                s(vote),
                s("100"),
                s("2026-01-24T10:00:00.000000Z"),
                s("1"),
            ],
        ),
        (
            "publish",
            Op::Publish,
            1_000_000,
            vec![
                s("EVALSHA"),
                sha(&scripts::PUBLISH),
                s("2"),
                k.bus_seq(),
                k.bus_log(),
                s(msg),
                s(""),
                k.bus_channel(),
            ],
        ),
    ];
    println!("\n50 concurrent clients, {N} operations each side, same server, same scripts:");
    println!(
        "(ours: one multiplexed connection, 50 tasks, which pipelines across tasks; raw: 50 \
         connections at -P 1 and -P 16)"
    );
    println!(
        "{:<16} {:>13} {:>11} {:>6} {:>12} {:>6}",
        "operation", "governance/s", "raw -P1/s", "ratio", "raw -P16/s", "ratio"
    );
    for (i, (name, op, keyspace, args)) in cases.into_iter().enumerate() {
        let elapsed = rt.block_on(run(bb, bus, op, N, 1_000_000 + i as u64));
        #[allow(clippy::cast_precision_loss)]
        let ours = N as f64 / elapsed.as_secs_f64();
        let p1 = redis_benchmark(server.port, N, keyspace, 1, &args);
        let p16 = redis_benchmark(server.port, N, keyspace, 16, &args);
        println!(
            "{name:<16} {ours:>13.0} {p1:>11.0} {:>6.2} {p16:>12.0} {:>6.2}",
            ours / p1,
            ours / p16
        );
    }
}

fn main() {
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let backend = rt
        .block_on(RedisBackend::connect(RedisConfig::new(format!(
            "redis://127.0.0.1:{}",
            server.port
        ))))
        .expect("connect");
    let (bb, bus) = (backend.blackboard(), backend.bus());
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut round = 0_u64;
    for (name, op) in [
        ("create_proposal", Op::Create),
        ("vote", Op::Vote),
        ("publish", Op::Publish),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                round += 1;
                // Batches of at least 500 operations keep all 50 clients busy.
                let total = iters.max(500);
                let elapsed = rt.block_on(run(&bb, &bus, op, total, round));
                #[allow(clippy::cast_precision_loss)]
                let per_op = elapsed.as_secs_f64() / total as f64;
                Duration::from_secs_f64(per_op * iters as f64)
            });
        });
    }
    group.finish();
    compare(&rt, &server, &bb, &bus);
    c.final_summary();
}
