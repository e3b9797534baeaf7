//! A worker whose work streams' consumer group disappears (deleted by an operator, or lost
//! with the server's data) creates it again, told by the server's `NOGROUP` code, and plays
//! the pipelines queued there.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, backend};
use governance_core::{
    Agent, Config, Governance, LocalLlm, LocalLlmConfig, MemoryStore, PipelineStatus, SpawnRequest,
};
use governance_core::{Alpha, Beta, Gamma};
use governance_redis::remote::WORKER_GROUP;
use governance_redis::{RemoteRole, Worker};
use tokio_util::sync::CancellationToken;

const ROLES: [&str; 3] = ["ALPHA", "BETA", "GAMMA"];

fn config() -> Config {
    let mut conf = Config::default();
    conf.agent_poll_interval = Duration::from_millis(20);
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_recreates_a_deleted_work_group_and_plays_the_pipeline() {
    let server = RedisServer::start();
    let b = backend(&server).await;
    let mut builder = Governance::builder()
        .config(config())
        .blackboard(b.blackboard())
        .bus(b.bus())
        .store(Arc::new(MemoryStore::default()));
    for role in ROLES {
        builder = builder.remote_role(Arc::new(RemoteRole::new(&b, role, true).unwrap()));
    }
    let gov = builder.build().expect("owner builds");
    let roles: Vec<Arc<dyn Agent>> = vec![Arc::new(Alpha), Arc::new(Beta), Arc::new(Gamma)];
    let llm = Arc::new(LocalLlm::new(LocalLlmConfig::default()));
    let worker = Worker::new(&b, "w1", roles, llm, config(), Duration::from_secs(2)).unwrap();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(worker.run(cancel.clone()));

    // the worker made its groups at start; an operator deletes them under it
    for role in ROLES {
        let stream = format!("gov:work:{role}");
        let mut waited = 0;
        while server
            .raw(&["XGROUP", "DESTROY", &stream, WORKER_GROUP])
            .unwrap()
            != ":1"
        {
            waited += 1;
            assert!(
                waited < 3000,
                "the worker never created the group of {stream}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let id = gov
        .spawn(SpawnRequest::new("after the groups were deleted"))
        .await
        .unwrap();
    // bounded only against a hang: without the group no work is ever claimed
    let rec = tokio::time::timeout(Duration::from_secs(120), gov.wait(&id))
        .await
        .expect("the pipeline finishes")
        .unwrap();
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    for role in ROLES {
        let groups = server
            .raw(&["XINFO", "GROUPS", &format!("gov:work:{role}")])
            .unwrap();
        assert!(
            groups.starts_with("*1"),
            "the group of {role} is back: {groups}"
        );
    }
    cancel.cancel();
    running.await.unwrap().unwrap();
}
