//! Measures the request units of orderflow's Cosmos DB operations on the
//! SDK's in-memory emulator (its RU model: relative costs, not Azure's bill),
//! as one stream grows from 1 to 10,000 events.
//!
//! `cargo run --release -p orderflow-store-cosmos --features emulator --example request_units`

use std::sync::Arc;

use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::Command;
use orderflow_pipeline::ports::EventStore;
use orderflow_pipeline::processor::{CommandProcessor, Envelope};
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
    let restock = Command::Inventory { sku: "MUG".into(), command: InventoryCommand::Restock { quantity: 1 } };

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
    println!("| operation | requests | RU | RU per request |");
    println!("|---|---|---|---|");
    for (operation, charge) in store.request_units() {
        println!(
            "| {operation} | {} | {:.1} | {:.2} |",
            charge.requests,
            charge.units,
            charge.units / charge.requests.max(1) as f64
        );
    }
    Ok(())
}
