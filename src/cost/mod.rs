//! `orderflow cost`: what an order costs on the configured Cosmos DB account,
//! measured, and what that makes a month for the deployment profiles.
//!
//! It runs a fixed workload — N whole orders (two lines each: placed and
//! confirmed over HTTP with Idempotency-Keys, reserved by fulfillment, read
//! four times by the customer, paid, dispatched and delivered as CloudEvents,
//! its payment deadline passed, then archived as closed) through every
//! pipeline step — against the account (`orderflow dev
//! cosmos-emulator` here, a real account for a user), in a database of its
//! own, and counts the request units of each operation and the size of each
//! kind of document. `model` turns that into the monthly tables.

mod model;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use indicatif::{ProgressBar, ProgressStyle};
use orderflow_domain::deadlines::DeadlinePolicy;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{NewLine, OrderCommand};
use orderflow_domain::Command;
use orderflow_pipeline::archive::{pack, ArchiveClosed};
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Fulfillment, Projector, Publisher, Step};
use orderflow_pipeline::deadlines::{DeadlineTimers, PassDeadlines};
use orderflow_pipeline::ports::{EventRecord, EventStore, Message, MessageProducer, SnapshotStore, StartFrom, Stores};
use orderflow_pipeline::processor::{CommandProcessor, Envelope, IdempotencyKey};
use orderflow_pipeline::streams::{order_stream, sku_stream};
use orderflow_pipeline::StoreError;
use orderflow_store_cosmos::{Charge, CosmosStore};
use serde::Serialize;

pub use model::{Prices, RuFrom};

use crate::config::Config;

