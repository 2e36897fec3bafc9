//! A tip whose state no longer reads (its shape changed between builds) is
//! folded again from the stream's events: commands go on deciding on the
//! right state, and the next append writes it in the current shape.

use std::sync::Arc;

use orderflow_domain::order::{NewLine, OrderCommand};
use orderflow_domain::Command;
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::{Append, AppendOutcome, EventRecord, EventStore};
use orderflow_pipeline::processor::{CommandProcessor, Envelope};
use serde_json::json;

/// A value as a door would check it (`String`s pass as they are).
fn v<T: TryFrom<String, Error: std::fmt::Debug>>(text: impl Into<String>) -> T {
    T::try_from(text.into()).expect("a valid value")
}

fn order(command: OrderCommand) -> Command {
    Command::Order { order_id: "o-1".into(), command }
}

fn line(sku: &str) -> NewLine {
    NewLine::new(sku, 1, 100).expect("a line")
}

#[tokio::test]
async fn a_tip_that_does_not_read_is_folded_again_from_the_events() {
    let store = Arc::new(MemoryStore::default());
    let writer = CommandProcessor::new(store.clone());
    let place = OrderCommand::Place { customer_id: v("c"), currency: v("EUR"), lines: vec![line("A")] };
    writer.execute(&order(place), &Envelope::new()).await.expect("place");
    writer.execute(&order(OrderCommand::AddLine { line: line("B") }), &Envelope::new()).await.expect("add");

    // A payment failure written by an older build, whose tip's state has a
    // shape this build does not read.
    let loaded = store.load("Order-o-1", None).await.expect("load");
    let version = loaded.tip.expect("a tip").version;
    let events = store.read_stream("Order-o-1", 0, 10).await.expect("read");
    let last = events.last().cloned().expect("an event");
    let rewrite = Append {
        stream_id: "Order-o-1".into(),
        expected_version: version,
        events: vec![EventRecord {
            index: version,
            event_id: uuid::Uuid::new_v4(),
            event_type: "PaymentFailed".into(),
            data: json!({"paymentId": "p-0", "reason": "declined"}),
            ..last
        }],
        state: json!({"status": 7, "lines": "two of them"}),
        idempotency: Vec::new(),
    };
    assert!(matches!(store.append(rewrite).await.expect("append"), AppendOutcome::Appended { .. }));

    // Another process (nothing cached) confirms: on the state the events say.
    let reader = CommandProcessor::new(store.clone());
    let receipt = reader.execute(&order(OrderCommand::Confirm), &Envelope::new()).await.expect("confirm");
    assert_eq!(receipt.status.as_deref(), Some("Confirmed"));
    let confirmed = store.read_stream("Order-o-1", 0, 10).await.expect("read");
    let lines = &confirmed.last().expect("confirmed").data["lines"];
    assert_eq!(lines, &json!([{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}]), "both lines, as folded");
    let tip = store.load("Order-o-1", None).await.expect("load").tip.expect("a tip");
    assert_eq!(tip.state["status"], "Confirmed", "written in the current shape again");
    assert_eq!(tip.state["paymentFailure"], "declined", "the older build's event counts too");
}
