//! The money ledger in a real redis-server: many tasks on separate connections (as several
//! worker processes would be) reserving against one pipeline never pass its limit in total,
//! settling gives back the difference, a refusal changes nothing, and seeding from the system
//! of record only ever raises the counters.

mod common;

use std::sync::Arc;

use common::{RedisServer, backend};
use governance_core::{AgentId, Cost, CostLedger, ErrorKind, PipelineId};

fn agent(i: usize) -> AgentId {
    AgentId::new(format!("W{i}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_from_many_connections_never_pass_the_limit() {
    let server = RedisServer::start();
    let pipeline = PipelineId::generate();
    let limit = Cost::from_nanos(1_000_000); // $0.001
    let amount = Cost::from_nanos(30_000);
    // eight "workers", each its own backend (its own connections), 40 reservations each
    let mut ledgers: Vec<Arc<dyn CostLedger>> = Vec::new();
    for _ in 0..8 {
        ledgers.push(backend(&server).await.cost_ledger());
    }
    let mut tasks = Vec::new();
    for (w, ledger) in ledgers.iter().enumerate() {
        let (ledger, pipeline) = (ledger.clone(), pipeline.clone());
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..40 {
                match ledger
                    .reserve(&pipeline, &agent(w), amount, Some(limit), None)
                    .await
                {
                    Ok(r) => held.push(r),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::BudgetExceeded, "{e}");
                        assert!(e.to_string().contains("max_cost_per_pipeline_usd"), "{e}");
                        refused += 1;
                    }
                }
            }
            (held, refused)
        }));
    }
    let mut held = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (h, r) = t.await.unwrap();
        held.extend(h);
        refused += r;
    }
    // 1_000_000 / 30_000 = 33 fit, exactly; the other 287 were refused
    assert_eq!(held.len(), 33);
    assert_eq!(refused, 8 * 40 - 33);
    let spent = ledgers[0].spent(&pipeline).await.unwrap();
    assert_eq!(spent, amount.saturating_mul(33));
    assert!(spent <= limit);

    // settling each to a third of its worst case gives the rest back
    let n = held.len() as u64;
    for (i, r) in held.into_iter().enumerate() {
        ledgers[i % ledgers.len()]
            .settle(r, Cost::from_nanos(10_000))
            .await
            .unwrap();
    }
    assert_eq!(
        ledgers[3].spent(&pipeline).await.unwrap(),
        Cost::from_nanos(10_000 * n)
    );
    // so more calls fit again, up to the limit and no further
    let room = (limit.nanos() - 10_000 * n) / amount.nanos();
    for i in 0..room {
        let _in_flight = ledgers[0]
            .reserve(&pipeline, &agent(0), amount, Some(limit), None)
            .await
            .unwrap_or_else(|e| panic!("reservation {i} of {room}: {e}"));
    }
    assert!(
        ledgers[1]
            .reserve(&pipeline, &agent(1), amount, Some(limit), None)
            .await
            .is_err()
    );
    assert!(ledgers[1].spent(&pipeline).await.unwrap() <= limit);
}

#[tokio::test]
async fn the_agent_limit_holds_across_connections_and_a_refusal_changes_nothing() {
    let server = RedisServer::start();
    let (a, b) = (backend(&server).await, backend(&server).await);
    let (a, b) = (a.cost_ledger(), b.cost_ledger());
    let pipeline = PipelineId::generate();
    let alpha = AgentId::new("ALPHA").unwrap();
    let agent_limit = Some(Cost::from_nanos(500));
    let r = a
        .reserve(&pipeline, &alpha, Cost::from_nanos(400), None, agent_limit)
        .await
        .unwrap();
    let e = b
        .reserve(&pipeline, &alpha, Cost::from_nanos(200), None, agent_limit)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("max_cost_per_agent_usd"), "{e}");
    assert_eq!(
        b.agent_spent(&pipeline, &alpha).await.unwrap(),
        Cost::from_nanos(400)
    );
    assert_eq!(b.spent(&pipeline).await.unwrap(), Cost::from_nanos(400));
    // another agent is not held by ALPHA's limit
    let _beta = b
        .reserve(
            &pipeline,
            &AgentId::new("BETA").unwrap(),
            Cost::from_nanos(450),
            None,
            agent_limit,
        )
        .await
        .unwrap();
    // settle above the reservation (the provider billed more than the estimate)
    a.settle(r, Cost::from_nanos(450)).await.unwrap();
    assert_eq!(
        b.agent_spent(&pipeline, &alpha).await.unwrap(),
        Cost::from_nanos(450)
    );
    assert_eq!(b.spent(&pipeline).await.unwrap(), Cost::from_nanos(900));
}

#[tokio::test]
async fn seeding_from_the_ledger_raises_lost_counters_and_never_lowers_them() {
    let mut server = RedisServer::start();
    let l = backend(&server).await.cost_ledger();
    let pipeline = PipelineId::generate();
    let alpha = AgentId::new("ALPHA").unwrap();
    let limit = Some(Cost::from_nanos(1000));
    let _held = l
        .reserve(&pipeline, &alpha, Cost::from_nanos(700), limit, None)
        .await
        .unwrap();
    // a lower figure (the ledger does not know the call in flight) changes nothing
    l.seed(
        &pipeline,
        Cost::from_nanos(100),
        &[(alpha.clone(), Cost::from_nanos(100))],
    )
    .await
    .unwrap();
    assert_eq!(l.spent(&pipeline).await.unwrap(), Cost::from_nanos(700));

    // Redis comes back empty: the counters are gone until they are seeded again
    server.kill();
    server.start_again();
    let l = backend(&server).await.cost_ledger();
    assert_eq!(l.spent(&pipeline).await.unwrap(), Cost::ZERO);
    l.seed(
        &pipeline,
        Cost::from_nanos(650),
        &[(alpha.clone(), Cost::from_nanos(650))],
    )
    .await
    .unwrap();
    assert_eq!(l.spent(&pipeline).await.unwrap(), Cost::from_nanos(650));
    assert_eq!(
        l.agent_spent(&pipeline, &alpha).await.unwrap(),
        Cost::from_nanos(650)
    );
    assert!(
        l.reserve(&pipeline, &alpha, Cost::from_nanos(400), limit, None)
            .await
            .is_err(),
        "the seeded spending counts against the budget"
    );
}
