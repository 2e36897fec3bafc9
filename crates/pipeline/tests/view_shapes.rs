//! A stored view of a shape this build no longer reads (a SKU's view from
//! before it listed open reservations) is built again from the stream's
//! events — by the projector when the stream moves on, and by a read before
//! that — never answered wrong and never an error.

use std::sync::Arc;

use orderflow_domain::inventory::{Inventory, InventoryCommand};
use orderflow_domain::Command;
use orderflow_pipeline::consumers::{Consumer, Projector};
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::{EventStore, Snapshot, SnapshotStore};
use orderflow_pipeline::processor::{CommandProcessor, Envelope};
use orderflow_pipeline::reads::{current, Current};
use serde_json::json;

async fn run(processor: &CommandProcessor, command: InventoryCommand) {
    processor.execute(&Command::Inventory { sku: "A".into(), command }, &Envelope::new()).await.expect("applied");
}

#[tokio::test]
async fn a_view_of_an_older_shape_is_built_again_from_the_events() {
    let store = Arc::new(MemoryStore::default());
    let processor = CommandProcessor::new(store.clone());
    run(&processor, InventoryCommand::Restock { quantity: 10.try_into().expect("a quantity") }).await;
    run(&processor, InventoryCommand::Reserve { order_id: "o-1".into(), attempt: 1, quantity: 3 }).await;
    // What an older build stored: the counters only, at the stream's version.
    let events = store.read_stream("Sku-A", 0, 10).await.expect("read");
    let older = Snapshot {
        stream_id: "Sku-A".into(),
        version: 2,
        updated_at: events[1].time,
        customer_id: None,
        state: json!({"onHand": 10, "reserved": 3}),
    };
    store.put(vec![older]).await.expect("put");

    let read = |at_least| current::<Inventory>(store.as_ref(), store.as_ref(), "Sku-A", at_least);
    let Current::Found(found) = read(0).await.expect("read") else { panic!("the SKU exists") };
    let open: Vec<(&str, u32)> =
        found.view.open_reservations.iter().map(|r| (r.order_id.as_str(), r.quantity)).collect();
    assert_eq!((open, found.view.reserved, found.version), (vec![("o-1", 3)], 3, 2));

    // The stream moves on: the projector builds the view again from its start.
    run(&processor, InventoryCommand::Reserve { order_id: "o-2".into(), attempt: 1, quantity: 1 }).await;
    let all = store.read_stream("Sku-A", 0, 10).await.expect("read");
    Projector::new(store.clone(), store.clone()).handle(&all[2..]).await.expect("projected");
    let stored = store.get("Sku-A").await.expect("get").expect("a view");
    assert_eq!(stored.version, 3);
    assert_eq!(stored.state["openReservations"].as_array().map(Vec::len), Some(2), "{}", stored.state);
    assert_eq!((&stored.state["onHand"], &stored.state["reserved"]), (&json!(10), &json!(4)));
}
