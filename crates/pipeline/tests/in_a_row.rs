//! Reactions to one stream decided in a row (`execute_in_row`): one append
//! for many, each command answered and remembered as if it ran alone — a
//! hot SKU's reservations in a batch cost one write, not one each.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderflow_domain::deadlines::DeadlinePolicy;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{NewLine, OrderCommand};
use orderflow_domain::Command;
use orderflow_pipeline::consumers::{Consumer, Fulfillment};
use orderflow_pipeline::deadlines::DeadlineTimers;
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::*;
use orderflow_pipeline::processor::{CommandError, CommandProcessor, Envelope, IdempotencyKey, Receipt};
use uuid::Uuid;

/// The in-memory store, telling how many items each append wrote.
struct Counted {
    store: Arc<MemoryStore>,
    appends: Mutex<Vec<(String, usize)>>,
}

impl Counted {
    fn new() -> Arc<Counted> {
        Arc::new(Counted { store: Arc::new(MemoryStore::default()), appends: Mutex::default() })
    }

    /// The sizes of the appends to `stream_id` so far, in items.
    fn appends_to(&self, stream_id: &str) -> Vec<usize> {
        let appends = self.appends.lock().expect("appends");
        appends.iter().filter(|(id, _)| id == stream_id).map(|(_, items)| *items).collect()
    }

    fn event_types(&self, stream_id: &str) -> Vec<String> {
        self.store.events_of(stream_id).into_iter().map(|e| e.event_type).collect()
    }
}

#[async_trait]
impl EventStore for Counted {
    async fn load(&self, stream_id: &str, key: Option<&str>) -> Result<Loaded, StoreError> {
        self.store.load(stream_id, key).await
    }
    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        self.appends.lock().expect("appends").push((append.stream_id.clone(), append.items()));
        self.store.append(append).await
    }
    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.store.read_stream(stream_id, from_index, max).await
    }
    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError> {
        self.store.claim(claim).await
    }
    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError> {
        self.store.stream_ids(after, max).await
    }
}

fn sku(command: InventoryCommand) -> Command {
    Command::Inventory { sku: "A".into(), command }
}

fn restock(quantity: u64) -> Command {
    sku(InventoryCommand::Restock { quantity: quantity.try_into().expect("a quantity") })
}

fn reserve(order_id: &str, quantity: u32) -> Command {
    sku(InventoryCommand::Reserve { order_id: order_id.into(), attempt: 1, quantity })
}

/// A reaction's envelope: the `n`th reaction to a made-up event.
fn reaction(event: Uuid) -> Envelope {
    Envelope::idempotent(format!("{event}/0"), IdempotencyKey::reaction(&event, 0))
}

async fn in_a_row(processor: &CommandProcessor, row: &[(Command, Envelope)]) -> Vec<Result<Receipt, CommandError>> {
    let row: Vec<_> = row.iter().map(|(command, envelope)| (command, envelope)).collect();
    processor.execute_in_row(&row).await
}

fn versions(answers: &[Result<Receipt, CommandError>]) -> Vec<Result<(u64, bool), String>> {
    answers.iter().map(|a| a.as_ref().map(|r| (r.version, r.duplicate)).map_err(|e| e.to_string())).collect()
}

#[tokio::test]
async fn commands_to_one_stream_are_one_append_and_each_is_remembered_with_its_own_answer() {
    let store = Counted::new();
    let processor = CommandProcessor::new(store.clone());
    processor.execute(&restock(10), &Envelope::new()).await.expect("restock");
    let row = [
        (reserve("o1", 2), reaction(Uuid::new_v4())),
        (reserve("o2", 3), reaction(Uuid::new_v4())),
        (reserve("o3", 9), reaction(Uuid::new_v4())),
        (sku(InventoryCommand::Release { order_id: "o1".into(), attempt: 1, quantity: 2 }), reaction(Uuid::new_v4())),
    ];
    let answers = in_a_row(&processor, &row).await;
    assert_eq!(versions(&answers), [Ok((2, false)), Ok((3, false)), Ok((4, false)), Ok((5, false))]);
    assert_eq!(store.appends_to("Sku-A"), [2, 9], "the restock, then one append of 4 events and 4 keys");
    let types = store.event_types("Sku-A");
    assert_eq!(types, ["Restocked", "StockReserved", "StockReserved", "ReservationRejected", "StockReleased"]);
    for ((_, envelope), version) in row.iter().zip(2..) {
        let key = envelope.idempotency.as_ref().map(|k| k.key.as_str());
        let prior = store.load("Sku-A", key).await.expect("load").prior.expect("the key is remembered");
        assert_eq!(prior.receipt["version"], version, "{key:?}");
    }
}

