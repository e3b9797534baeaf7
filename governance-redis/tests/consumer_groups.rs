//! At-least-once consumer groups over a pipeline's bus log: each message goes to one consumer of
//! a group, acknowledged entries are not redelivered, a dead consumer's pending entries are
//! taken over with `reclaim`, and the group survives a server restart (or is re-created when
//! the server lost its data).

mod common;

use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{AgentId, Error, Message, MessageBus, PipelineId};
use governance_redis::{Delivery, GroupConsumer, RedisBus};

fn pipeline(s: &str) -> PipelineId {
    PipelineId::new(s).unwrap()
}

async fn publish(bus: &RedisBus, p: &PipelineId, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let m = Message::new(AgentId::new("ALPHA").unwrap(), "*", "t", format!("m{i}"));
        seqs.push(bus.publish(p, m).await.expect("publish"));
    }
    seqs
}

fn seqs(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(Delivery::seq).collect()
}

/// Reads (no waiting) and acknowledges until nothing is left.
async fn drain(c: &mut GroupConsumer) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let ds = c.next(100, None).await.expect("next");
        if ds.is_empty() {
            return out;
        }
        for d in &ds {
            assert_eq!(d.id, format!("{}-0", d.seq()), "entry id is <seq>-0");
            c.ack(d).await.expect("ack");
        }
        out.extend(seqs(&ds));
    }
}

#[tokio::test]
async fn each_message_goes_to_exactly_one_consumer_of_a_group() {
    let server = RedisServer::start();
    let bus = backend(&server).await.redis_bus();
    let p = pipeline("p1");
    let before = publish(&bus, &p, 7).await; // in the log before the group exists
    let mut a = bus.consumer(&p, "workers", "a").await.expect("consumer a");
    let mut b = bus.consumer(&p, "workers", "b").await.expect("consumer b");
    let after = publish(&bus, &p, 13).await;

    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    loop {
        let da = a.next(3, None).await.expect("a.next");
        let db = b.next(3, None).await.expect("b.next");
        if da.is_empty() && db.is_empty() {
            break;
        }
        for d in &da {
            a.ack(d).await.expect("ack a");
        }
        for d in &db {
            b.ack(d).await.expect("ack b");
        }
        got_a.extend(seqs(&da));
        got_b.extend(seqs(&db));
    }
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "{got_a:?} {got_b:?}"
    );
    let mut all: Vec<u64> = got_a.iter().chain(&got_b).copied().collect();
    all.sort_unstable();
    let expected: Vec<u64> = before.iter().chain(&after).copied().collect();
    assert_eq!(
        all, expected,
        "every seq exactly once across both consumers"
    );

    // Acknowledged entries are not delivered again: not to fresh instances of the same
    // consumers (which first re-read their own pending entries), not by reclaim.
    let mut a2 = bus.consumer(&p, "workers", "a").await.expect("a again");
    assert!(a2.next(100, None).await.expect("next").is_empty());
    assert!(
        a2.reclaim(Duration::ZERO, 100)
            .await
            .expect("reclaim")
            .is_empty()
    );
    let mut b2 = bus.consumer(&p, "workers", "b").await.expect("b again");
    assert!(b2.next(100, None).await.expect("next").is_empty());

    // Another group gets every message too.
    let mut audit = bus.consumer(&p, "audit", "a").await.expect("audit");
    assert_eq!(drain(&mut audit).await, expected);

    // New messages reach a waiting consumer.
    let waiter = tokio::spawn(async move { a2.next(10, Some(Duration::from_secs(30))).await });
    let new = publish(&bus, &p, 1).await;
    let got = waiter.await.expect("join").expect("next");
    assert_eq!(seqs(&got), new);
}

