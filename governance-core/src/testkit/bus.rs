//! The [`MessageBus`] conformance suite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::ids::PipelineId;
use crate::message_bus::{BROADCAST, Message, MessageBus};

use super::{agent, fresh, join_all, now_ms};

type Bus = Arc<dyn MessageBus>;

/// How long a subscriber waits for a message that must arrive.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check of the [`MessageBus`] contract against `bus`; panics naming the failed check.
///
/// Checks: reading an unknown pipeline is empty; `publish` assigns gap-free `seq` from 1 and
/// `read` returns the messages intact and in order, with `after`/`limit` paging; 8 tasks × 50
/// concurrent publishes get exactly the seqs 1..=400 (no gap, no duplicate) and paging through
/// them is lossless; `subscribe` delivers messages published after it (not before), to every
/// subscriber, only of its own pipeline; `clear` deletes the log; pipelines are isolated.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the suites take the backend as the Arc callers already hold"
)]
pub async fn bus_suite(bus: Arc<dyn MessageBus>) {
    bus.ping().await.expect("[bus::ping] ping failed");
    publish_and_read(&bus).await;
    concurrent_publishes(&bus).await;
    subscribe_receives_later_messages(&bus).await;
    subscribers_are_per_pipeline(&bus).await;
    clear_deletes_the_log(&bus).await;
}

fn msg(from: &str, to: &str, content: impl Into<String>) -> Message {
    let mut m = Message::new(agent(from), to, "note", content);
    m.ts = now_ms();
    m
}

async fn publish(bus: &Bus, p: &PipelineId, m: Message, check: &str) -> u64 {
    bus.publish(p, m)
        .await
        .unwrap_or_else(|e| panic!("[bus::{check}] publish failed: {e}"))
}

async fn read(bus: &Bus, p: &PipelineId, after: u64, limit: usize, check: &str) -> Vec<Message> {
    bus.read(p, after, limit)
        .await
        .unwrap_or_else(|e| panic!("[bus::{check}] read(after {after}, limit {limit}) failed: {e}"))
}

async fn next(stream: &mut BoxStream<'static, Message>, check: &str) -> Message {
    match tokio::time::timeout(RECV_TIMEOUT, stream.next()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("[bus::{check}] the subscription ended"),
        Err(_) => panic!("[bus::{check}] no message within {RECV_TIMEOUT:?}"),
    }
}

fn same_message(got: &Message, sent: &Message, seq: u64) -> bool {
    got.seq == seq
        && got.from == sent.from
        && got.to == sent.to
        && got.topic == sent.topic
        && got.content == sent.content
        && got.ts == sent.ts
}

async fn publish_and_read(bus: &Bus) {
    const C: &str = "[bus::publish_and_read]";
    let ck = "publish_and_read";
    let p = fresh();
    assert!(
        read(bus, &p, 0, 10, ck).await.is_empty(),
        "{C} an unknown pipeline has an empty log"
    );
    let sent = [
        msg("ALPHA", "BETA", "first"),
        msg("BETA", BROADCAST, "second"),
        msg("GAMMA", "ALPHA", "third ✓"),
    ];
    for (i, m) in sent.iter().enumerate() {
        let seq = publish(bus, &p, m.clone(), ck).await;
        assert_eq!(seq, i as u64 + 1, "{C} seqs start at 1 and have no gaps");
    }
    let all = read(bus, &p, 0, 10, ck).await;
    assert_eq!(all.len(), 3, "{C} read(0, 10) after 3 publishes");
    for (i, (got, sent)) in all.iter().zip(&sent).enumerate() {
        assert!(
            same_message(got, sent, i as u64 + 1),
            "{C} message {i} differs: got {got:?}, sent {sent:?}"
        );
    }
    let page = read(bus, &p, 1, 1, ck).await;
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [2],
        "{C} read(after 1, limit 1)"
    );
    assert!(
        read(bus, &p, 3, 10, ck).await.is_empty(),
        "{C} read after the last seq is empty"
    );
    assert_eq!(
        read(bus, &p, 2, 100, ck).await.len(),
        1,
        "{C} read(after 2)"
    );
}

