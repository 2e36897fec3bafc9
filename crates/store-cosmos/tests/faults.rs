//! Throttling and transient faults (the SDK's fault injection on the
//! in-memory emulator): commands still land once each, none is lost and
//! none appended twice.

use std::sync::Arc;

use azure_data_cosmos_driver::fault_injection::{
    FaultInjectionConditionBuilder, FaultInjectionErrorType, FaultInjectionResultBuilder, FaultInjectionRule,
    FaultInjectionRuleBuilder, FaultOperationType,
};
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::Command;
use orderflow_pipeline::ports::EventStore;
use orderflow_pipeline::processor::{CommandProcessor, Envelope, IdempotencyKey};
use orderflow_store_cosmos::{emulator, init, CosmosStore};

fn fault(
    id: &str,
    operation: FaultOperationType,
    error: FaultInjectionErrorType,
    hits: u32,
) -> Arc<FaultInjectionRule> {
    Arc::new(
        FaultInjectionRuleBuilder::new(id, FaultInjectionResultBuilder::new().with_error(error).build())
            .with_condition(FaultInjectionConditionBuilder::new().with_operation_type(operation).build())
            .with_hit_limit(hits)
            .build(),
    )
}

/// Executes 20 restocks of one SKU with idempotency keys, each retried as a
/// caller (HTTP client, Kafka, change feed) retries a failed attempt, and
/// returns the stream's events and tip afterwards.
async fn restock_twenty_times(rules: &[Arc<FaultInjectionRule>]) -> (usize, u64, serde_json::Value) {
    let client = emulator::client_with_faults(rules.to_vec()).await.expect("an emulator");
    init(&client, "orderflow").await.expect("init");
    let store = Arc::new(CosmosStore::connect(&client, "orderflow").await.expect("connect"));
    let processor = CommandProcessor::new(store.clone());
    for i in 0..20 {
        let restock = Command::Inventory {
            sku: "MUG".into(),
            command: InventoryCommand::Restock { quantity: 1.try_into().expect("a quantity") },
        };
        let key = IdempotencyKey::http("", &format!("restock-{i}"), format!("fp-{i}"));
        let envelope = Envelope::idempotent(format!("restock-{i}"), key);
        let mut attempts = 0;
        while let Err(error) = processor.execute(&restock, &envelope).await {
            attempts += 1;
            assert!(attempts < 10, "command {i} never landed: {error}");
        }
    }
    assert!(rules.iter().all(|rule| rule.hit_count() > 0), "the faults were injected");
    let events = store.read_stream("Sku-MUG", 0, 100).await.expect("read");
    let tip = store.load("Sku-MUG", None).await.expect("load").tip.expect("a tip");
    (events.len(), tip.version, tip.state["onHand"].clone())
}

#[tokio::test]
async fn timeouts_and_retry_with_are_retried_and_an_ambiguous_commit_is_not_appended_twice() {
    let rules = vec![
        fault("retry-with-batches", FaultOperationType::BatchItem, FaultInjectionErrorType::RetryWith, 2),
        fault("reads-time-out", FaultOperationType::ReadItem, FaultInjectionErrorType::Timeout, 2),
        // The batch commits, then the answer is lost: the caller retries a
        // command that is already stored.
        fault("lost-answers", FaultOperationType::BatchItem, FaultInjectionErrorType::ResponseTimeoutAfterService, 3),
    ];
    let (events, version, on_hand) = restock_twenty_times(&rules).await;
    assert_eq!((events, version, on_hand), (20, 20, serde_json::json!(20)), "every command exactly once");
}

#[tokio::test]
async fn throttled_and_unavailable_requests_are_retried_without_duplicates() {
    let rules = vec![
        fault("throttle-batches", FaultOperationType::BatchItem, FaultInjectionErrorType::TooManyRequests, 3),
        fault("reads-unavailable", FaultOperationType::ReadItem, FaultInjectionErrorType::ServiceUnavailable, 2),
    ];
    let (events, version, on_hand) = restock_twenty_times(&rules).await;
    assert_eq!((events, version, on_hand), (20, 20, serde_json::json!(20)), "every command once");
}
