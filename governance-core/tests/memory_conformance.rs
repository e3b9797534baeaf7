//! The in-memory backends run the whole conformance suite.

use std::sync::Arc;

use governance_core::testkit;
use governance_core::{MemoryBlackboard, MemoryBus, MemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_blackboard_conforms() {
    let bb = Arc::new(MemoryBlackboard::new());
    testkit::blackboard_suite(bb.clone()).await;
    // One instance runs the suite twice: every check uses fresh pipelines.
    testkit::blackboard_suite(bb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_bus_conforms() {
    let bus = Arc::new(MemoryBus::new());
    testkit::bus_suite(bus.clone()).await;
    testkit::bus_suite(bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_bus_with_a_tiny_subscriber_buffer_conforms() {
    testkit::bus_suite(Arc::new(MemoryBus::with_capacity(4))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_ledger_conforms() {
    let store = Arc::new(MemoryStore::new());
    testkit::ledger_suite(store.clone()).await;
    testkit::ledger_suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_checkpoints_conform() {
    let store = Arc::new(MemoryStore::new());
    testkit::checkpoint_suite(store.clone()).await;
    testkit::checkpoint_suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_registry_conforms() {
    let store = Arc::new(MemoryStore::new());
    testkit::registry_suite(store.clone()).await;
    testkit::registry_suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_memory_store_serves_all_three_store_suites() {
    let store = Arc::new(MemoryStore::new());
    testkit::ledger_suite(store.clone()).await;
    testkit::checkpoint_suite(store.clone()).await;
    testkit::registry_suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_state_store_conforms() {
    let store = Arc::new(MemoryStore::new());
    testkit::state_store_suite(store.clone()).await;
    testkit::state_store_suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_store_refuses_conflicts_before_writing() {
    let store = Arc::new(MemoryStore::new());
    let split = governance_core::SplitStore::new(store.clone(), store.clone(), store);
    testkit::state_store_suite(Arc::new(split)).await;
}
