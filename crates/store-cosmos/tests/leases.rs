//! Change-feed leases: two processes on one account share the feed ranges,
//! never both save a range's checkpoint, and one takes over the other's
//! ranges, from its checkpoints, when the other stops renewing.

use std::collections::BTreeSet;
use std::time::Duration;

use orderflow_pipeline::ports::{ChangeFeed, Checkpoints};
use orderflow_pipeline::StoreError;
use orderflow_store_cosmos::{emulator, init, CosmosStore};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test]
async fn two_processes_share_the_ranges_and_one_takes_over_when_the_other_stops() {
    let client = emulator::client().await.expect("an emulator");
    init(&client, "orderflow").await.expect("init");
    // Two stores over one account: what two `serve` processes have.
    let a = CosmosStore::connect(&client, "orderflow").await.expect("connect");
    let b = CosmosStore::connect(&client, "orderflow").await.expect("connect");
    let ranges = a.ranges().await.expect("ranges");
    assert!(ranges.len() >= 2, "the emulator splits a container into several feed ranges");

    let alone = a.acquire("projector", "A", &ranges, TTL).await.expect("acquire");
    assert_eq!(alone, ranges, "a lone process holds every range");
    a.save("projector", &ranges[0], "A", "a-was-here").await.expect("save");

    // B joins: it takes a range a round until the shares are even.
    let mut held_by_b = Vec::new();
    for _ in 0..ranges.len() {
        held_by_b = b.acquire("projector", "B", &ranges, TTL).await.expect("acquire");
    }
    let held_by_a = a.acquire("projector", "A", &ranges, TTL).await.expect("acquire");
    assert_eq!(held_by_a.len() + held_by_b.len(), ranges.len());
    assert!(held_by_a.len().abs_diff(held_by_b.len()) <= 1, "even shares: {held_by_a:?} / {held_by_b:?}");
    let everyone: BTreeSet<_> = held_by_a.iter().chain(&held_by_b).collect();
    assert_eq!(everyone.len(), ranges.len(), "each range has one owner");

    // A checkpoint of a range held by the other is refused, and changes nothing.
    let theirs = &held_by_b[0];
    b.save("projector", theirs, "B", "b-was-here").await.expect("the owner saves");
    let refused = a.save("projector", theirs, "A", "stale").await;
    assert!(matches!(refused, Err(StoreError::LeaseLost(_))), "{refused:?}");
    assert_eq!(a.load("projector", theirs).await.expect("load").as_deref(), Some("b-was-here"));

    // Other consumers have leases of their own.
    assert_eq!(b.acquire("publish-events", "B2", &ranges, TTL).await.expect("acquire"), ranges);

    // A stops renewing (it died): after the TTL, B holds everything and
    // goes on from A's checkpoints.
    let mine = &held_by_a[0];
    a.save("projector", mine, "A", "a-got-here").await.expect("save");
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    let all = b.acquire("projector", "B", &ranges, TTL).await.expect("acquire");
    assert_eq!(all, ranges);
    assert_eq!(b.load("projector", mine).await.expect("load").as_deref(), Some("a-got-here"));
    let refused = a.save("projector", mine, "A", "too-late").await;
    assert!(matches!(refused, Err(StoreError::LeaseLost(_))), "{refused:?}");
}