/// What one order costs on the account, measured.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measured {
    pub orders: u64,
    pub endpoint: String,
    /// Request units and requests per order, by kind of operation.
    pub per_order: BTreeMap<&'static str, PerOrder>,
    pub ru_per_order: f64,
    /// What archiving the order took (once, when archival is on), by kind
    /// of operation, and in all.
    pub archival: BTreeMap<&'static str, PerOrder>,
    pub archival_ru_per_order: f64,
    /// Bytes of JSON (without the service's system properties).
    pub sizes: Sizes,
    /// What reaches Kafka per order: messages in (ingested CloudEvents) and
    /// out (downstream events), and their bytes.
    pub messages_in: f64,
    pub messages_out: f64,
    pub message_bytes: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerOrder {
    pub requests: f64,
    pub ru_per_request: f64,
    pub ru: f64,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Sizes {
    pub events_per_order: f64,
    pub event: f64,
    pub order_tip: f64,
    pub sku_tip: f64,
    pub order_snapshot: f64,
    pub idempotency_record: f64,
    pub key_claim: f64,
    /// Bytes kept for good per order: its events, its tip and snapshot.
    pub stored_per_order: f64,
    /// Once archived: what stays hot (its last event, tip and snapshot)
    /// and the archived piece of the rest (deflated).
    pub hot_when_archived: f64,
    pub archived_piece: f64,
    /// Idempotency records and key claims per order, kept for the
    /// retention (then deleted by their TTL).
    pub records_per_order: f64,
    pub claims_per_order: f64,
}

pub async fn run(
    config: &Config,
    orders: u64,
    database: &str,
    prices: &Prices,
    from: RuFrom,
    json: bool,
) -> anyhow::Result<()> {
    let Some(cosmos) = &config.cosmos else {
        anyhow::bail!(
            "orderflow cost measures a Cosmos DB account: set CosmosDBConnection (or \
             CosmosDBConnection__accountEndpoint); `orderflow dev cosmos-emulator` gives one"
        );
    };
    let client = orderflow_store_cosmos::client(&cosmos.account, &cosmos.region).await?;
    orderflow_store_cosmos::init(&client, database).await.with_context(|| {
        format!("database {database} (--database): it must exist, or the account key may create it")
    })?;
    let store = Arc::new(CosmosStore::connect_with(&client, database, config.key_retention).await?);
    let progress = if json { ProgressBar::hidden() } else { ProgressBar::new(2 * orders) };
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let measured = measure(&store, orders, cosmos.account.endpoint(), &progress).await?;
    progress.finish_and_clear();
    let tables = model::monthly(&measured, prices, from);
    if json {
        let planning = model::planning(&measured, &measured.per_order);
        let archival = model::planning(&measured, &measured.archival);
        let document = serde_json::json!({
            "measured": measured, "planningRuPerOrder": planning, "planningArchivalRuPerOrder": archival,
            "ruFrom": from, "profiles": tables
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        model::print(&measured, &tables, prices, from);
    }
    Ok(())
}

/// Downstream messages go nowhere; their count and bytes are what Kafka
/// (Event Hubs) would take in.
#[derive(Default)]
struct Counted(std::sync::Mutex<(u64, u64)>);

#[async_trait]
impl MessageProducer for Counted {
    async fn send(&self, messages: Vec<Message>) -> Result<(), StoreError> {
        let mut counted = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counted.0 += messages.len() as u64;
        counted.1 += messages
            .iter()
            .map(|m| m.value.len() + m.headers.iter().map(|h| h.0.len() + h.1.len()).sum::<usize>())
            .sum::<usize>() as u64;
        Ok(())
    }
}

/// A step under a name of this run's own: its leases start now, so it
/// handles this run's events only, whatever the database held before.
struct OfThisRun {
    name: &'static str,
    step: Arc<dyn Consumer>,
}

#[async_trait]
impl Consumer for OfThisRun {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        self.step.handle(events).await
    }

    fn start(&self) -> StartFrom {
        StartFrom::Now
    }
}

async fn drain(runners: &mut [FeedRunner]) -> Result<(), StoreError> {
    // Until no step finds anything new (fulfillment's reactions add events).
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

async fn measure(
    store: &Arc<CosmosStore>,
    orders: u64,
    endpoint: &str,
    progress: &ProgressBar,
) -> anyhow::Result<Measured> {
    let stores = Stores::of(store.clone());
    let processor = Arc::new(CommandProcessor::new(stores.events.clone()));
    let downstream = Arc::new(Counted::default());
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    // Orders start their payment deadline, as in production.
    let deadlines = DeadlineTimers { timers: stores.timers.clone(), policy: DeadlinePolicy::default() };
    let steps: [Arc<dyn Consumer>; 3] = [
        Arc::new(Projector::new(stores.events.clone(), stores.snapshots.clone())),
        Arc::new(Publisher::new(downstream.clone())),
        Arc::new(Fulfillment::new(processor.clone(), stores.refusals.clone(), deadlines)),
    ];
    let mut runners = Vec::new();
    for step in steps {
        let name: &'static str = Box::leak(format!("cost-{run}-{}", step.name()).into_boxed_str());
        let mut runner = FeedRunner::new(&stores, Arc::new(OfThisRun { name, step }));
        runner.batch_size = 1_000;
        runner.prepare().await?;
        runners.push(runner);
    }
    let skus = [format!("COST-{run}-MUG"), format!("COST-{run}-TEE")];
    for sku in &skus {
        let restock = Command::Inventory {
            sku: sku.clone(),
            command: InventoryCommand::Restock { quantity: 1_000_000.try_into()? },
        };
        processor.execute(&restock, &Envelope::new()).await?;
    }
    drain(&mut runners).await?;

    let before = store.request_units();
    let (setup_messages, setup_bytes) = *downstream.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let order_id = |i: u64| format!("cost-{run}-{i}");
    let order = |i: u64, command: OrderCommand| Command::Order { order_id: order_id(i), command };
    let http = |what: &str, i: u64| {
        let key = format!("{what}-{run}-{i}");
        Envelope::idempotent(format!("http:{key}"), IdempotencyKey::http("", &key, key.clone()))
    };
    let cloud_event = |what: &str, i: u64| {
        let id = format!("{what}-{run}-{i}");
        Envelope::idempotent(id.clone(), IdempotencyKey::cloud_event("/cost", &id, id.clone()))
    };
    progress.set_message("placing and confirming");
    for i in 0..orders {
        let lines = skus.iter().map(|sku| NewLine::new(sku, 1, 500)).collect::<Result<_, _>>()?;
        let customer_id = format!("c-{i}").try_into()?;
        let place = OrderCommand::Place { customer_id, currency: "EUR".try_into()?, lines };
        processor.execute(&order(i, place), &http("place", i)).await?;
        processor.execute(&order(i, OrderCommand::Confirm), &http("confirm", i)).await?;
        progress.inc(1);
    }
    drain(&mut runners).await?;
    progress.set_message("reading, paying, shipping, delivering");
    for i in 0..orders {
        // The customer looks at the order four times along the way.
        for _ in 0..4 {
            stores.snapshots.get(&order_stream(&order_id(i))).await?;
        }
        let pay = OrderCommand::AuthorizePayment {
            payment_id: format!("p-{i}").try_into()?,
            amount_minor: 1_000,
            currency: "EUR".try_into()?,
        };
        processor.execute(&order(i, pay), &cloud_event("pay", i)).await?;
        let ship = OrderCommand::Ship {
            shipment_id: format!("s-{i}").try_into()?,
            carrier: "DHL".try_into()?,
            tracking_number: format!("T-{i}").try_into()?,
        };
        processor.execute(&order(i, ship), &cloud_event("ship", i)).await?;
        let deliver = OrderCommand::Deliver { shipment_id: format!("s-{i}").try_into()? };
        processor.execute(&order(i, deliver), &cloud_event("delivered", i)).await?;
        progress.inc(1);
    }
    drain(&mut runners).await?;
    // Paid in time: each order's payment deadline passes without effect,
    // and its timer is deleted.
    progress.set_message("passing the payment deadlines");
    let after_the_deadlines = chrono::Utc::now() + chrono::Duration::hours(1);
    PassDeadlines::new(processor.clone(), stores.timers.clone())
        .pass_due(after_the_deadlines, std::time::Duration::MAX)
        .await?;
    // Closed: each order's events but the last move to the archive (its
    // read model says Delivered since before this moment).
    progress.set_message("archiving the closed orders");
    let sizes = sizes(store.as_ref(), &order_id(0), &skus[0]).await?;
    let before_archival = store.request_units();
    ArchiveClosed::new(stores.events.clone(), stores.archive.clone())
        .run(chrono::Utc::now(), std::time::Duration::MAX, |_| {})
        .await?;
    let per_order = spent(&before, &before_archival, orders);
    let archival = spent(&before_archival, &store.request_units(), orders);
    let (all_messages, all_bytes) = *downstream.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (messages, bytes) = (all_messages - setup_messages, all_bytes - setup_bytes);
    Ok(Measured {
        orders,
        endpoint: endpoint.to_string(),
        ru_per_order: per_order.values().map(|p| p.ru).sum(),
        per_order,
        archival_ru_per_order: archival.values().map(|p| p.ru).sum(),
        archival,
        sizes,
        messages_in: 3.0,
        messages_out: messages as f64 / orders as f64,
        message_bytes: bytes as f64 / messages.max(1) as f64,
    })
}

/// What each kind of operation took per order between two readings of the
/// store's counters.
fn spent(
    from: &BTreeMap<&'static str, Charge>,
    to: &BTreeMap<&'static str, Charge>,
    orders: u64,
) -> BTreeMap<&'static str, PerOrder> {
    let mut per_order = BTreeMap::new();
    for (operation, charge) in to {
        let earlier = from.get(operation).copied().unwrap_or_default();
        let spent = Charge { requests: charge.requests - earlier.requests, units: charge.units - earlier.units };
        if spent.requests == 0 {
            continue;
        }
        per_order.insert(
            *operation,
            PerOrder {
                requests: spent.requests as f64 / orders as f64,
                ru_per_request: spent.units / spent.requests as f64,
                ru: spent.units / orders as f64,
            },
        );
    }
    per_order
}

/// The JSON sizes of one order's documents (and a SKU's), as the store
/// writes them, without the service's system properties.
async fn sizes(store: &CosmosStore, order_id: &str, sku: &str) -> anyhow::Result<Sizes> {
    use serde_json::json;
    let bytes = |value: &serde_json::Value| value.to_string().len() as f64;
    let stream = order_stream(order_id);
    let events = store.read_stream(&stream, 0, 1_000).await?;
    let mut documents = Vec::with_capacity(events.len());
    for event in &events {
        let mut document = serde_json::to_value(event)?;
        document["id"] = json!(format!("{:020}", event.index));
        documents.push(bytes(&document));
    }
    let event = documents.iter().sum::<f64>() / events.len().max(1) as f64;
    let tip = |stream: &str, tip: Option<orderflow_pipeline::ports::Tip>| {
        tip.map_or(0.0, |t| {
            bytes(&json!({"id": "tip", "streamId": stream, "kind": "tip", "version": t.version, "state": t.state}))
        })
    };
    let order_tip = tip(&stream, store.load(&stream, None).await?.tip);
    let stock = sku_stream(sku);
    let sku_tip = tip(&stock, store.load(&stock, None).await?.tip);
    let order_snapshot = store.get(&stream).await?.map_or(0.0, |s| {
        bytes(&json!({"id": s.stream_id, "version": s.version, "updatedAt": s.updated_at, "customerId": s.customer_id, "state": s.state}))
    });
    // A keyed command's record: its key and fingerprint (digests), its receipt.
    let digest = "0".repeat(64);
    let receipt = json!({"streamId": stream, "version": 13, "status": "Delivered", "appended": 1});
    let idempotency_record = bytes(&json!({
        "id": format!("key-h.{digest}"), "streamId": stream, "kind": "key", "fingerprint": digest,
        "receipt": receipt, "createdAt": 1_764_480_000, "ttl": 604_800
    }));
    let key_claim = bytes(&json!({
        "id": format!("h.{digest}"), "fingerprint": digest, "streamId": stream, "createdAt": 1_764_480_000, "ttl": 604_800
    }));
    let events_per_order = events.len() as f64;
    // The piece the archive keeps of all but the last event, and the note
    // on the read model.
    let rest = events.split_last().map_or(&[][..], |(_, rest)| rest);
    let packed = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pack(rest)?);
    let archived_piece = bytes(&json!({
        "id": format!("{:020}-{:020}", 0, rest.len().saturating_sub(1)), "streamId": stream,
        "first": 0, "last": rest.len().saturating_sub(1), "events": packed
    }));
    let last = documents.last().copied().unwrap_or_default();
    let hot_when_archived = last + order_tip + order_snapshot + r#","archivedThrough":12"#.len() as f64;
    Ok(Sizes {
        events_per_order,
        event,
        order_tip,
        sku_tip,
        order_snapshot,
        idempotency_record,
        key_claim,
        stored_per_order: events_per_order * event + order_tip + order_snapshot,
        hot_when_archived,
        archived_piece,
        // 2 HTTP commands, 3 CloudEvents and 6 reactions change a stream
        // with a key: a record each; the 5 outside keys are claimed besides.
        records_per_order: 11.0,
        claims_per_order: 5.0,
    })
}
