//! Measures the request units of orderflow's Cosmos DB operations on the
//! SDK's in-memory emulator (its RU model: relative costs, not Azure's bill),
//! as one stream grows from 1 to 10,000 events.
//!
//! Then the RU of whole orders: placed with two lines, confirmed, reserved by
//! fulfillment, paid, shipped and delivered, with every change-feed consumer
//! (snapshots, downstream topics, fulfillment) handling every event.
//!
//! `cargo run --release -p orderflow-store-cosmos --features emulator --example request_units`

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{OrderCommand, OrderLine};
use orderflow_domain::Command;
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Fulfillment, Projector, Publisher, Step};
use orderflow_pipeline::ports::{EventStore, Message, MessageProducer, StartFrom, Stores};
use orderflow_pipeline::processor::{CommandProcessor, Envelope, IdempotencyKey};
use orderflow_pipeline::StoreError;
use orderflow_store_cosmos::{emulator, init, Charge, CosmosStore};

/// Downstream messages go nowhere: only the store's RU are measured.
struct Discard;

#[async_trait]
impl MessageProducer for Discard {
    async fn send(&self, _messages: Vec<Message>) -> Result<(), StoreError> {
        Ok(())
    }
}

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
    print_units("one stream growing to 10,000 events", &store.request_units(), length, "command");
    orders(&client).await
}

/// RU by operation, and per `unit` (each of `per` of them).
fn print_units(title: &str, totals: &BTreeMap<&'static str, Charge>, per: u64, unit: &str) {
    println!("{title}:");
    println!();
    println!("| operation | requests | RU per request | RU per {unit} |");
    println!("|---|---|---|---|");
    let mut total = 0.0;
    for (operation, charge) in totals {
        total += charge.units;
        let per_request = charge.units / charge.requests.max(1) as f64;
        println!("| {operation} | {} | {per_request:.2} | {:.2} |", charge.requests, charge.units / per as f64);
    }
    println!("| **total** | | | **{:.1}** |", total / per as f64);
    println!();
}

/// Runs every consumer until none finds anything new (fulfillment's
/// reactions add events).
async fn drain(runners: &mut [FeedRunner]) -> Result<(), StoreError> {
    loop {
        let mut idle = true;
        for runner in runners.iter_mut() {
            while runner.step().await? == Step::Progressed {
                idle = false;
            }
        }
        if idle {
            return Ok(());
        }
    }
}

/// The envelope of a back-end system's CloudEvent: keyed by source and id.
fn cloud_event(id: String) -> Envelope {
    Envelope::idempotent(id.clone(), IdempotencyKey::cloud_event("/bench", &id, id.clone()))
}

/// Whole orders through every step, on a fresh database.
async fn orders(client: &azure_data_cosmos::CosmosClient) -> Result<(), Box<dyn std::error::Error>> {
    const ORDERS: u64 = 200;
    init(client, "orders").await?;
    let store = Arc::new(CosmosStore::connect(client, "orders").await?);
    let stores = Stores::of(store.clone());
    let processor = Arc::new(CommandProcessor::new(stores.events.clone()));
    let consumers: [Arc<dyn Consumer>; 3] = [
        Arc::new(Projector::new(stores.events.clone(), stores.snapshots.clone())),
        Arc::new(Publisher::new(Arc::new(Discard))),
        Arc::new(Fulfillment::new(processor.clone(), stores.refusals.clone())),
    ];
    let mut runners: Vec<FeedRunner> =
        consumers.into_iter().map(|c| FeedRunner::new(&stores, c).with_start(StartFrom::Beginning)).collect();
    for sku in ["MUG", "TEE"] {
        let restock = Command::Inventory { sku: sku.into(), command: InventoryCommand::Restock { quantity: 1_000 } };
        processor.execute(&restock, &Envelope::new()).await?;
    }
    drain(&mut runners).await?;
    let before = store.request_units();
    let order = |i: u64, command: OrderCommand| Command::Order { order_id: format!("o-{i}"), command };
    let line = |sku: &str| OrderLine { sku: sku.into(), quantity: 1, unit_price_minor: 500 };
    for i in 0..ORDERS {
        let place = OrderCommand::Place {
            customer_id: format!("c-{i}"),
            currency: "EUR".into(),
            lines: vec![line("MUG"), line("TEE")],
        };
        processor.execute(&order(i, place), &Envelope::new()).await?;
        processor.execute(&order(i, OrderCommand::Confirm), &Envelope::new()).await?;
    }
    drain(&mut runners).await?;
    for i in 0..ORDERS {
        let pay = OrderCommand::AuthorizePayment {
            payment_id: format!("p-{i}"),
            amount_minor: 1_000,
            currency: "EUR".into(),
        };
        processor.execute(&order(i, pay), &cloud_event(format!("pay-{i}"))).await?;
        let ship = OrderCommand::Ship {
            shipment_id: format!("s-{i}"),
            carrier: "DHL".into(),
            tracking_number: format!("T-{i}"),
        };
        processor.execute(&order(i, ship), &cloud_event(format!("ship-{i}"))).await?;
        let deliver = OrderCommand::Deliver { shipment_id: format!("s-{i}") };
        processor.execute(&order(i, deliver), &cloud_event(format!("delivered-{i}"))).await?;
    }
    drain(&mut runners).await?;
    let mut spent = store.request_units();
    for (operation, charge) in spent.iter_mut() {
        let earlier = before.get(operation).copied().unwrap_or_default();
        *charge = Charge { requests: charge.requests - earlier.requests, units: charge.units - earlier.units };
    }
    print_units(&format!("{ORDERS} orders, placed (2 lines) to delivered, every consumer"), &spent, ORDERS, "order");
    Ok(())
}
