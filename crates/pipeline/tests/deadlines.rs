//! Deadlines through the pipeline, on the in-memory store: fulfillment
//! stores the timers order events start, the time-driven step passes them
//! when due, once in effect however often and by however many it runs.

use std::sync::Arc;

use chrono::{Duration, Utc};
use orderflow_domain::deadlines::DeadlinePolicy;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{NewLine, OrderCommand};
use orderflow_domain::Command;
use orderflow_pipeline::consumers::{FeedRunner, Fulfillment, Step};
use orderflow_pipeline::deadlines::{backlog, DeadlineTimers, PassDeadlines};
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::{StartFrom, Timers};
use orderflow_pipeline::processor::{CommandProcessor, Envelope};

/// A value as a door would check it (`String`s pass as they are).
fn v<T: TryFrom<String, Error: std::fmt::Debug>>(text: impl Into<String>) -> T {
    T::try_from(text.into()).expect("a valid value")
}

fn units(quantity: u64) -> orderflow_domain::values::StockQuantity {
    quantity.try_into().expect("a quantity")
}

struct Shop {
    store: Arc<MemoryStore>,
    processor: Arc<CommandProcessor>,
    fulfillment: FeedRunner,
}

impl Shop {
    fn new() -> Shop {
        let store = Arc::new(MemoryStore::default());
        let processor = Arc::new(CommandProcessor::new(store.clone()));
        let deadlines = DeadlineTimers { timers: store.clone(), policy: DeadlinePolicy::default() };
        let fulfillment = Arc::new(Fulfillment::new(processor.clone(), store.clone(), deadlines));
        let fulfillment = FeedRunner::new(&store.stores(), fulfillment).with_start(StartFrom::Beginning);
        Shop { store, processor, fulfillment }
    }

    async fn run(&self, command: Command) {
        self.processor.execute(&command, &Envelope::new()).await.expect("command");
    }

    async fn order(&self, order_id: &str, command: OrderCommand) {
        self.run(Command::Order { order_id: order_id.into(), command }).await;
    }

    /// Restocks SKU-A, places an order of 2 × SKU-A and confirms it; the
    /// reservation goes through.
    async fn reserved_order(&mut self, order_id: &str) {
        let restock = InventoryCommand::Restock { quantity: units(5) };
        self.run(Command::Inventory { sku: "SKU-A".into(), command: restock }).await;
        let line = NewLine::new("SKU-A", 2, 100).expect("a line");
        let place = OrderCommand::Place { customer_id: v("c"), currency: v("EUR"), lines: vec![line] };
        self.order(order_id, place).await;
        self.order(order_id, OrderCommand::Confirm).await;
        self.settle().await;
        assert_eq!(self.types(&format!("Order-{order_id}")).last().map(String::as_str), Some("Reserved"));
    }

    async fn settle(&mut self) {
        while self.fulfillment.step().await.expect("fulfillment") == Step::Progressed {}
    }

    fn types(&self, stream_id: &str) -> Vec<String> {
        self.store.events_of(stream_id).into_iter().map(|e| e.event_type).collect()
    }

    /// The time-driven step as another process runs it: its own processor
    /// (cache, stream locks) over the shared store.
    fn pass(&self) -> PassDeadlines {
        PassDeadlines::new(Arc::new(CommandProcessor::new(self.store.clone())), self.store.clone())
    }
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_when_its_payment_deadline_passes_and_its_stock_comes_back() {
    let mut shop = Shop::new();
    shop.reserved_order("o1").await;
    let (timers, _) = shop.store.pending(10).await.expect("timers");
    assert_eq!(timers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["payment-1"]);
    let due_at = timers[0].due_at;

    // Not due yet: nothing happens.
    let early = shop.pass().round(due_at - Duration::seconds(1)).await.expect("round");
    assert_eq!(early.handled, 0);
    let overdue = backlog(shop.store.as_ref(), due_at + Duration::minutes(5)).await.expect("backlog");
    assert_eq!((overdue.pending, overdue.overdue, overdue.oldest_overdue), (1, 1, Some(due_at)));

    let passed = shop.pass().round(due_at).await.expect("round");
    assert_eq!((passed.handled, passed.acted), (1, 1));
    shop.settle().await;
    let order = shop.store.events_of("Order-o1");
    let cancelled = order.last().expect("events");
    assert_eq!(cancelled.event_type, "Cancelled");
    assert_eq!(cancelled.data["reason"], "payment-timeout");
    assert!(shop.types("Sku-SKU-A").ends_with(&["StockReserved".into(), "StockReleased".into()]), "stock back");
    assert_eq!(shop.store.pending(10).await.expect("timers").1, 0, "the timer is forgotten");
}

#[tokio::test]
async fn a_deadline_paid_in_time_does_nothing_and_a_timer_fired_twice_acts_once() {
    let mut shop = Shop::new();
    shop.reserved_order("paid").await;
    let pay = OrderCommand::AuthorizePayment { payment_id: v("p1"), amount_minor: 200, currency: v("EUR") };
    shop.order("paid", pay).await;
    shop.reserved_order("unpaid").await;
    let later = Utc::now() + Duration::hours(1);

    // Two processes pass the same due timers at the same moment.
    let (one, two) = (shop.pass(), shop.pass());
    let (first, second) = tokio::join!(one.round(later), two.round(later));
    let (first, second) = (first.expect("round"), second.expect("round"));
    assert_eq!(first.acted + second.acted, 1, "one effect between them: {first:?} {second:?}");
    // And once more, as after a crash before the timers were forgotten.
    let timer = |order: &str| {
        let deadline = serde_json::json!({"kind": "payment", "attempt": 1});
        orderflow_pipeline::ports::Timer {
            stream_id: format!("Order-{order}"),
            name: "payment-1".into(),
            due_at: Utc::now(),
            deadline,
            caused_by: uuid::Uuid::new_v4(),
            correlation_id: "c".into(),
        }
    };
    shop.store.schedule(vec![timer("paid"), timer("unpaid")]).await.expect("schedule again");
    let again = shop.pass().round(later).await.expect("round");
    assert_eq!((again.handled, again.acted), (2, 0));

    assert_eq!(shop.types("Order-paid").last().map(String::as_str), Some("ReadyToShip"), "paid in time: kept");
    let cancelled = shop.types("Order-unpaid").iter().filter(|t| *t == "Cancelled").count();
    assert_eq!(cancelled, 1);
}

#[tokio::test]
async fn a_timer_that_cannot_be_read_is_put_off_and_blocks_no_other() {
    let mut shop = Shop::new();
    shop.reserved_order("o1").await;
    let now = Utc::now() + Duration::hours(1);
    let unreadable = orderflow_pipeline::ports::Timer {
        stream_id: "Order-o1".into(),
        name: "from-a-newer-version".into(),
        due_at: now - Duration::days(1),
        deadline: serde_json::json!({"kind": "somethingNew"}),
        caused_by: uuid::Uuid::new_v4(),
        correlation_id: "c".into(),
    };
    shop.store.schedule(vec![unreadable]).await.expect("schedule");

    let passed = shop.pass().round(now).await.expect("round");
    assert_eq!((passed.handled, passed.acted, passed.failed), (1, 1, 1), "the payment deadline passed");
    let (left, count) = shop.store.pending(10).await.expect("timers");
    assert_eq!(count, 1, "the unreadable one is kept for an operator");
    assert_eq!(left[0].name, "from-a-newer-version");
    assert!(left[0].due_at > now, "put off: {left:?}");
    assert_eq!(shop.pass().round(now).await.expect("round"), Default::default(), "out of the way");
}