#[tokio::test]
async fn a_row_handled_again_answers_each_as_before_and_changes_nothing() {
    let store = Counted::new();
    let processor = CommandProcessor::new(store.clone());
    processor.execute(&restock(10), &Envelope::new()).await.expect("restock");
    let row = [(reserve("o1", 2), reaction(Uuid::new_v4())), (reserve("o2", 3), reaction(Uuid::new_v4()))];
    in_a_row(&processor, &row).await;
    // Another process handles it again (its cache knows nothing).
    let other = CommandProcessor::new(store.clone());
    assert_eq!(versions(&in_a_row(&other, &row).await), [Ok((2, true)), Ok((3, true))]);
    // A row with one handled before and one new: the new one applied once.
    let mixed = [row[1].clone(), (reserve("o4", 1), reaction(Uuid::new_v4()))];
    assert_eq!(versions(&in_a_row(&other, &mixed).await), [Ok((3, true)), Ok((4, false))]);
    let types = store.event_types("Sku-A");
    assert_eq!(types, ["Restocked", "StockReserved", "StockReserved", "StockReserved"]);
}

#[tokio::test]
async fn a_refused_command_is_answered_on_its_own_and_the_others_applied() {
    let store = Counted::new();
    let processor = CommandProcessor::new(store.clone());
    let ship = sku(InventoryCommand::Ship { order_id: "o1".into(), attempt: 1, quantity: 5 });
    let row = [
        (restock(1), reaction(Uuid::new_v4())),
        (ship, reaction(Uuid::new_v4())),
        (restock(2), reaction(Uuid::new_v4())),
    ];
    let answers = in_a_row(&processor, &row).await;
    assert!(matches!(&answers[1], Err(CommandError::Rejected(r)) if r.code() == "not-reserved"), "{answers:?}");
    assert_eq!((answers[0].is_ok(), answers[2].is_ok()), (true, true), "{answers:?}");
    assert_eq!(store.event_types("Sku-A"), ["Restocked", "Restocked"]);
}

#[tokio::test]
async fn a_row_larger_than_one_append_takes_goes_in_several() {
    let store = Counted::new();
    let processor = CommandProcessor::new(store.clone());
    let row: Vec<_> = (0..120).map(|_| (restock(1), reaction(Uuid::new_v4()))).collect();
    let answers = in_a_row(&processor, &row).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let appends = store.appends_to("Sku-A");
    assert!(appends.len() >= 3 && appends.iter().all(|items| *items <= MAX_APPEND_ITEMS), "{appends:?}");
    assert_eq!(store.event_types("Sku-A").len(), 120);
}

#[tokio::test]
async fn fulfillment_reserves_a_batch_of_orders_on_one_sku_in_one_append() {
    let store = Counted::new();
    let processor = Arc::new(CommandProcessor::new(store.clone()));
    processor.execute(&restock(10), &Envelope::new()).await.expect("restock");
    for order_id in ["o1", "o2", "o3"] {
        let line = NewLine::new("A", 2, 100).expect("a line");
        let place = OrderCommand::Place {
            customer_id: "c".to_string().try_into().expect("a customer"),
            currency: "EUR".to_string().try_into().expect("a currency"),
            lines: vec![line],
        };
        for command in [place, OrderCommand::Confirm] {
            let command = Command::Order { order_id: order_id.into(), command };
            processor.execute(&command, &Envelope::new()).await.expect("order command");
        }
    }
    let confirmed: Vec<EventRecord> = ["Order-o1", "Order-o2", "Order-o3"]
        .iter()
        .flat_map(|stream| store.store.events_of(stream))
        .filter(|event| event.event_type == "Confirmed")
        .collect();
    let deadlines = DeadlineTimers { timers: store.store.clone(), policy: DeadlinePolicy::default() };
    let fulfillment = Fulfillment::new(processor.clone(), store.store.clone(), deadlines);
    fulfillment.handle(&confirmed).await.expect("handled");
    assert_eq!(store.appends_to("Sku-A").len(), 2, "the restock, then the three reservations together");
    // Delivered again, as after a crash: nothing more.
    fulfillment.handle(&confirmed).await.expect("handled again");
    let types = store.event_types("Sku-A");
    assert_eq!(types, ["Restocked", "StockReserved", "StockReserved", "StockReserved"]);
}

#[tokio::test]
async fn a_row_that_changes_nothing_on_a_stale_tip_is_decided_again_on_the_stored_one() {
    let store = Counted::new();
    let (this, other) = (CommandProcessor::new(store.clone()), CommandProcessor::new(store.clone()));
    let order = |command| Command::Order { order_id: "o1".into(), command };
    let place = OrderCommand::Place {
        customer_id: "c".to_string().try_into().expect("a customer"),
        currency: "EUR".to_string().try_into().expect("a currency"),
        lines: vec![NewLine::new("A", 2, 100).expect("a line")],
    };
    this.execute(&order(place), &Envelope::new()).await.expect("placed");
    // Another process confirms it: this one's cached tip is now stale.
    other.execute(&order(OrderCommand::Confirm), &Envelope::new()).await.expect("confirmed");
    // On the stale tip (not confirmed) the failure is old news, a no-op; on
    // the stored one it backorders the order.
    let failure = order(OrderCommand::RecordReservationFailure { sku: "A".into(), attempt: 1 });
    let answers = in_a_row(&this, &[(failure, reaction(Uuid::new_v4()))]).await;
    assert_eq!(versions(&answers), [Ok((3, false))]);
    assert_eq!(store.event_types("Order-o1"), ["Placed", "Confirmed", "Backordered"]);
}
