//! Measures the request units of orderflow's Cosmos DB operations on the
//! SDK's in-memory emulator (its RU model: relative costs, not Azure's bill),
//! as one stream grows from 1 to 10,000 events. What a whole order costs,
//! through every step, is `orderflow cost` (on any account).
//!
//! `cargo run --release -p orderflow-store-cosmos --features emulator --example request_units`

use std::sync::Arc;

use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::Command;
use orderflow_pipeline::ports::EventStore;
use orderflow_pipeline::processor::{CommandProcessor, Envelope, IdempotencyKey};
use orderflow_store_cosmos::{emulator, init, CosmosStore};

fn units(store: &CosmosStore, operation: &str) -> f64 {
    store.request_units().get(operation).map_or(0.0, |charge| charge.units)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = emulator::client().await?;
    init(&client, "orderflow").await?;
    let store = Arc::new(CosmosStore::connect(&client, "orderflow").await?);
    let processor = CommandProcessor::new(store.clone());
    let restock = Command::Inventory {
        sku: "MUG".into(),
        command: InventoryCommand::Restock { quantity: 1.try_into().expect("a quantity") },
    };

    println!("| events in stream | command (one batch) RU | read state, ETag cached (304) RU | read state, cold RU |");
    println!("|---|---|---|---|");
    let mut length = 0u64;
    for target in [1u64, 10, 100, 1_000, 10_000] {
        let mut batch_units = 0.0;
        while length < target {
            let before = units(&store, "append-batch");
            processor.execute(&restock, &Envelope::new()).await?;
            batch_units = units(&store, "append-batch") - before;
            length += 1;
        }
        let before = units(&store, "read-tip");
        store.load("Sku-MUG", None).await?;
        let cached = units(&store, "read-tip") - before;
        // A second store has no cached ETag: a full point read.
        let cold_store = CosmosStore::connect(&client, "orderflow").await?;
        cold_store.load("Sku-MUG", None).await?;
        let cold = units(&cold_store, "read-tip");
        println!("| {length} | {batch_units:.2} | {cached:.2} | {cold:.2} |");
    }
    println!();
    // A command with a key that may name any stream: its claim, and the
    // idempotency record created in its batch.
    let (claims, batches) = (units(&store, "claim-key"), units(&store, "append-batch"));
    let key = IdempotencyKey::http("", "restock-keyed", "restock 1".into());
    processor.execute(&restock, &Envelope::idempotent("http:restock-keyed", key)).await?;
    let (claim, batch) = (units(&store, "claim-key") - claims, units(&store, "append-batch") - batches);
    println!(
        "| command with an Idempotency-Key | claim {claim:.2} RU | batch {batch:.2} RU | total {:.2} RU |",
        claim + batch
    );
    println!();
    println!("| operation | requests | RU per request | RU per command |");
    println!("|---|---|---|---|");
    for (operation, charge) in store.request_units() {
        let per_request = charge.units / charge.requests.max(1) as f64;
        println!("| {operation} | {} | {per_request:.2} | {:.2} |", charge.requests, charge.units / length as f64);
    }
    Ok(())
}
