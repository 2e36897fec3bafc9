//! The pure domain's cost: deciding and evolving, with no I/O.
//!
//! `cargo bench -p orderflow-domain`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use orderflow_domain::inventory::{Inventory, InventoryCommand};
use orderflow_domain::order::{NewLine, Order, OrderCommand};
use orderflow_domain::Aggregate;

fn place(lines: usize) -> OrderCommand {
    let lines = (0..lines).map(|i| NewLine::new(&format!("SKU-{i}"), 1, 500).expect("a line")).collect();
    OrderCommand::Place {
        customer_id: "c-1".try_into().expect("an id"),
        currency: "EUR".try_into().expect("EUR"),
        lines,
    }
}

fn order(c: &mut Criterion) {
    let new = <Order as Aggregate>::State::default();
    c.bench_function("order/decide Place (3 lines)", |b| b.iter(|| Order::decide(black_box(&new), &place(3))));
    let placed_events = Order::decide(&new, &place(3)).unwrap_or_default();
    c.bench_function("order/evolve Placed", |b| b.iter(|| Order::fold(black_box(new.clone()), &placed_events)));
    let placed = Order::fold(new.clone(), &placed_events);
    c.bench_function("order/decide Confirm", |b| b.iter(|| Order::decide(black_box(&placed), &OrderCommand::Confirm)));
}

fn inventory(c: &mut Criterion) {
    // A SKU with 100 open reservations: the state a hot SKU carries.
    let mut sku = <Inventory as Aggregate>::State::default();
    let restock =
        Inventory::decide(&sku, &InventoryCommand::Restock { quantity: 1_000.try_into().expect("a quantity") })
            .unwrap_or_default();
    sku = Inventory::fold(sku, &restock);
    for i in 0..100 {
        let reserve = InventoryCommand::Reserve { order_id: format!("o-{i}"), attempt: 1, quantity: 1 };
        let events = Inventory::decide(&sku, &reserve).unwrap_or_default();
        sku = Inventory::fold(sku, &events);
    }
    let reserve = InventoryCommand::Reserve { order_id: "o-new".into(), attempt: 1, quantity: 2 };
    c.bench_function("inventory/decide Reserve (100 open)", |b| {
        b.iter(|| Inventory::decide(black_box(&sku), &reserve))
    });
    let events = Inventory::decide(&sku, &reserve).unwrap_or_default();
    c.bench_function("inventory/evolve StockReserved (100 open)", |b| {
        b.iter(|| Inventory::fold(black_box(sku.clone()), &events))
    });
}

criterion_group!(benches, order, inventory);
criterion_main!(benches);
