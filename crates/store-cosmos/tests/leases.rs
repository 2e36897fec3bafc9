//! Change-feed leases on Cosmos DB (the SDK's in-memory emulator): two
//! processes on one account share the feed ranges and hand them over
//! between batches, one takes over when the other stops renewing, and a
//! physical partition that splits is read on as its two halves — each from
//! where its parent stopped, with nothing replayed and nothing skipped.

use std::sync::Arc;
use std::time::Duration;

use orderflow_pipeline::conformance::{append_one, Recorder};
use orderflow_pipeline::consumers::{FeedRunner, Step};
use orderflow_pipeline::ports::{LeaseStore, StartFrom, Stores};
use orderflow_store_cosmos::{emulator, init, CosmosStore};

async fn catch_up(runner: &mut FeedRunner) {
    while runner.step().await.expect("step") == Step::Progressed {}
}

fn runner(store: &Arc<CosmosStore>, owner: &str, recorder: Arc<Recorder>, ttl: Duration) -> FeedRunner {
    FeedRunner::new(&Stores::of(store.clone()), recorder).with_owner(owner).with_lease_ttl(ttl)
}

async fn owners(store: &CosmosStore) -> Vec<Option<String>> {
    store.leases("recorder").await.expect("leases").into_iter().map(|l| l.value.owner).collect()
}

#[tokio::test]
async fn two_processes_share_the_ranges_and_one_takes_over_when_the_other_stops() {
    let client = emulator::client().await.expect("an emulator");
    init(&client, "orderflow").await.expect("init");
    // Two stores over one account: what two `serve` processes have.
    let a = Arc::new(CosmosStore::connect(&client, "orderflow").await.expect("connect"));
    let b = Arc::new(CosmosStore::connect(&client, "orderflow").await.expect("connect"));
    let streams: Vec<String> = (0..24).map(|i| format!("Sku-{i}")).collect();
    for stream in &streams {
        append_one(&*a, stream).await;
    }
    let ttl = Duration::from_secs(2);
    let (a_seen, b_seen) =
        (Arc::new(Recorder::new(StartFrom::Beginning)), Arc::new(Recorder::new(StartFrom::Beginning)));
    let mut runner_a = runner(&a, "A", a_seen.clone(), ttl);
    catch_up(&mut runner_a).await;
    let ranges = owners(&a).await.len();
    assert!(ranges >= 2, "the emulator splits a container into several feed ranges");
    assert!(owners(&a).await.iter().all(|o| o.as_deref() == Some("A")), "a lone process holds every range");

    // B joins: A hands it ranges between batches, until the shares are even.
    let mut runner_b = runner(&b, "B", b_seen.clone(), ttl);
    for _ in 0..2 * ranges {
        tokio::time::sleep(ttl / 4).await;
        runner_b.step().await.expect("B steps");
        runner_a.step().await.expect("A steps");
    }
    let held = owners(&a).await;
    let count = |owner: &str| held.iter().filter(|o| o.as_deref() == Some(owner)).count();
    assert!(count("A").abs_diff(count("B")) <= 1 && count("A") + count("B") == ranges, "even shares: {held:?}");

    // A stops renewing (it died): after the TTL, B holds everything and
    // goes on from A's positions: every event handled once between them.
    for stream in &streams {
        append_one(&*a, stream).await;
    }
    catch_up(&mut runner_a).await;
    drop(runner_a);
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    for stream in &streams {
        append_one(&*b, stream).await;
    }
    catch_up(&mut runner_b).await;
    catch_up(&mut runner_b).await;
    assert!(owners(&b).await.iter().all(|o| o.as_deref() == Some("B")), "{:?}", owners(&b).await);
    let mut all: Vec<_> = a_seen.seen().into_iter().chain(b_seen.seen()).collect();
    all.sort();
    let expected: Vec<(String, u64)> = {
        let mut expected: Vec<_> = streams.iter().flat_map(|s| (0..3).map(move |i| (s.clone(), i))).collect();
        expected.sort();
        expected
    };
    assert_eq!(all, expected, "every event once");
}

#[tokio::test]
async fn a_partition_that_splits_is_read_on_as_its_halves() {
    let (client, account) = emulator::account_with_client().await.expect("an emulator");
    init(&client, "orderflow").await.expect("init");
    let store = Arc::new(CosmosStore::connect(&client, "orderflow").await.expect("connect"));
    let streams: Vec<String> = (0..40).map(|i| format!("Sku-{i}")).collect();
    for stream in &streams {
        append_one(&*store, stream).await;
    }
    let recorder = Arc::new(Recorder::new(StartFrom::Beginning));
    let mut runner = runner(&store, "A", recorder.clone(), Duration::from_millis(400));
    catch_up(&mut runner).await;
    let before = owners(&store).await.len();
    assert_eq!(recorder.seen().len(), 40);

    account.split("orderflow", "events", 0).await;
    for stream in &streams {
        append_one(&*store, stream).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    catch_up(&mut runner).await;
    catch_up(&mut runner).await;
    assert_eq!(owners(&store).await.len(), before + 1, "one range became two");
    let mut seen = recorder.seen();
    seen.sort();
    for stream in &streams {
        let indexes: Vec<u64> = seen.iter().filter(|(s, _)| s == stream).map(|(_, i)| *i).collect();
        assert_eq!(indexes, [0, 1], "{stream}: each event once");
    }
}