#[tokio::test]
async fn a_dead_consumers_pending_entries_are_reclaimed_by_another() {
    let server = RedisServer::start();
    let bus = backend(&server).await.redis_bus();
    let p = pipeline("p2");
    let mut dying = bus.consumer(&p, "g", "dying").await.expect("dying");
    let mut live = bus.consumer(&p, "g", "live").await.expect("live");
    let all = publish(&bus, &p, 10).await;

    let lost = seqs(&dying.next(4, None).await.expect("dying reads"));
    assert_eq!(lost, all[..4]);
    drop(dying); // dies without acknowledging

    let rest = drain(&mut live).await;
    assert_eq!(
        rest,
        all[4..],
        "the live consumer gets the others, not the pending ones"
    );

    // Poll (bounded) until the dead consumer's entries have been idle for 50 ms.
    let mut reclaimed = Vec::new();
    for _ in 0..400 {
        reclaimed = live
            .reclaim(Duration::from_millis(50), 100)
            .await
            .expect("reclaim");
        if !reclaimed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seqs(&reclaimed),
        lost,
        "exactly the dead consumer's entries"
    );
    for d in &reclaimed {
        live.ack(d).await.expect("ack");
    }
    assert!(
        live.reclaim(Duration::ZERO, 100)
            .await
            .expect("reclaim")
            .is_empty(),
        "nothing pending any more"
    );
    let mut revived = bus.consumer(&p, "g", "dying").await.expect("revived");
    assert!(revived.next(100, None).await.expect("next").is_empty());
}

#[tokio::test]
async fn a_consumer_restarted_under_the_same_name_gets_its_pending_entries_first() {
    let server = RedisServer::start();
    let bus = backend(&server).await.redis_bus();
    let p = pipeline("p3");
    let mut c = bus.consumer(&p, "g", "worker-1").await.expect("consumer");
    let all = publish(&bus, &p, 5).await;
    let first = c.next(2, None).await.expect("next");
    c.ack(&first[0]).await.expect("ack the first only");
    drop(c);

    let mut again = bus.consumer(&p, "g", "worker-1").await.expect("again");
    let redelivered = again.next(100, None).await.expect("pending");
    assert_eq!(
        seqs(&redelivered),
        [all[1]],
        "the unacknowledged one, first"
    );
    again.ack(&redelivered[0]).await.expect("ack");
    assert_eq!(drain(&mut again).await, all[2..]);
}

#[tokio::test]
async fn invalid_group_and_consumer_names_are_rejected() {
    let server = RedisServer::start();
    let bus = backend(&server).await.redis_bus();
    let p = pipeline("p4");
    let long = "x".repeat(65);
    for (group, consumer) in [
        ("", "c"),
        ("bad name", "c"),
        ("a}b", "c"),
        (long.as_str(), "c"),
        ("g", ""),
        ("g", "c*"),
        ("g", long.as_str()),
    ] {
        let err = bus.consumer(&p, group, consumer).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidId { .. }),
            "{group:?}/{consumer:?}: {err}"
        );
    }
    bus.consumer(&p, &"x".repeat(64), "A_b-9")
        .await
        .expect("64 characters are fine");
}

#[tokio::test]
async fn consumers_keep_working_across_server_restarts() {
    let mut server = RedisServer::start();
    let bus = backend(&server).await.redis_bus();
    let p = pipeline("p5");
    let mut c = bus.consumer(&p, "g", "c").await.expect("consumer");
    let before = publish(&bus, &p, 3).await;
    let pending = c.next(1, None).await.expect("next");
    assert_eq!(seqs(&pending), before[..1]);

    // A restart that keeps the data: the group and its pending entries survive.
    server.stop_saving();
    server.start_again();
    let after = publish(&bus, &p, 2).await;
    let mut c2 = bus.consumer(&p, "g", "c").await.expect("same name");
    let mut got = drain(&mut c2).await;
    got.sort_unstable();
    let expected: Vec<u64> = before.iter().chain(&after).copied().collect();
    assert_eq!(got, expected, "pending + unread + new, each once");
    assert!(drain(&mut c).await.is_empty(), "all acknowledged");

    // A server that lost everything (FLUSHALL here; a restart without persistence is the
    // same): the group is created again on the next call.
    assert_eq!(server.raw(&["FLUSHALL"]).expect("flushall"), "+OK");
    let fresh = publish(&bus, &p, 2).await;
    assert_eq!(fresh, [1, 2], "the bus starts again from an empty server");
    assert_eq!(drain(&mut c).await, fresh);
}