async fn concurrent_publishes(bus: &Bus) {
    const C: &str = "[bus::concurrent_publishes]";
    let ck = "concurrent_publishes";
    let p = fresh();
    let handles = (0..8)
        .map(|t| {
            let (bus, p) = (Arc::clone(bus), p.clone());
            tokio::spawn(async move {
                let mut got = Vec::with_capacity(50);
                for i in 0..50 {
                    let content = format!("t{t}-m{i}");
                    let seq = publish(&bus, &p, msg("ALPHA", BROADCAST, content.clone()), ck).await;
                    got.push((seq, content));
                }
                got
            })
        })
        .collect();
    let published: HashMap<u64, String> =
        join_all(handles, C).await.into_iter().flatten().collect();
    let mut seqs: Vec<u64> = published.keys().copied().collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<_>>(),
        "{C} 400 concurrent publishes must get exactly the seqs 1..=400"
    );

    let all = read(bus, &p, 0, 1000, ck).await;
    assert_eq!(all.len(), 400, "{C} read(0, 1000) after 400 publishes");
    for (i, m) in all.iter().enumerate() {
        assert_eq!(
            m.seq,
            i as u64 + 1,
            "{C} the log must be in seq order without gaps"
        );
        assert_eq!(
            Some(&m.content),
            published.get(&m.seq),
            "{C} message {} has the content of another seq",
            m.seq
        );
    }
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = read(bus, &p, after, 37, ck).await;
        assert!(page.len() <= 37, "{C} read returned more than limit");
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page.into_iter().map(|m| m.seq));
    }
    assert_eq!(
        paged,
        (1..=400).collect::<Vec<_>>(),
        "{C} paging with limit 37 must return every seq once, in order"
    );
}

async fn subscribe_receives_later_messages(bus: &Bus) {
    const C: &str = "[bus::subscribe]";
    let ck = "subscribe";
    let p = fresh();
    publish(bus, &p, msg("ALPHA", BROADCAST, "before"), ck).await;
    let mut s1 = bus
        .subscribe(&p)
        .await
        .expect("[bus::subscribe] subscribe 1");
    let mut s2 = bus
        .subscribe(&p)
        .await
        .expect("[bus::subscribe] subscribe 2");
    let sent = [
        msg("ALPHA", "BETA", "a"),
        msg("BETA", "ALPHA", "b"),
        msg("GAMMA", BROADCAST, "c"),
    ];
    for m in &sent {
        publish(bus, &p, m.clone(), ck).await;
    }
    for (name, stream) in [("first", &mut s1), ("second", &mut s2)] {
        for (i, m) in sent.iter().enumerate() {
            let got = next(stream, ck).await;
            assert!(
                same_message(&got, m, i as u64 + 2),
                "{C} {name} subscriber, message {i} (none from before subscribe): \
                 got {got:?}, sent {m:?}"
            );
        }
    }
    drop(s1);
    publish(bus, &p, msg("ALPHA", BROADCAST, "after drop"), ck).await;
    let got = next(&mut s2, ck).await;
    assert_eq!(
        (got.seq, got.content.as_str()),
        (5, "after drop"),
        "{C} a dropped subscriber must not disturb the others"
    );
}

async fn subscribers_are_per_pipeline(bus: &Bus) {
    const C: &str = "[bus::subscribers_are_per_pipeline]";
    let ck = "subscribers_are_per_pipeline";
    let (a, b) = (fresh(), fresh());
    let mut sa = bus
        .subscribe(&a)
        .await
        .expect("[bus::subscribers_are_per_pipeline] subscribe a");
    let mut sb = bus
        .subscribe(&b)
        .await
        .expect("[bus::subscribers_are_per_pipeline] subscribe b");
    publish(bus, &a, msg("ALPHA", BROADCAST, "for a"), ck).await;
    publish(bus, &b, msg("ALPHA", BROADCAST, "for b"), ck).await;
    assert_eq!(
        next(&mut sa, ck).await.content,
        "for a",
        "{C} subscriber of a"
    );
    assert_eq!(
        next(&mut sb, ck).await.content,
        "for b",
        "{C} subscriber of b must not see a's messages"
    );
    assert_eq!(
        read(bus, &b, 0, 10, ck).await.len(),
        1,
        "{C} logs are per pipeline"
    );
}

async fn clear_deletes_the_log(bus: &Bus) {
    const C: &str = "[bus::clear]";
    let ck = "clear";
    let (p, other) = (fresh(), fresh());
    for i in 0..3 {
        publish(bus, &p, msg("ALPHA", BROADCAST, format!("m{i}")), ck).await;
    }
    publish(bus, &other, msg("ALPHA", BROADCAST, "stays"), ck).await;
    bus.clear(&p).await.expect("[bus::clear] clear");
    assert!(
        read(bus, &p, 0, 10, ck).await.is_empty(),
        "{C} the log must be empty after clear"
    );
    assert_eq!(
        read(bus, &other, 0, 10, ck).await.len(),
        1,
        "{C} clear must not touch another pipeline"
    );
    bus.clear(&p)
        .await
        .expect("[bus::clear] clearing an empty pipeline is fine");
    let seq = publish(bus, &p, msg("ALPHA", BROADCAST, "again"), ck).await;
    let log = read(bus, &p, 0, 10, ck).await;
    assert_eq!(
        log.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [seq],
        "{C} a cleared pipeline can be reused"
    );
}
