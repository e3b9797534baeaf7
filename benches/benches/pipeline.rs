//! Hot paths of governance-core: a whole pipeline on the zero-latency local LLM and in-memory
//! backends (sequentially and 1,000 in flight), state-machine transitions, in-memory blackboard
//! votes and event fan-out.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use governance_core::{
    AgentId, Blackboard, Config, Governance, MemoryBlackboard, PipelineId, PipelineStatus,
    Proposal, ProposalId, SpawnRequest, Vote,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn engine() -> Governance {
    Governance::builder()
        .config(Config::default())
        .build()
        .expect("engine")
}

fn pipelines(c: &mut Criterion) {
    let rt = runtime();
    let gov = engine();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sequential_to_completed", |b| {
        b.to_async(&rt).iter(|| async {
            let id = gov
                .spawn(SpawnRequest::new("Design a caching strategy"))
                .await
                .expect("spawn");
            let rec = gov.wait(&id).await.expect("wait");
            assert_eq!(rec.status, PipelineStatus::Completed);
        });
    });
    g.throughput(Throughput::Elements(1000));
    g.sample_size(10);
    g.bench_function("1000_in_flight_to_completed", |b| {
        b.to_async(&rt).iter(|| async {
            let ids = futures::future::join_all((0..1000).map(|i| {
                let gov = gov.clone();
                async move {
                    gov.spawn(SpawnRequest::new(format!("Design a caching strategy {i}")))
                        .await
                        .expect("spawn")
                }
            }))
            .await;
            for id in ids {
                let rec = gov.wait(&id).await.expect("wait");
                assert_eq!(rec.status, PipelineStatus::Completed);
            }
        });
    });
    g.finish();
}

fn state_machine(c: &mut Criterion) {
    c.bench_function("state_machine/full_path", |b| {
        b.iter(|| {
            let mut s = black_box(PipelineStatus::Spawned);
            for to in [
                PipelineStatus::Running,
                PipelineStatus::Report,
                PipelineStatus::Orchestrating,
                PipelineStatus::Completed,
            ] {
                s = s.transition(to).expect("legal");
            }
            s
        });
    });
}

fn blackboard(c: &mut Criterion) {
    let rt = runtime();
    let bb = Arc::new(MemoryBlackboard::default());
    let author = AgentId::new("ALPHA").expect("id");
    c.bench_function("memory_blackboard/create_and_vote_to_consensus", |b| {
        b.to_async(&rt).iter_batched(
            PipelineId::generate,
            |pid| {
                let bb = bb.clone();
                let author = author.clone();
                async move {
                    let id = ProposalId::new("p-1").expect("id");
                    bb.create_proposal(&pid, Proposal::new(id.clone(), author.clone(), "t", "c"))
                        .await
                        .expect("create");
                    for voter in ["ALPHA", "BETA"] {
                        let v = Vote {
                            voter: AgentId::new(voter).expect("id"),
                            approve: true,
                            score: 1.0,
                            rationale: String::new(),
                        };
                        bb.vote(&pid, &id, v, &governance_core::Quorum::DEFAULT.into())
                            .await
                            .expect("vote");
                    }
                    bb.clear(&pid).await.expect("clear");
                }
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, pipelines, state_machine, blackboard);
criterion_main!(benches);
