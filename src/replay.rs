//! `orderflow replay snapshots`: rebuilds the read models from the event
//! store — every stream's snapshot projected again from its events, by the
//! same projector `serve` runs, under a checkpoint of its own. Safe while
//! `serve` runs (a snapshot is only ever replaced by a newer version, so a
//! deleted or missing one comes back and a current one is left alone), and
//! resumable: an interrupted replay goes on from its checkpoint; a finished
//! one forgets it, so the next replay starts from the beginning again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indicatif::{ProgressBar, ProgressStyle};
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Projector, Step};
use orderflow_pipeline::ports::EventRecord;
use orderflow_pipeline::StoreError;

use crate::config::Config;
use crate::pipeline::Pipeline;

/// The replay's checkpoints, apart from `serve`'s projector.
const REPLAY: &str = "replay-snapshots";

/// The projector under the replay's name, counting what it handles.
struct Replay {
    projector: Projector,
    progress: ProgressBar,
}

#[async_trait]
impl Consumer for Replay {
    fn name(&self) -> &'static str {
        REPLAY
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        self.projector.handle(events).await?;
        self.progress.inc(events.len() as u64);
        Ok(())
    }
}

pub async fn snapshots(config: Config, quiet: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(&config).await?;
    let stores = &pipeline.stores;
    let progress = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    progress.set_style(ProgressStyle::with_template("{spinner} replaying snapshots: {pos} events ({per_sec}) {msg}")?);
    progress.enable_steady_tick(Duration::from_millis(200));
    let ranges = stores.feed.ranges().await?;
    let mut resumed = false;
    for range in &ranges {
        resumed |= stores.checkpoints.load(REPLAY, range).await?.is_some();
    }
    if resumed {
        progress.println("resuming an interrupted replay from its checkpoint");
    }
    let replay = Arc::new(Replay {
        projector: Projector::new(stores.events.clone(), stores.snapshots.clone()),
        progress: progress.clone(),
    });
    let mut runner = FeedRunner::new(stores.feed.clone(), stores.checkpoints.clone(), replay);
    runner.batch_size = 1_000;
    // Until a pass over every range finds nothing new: the head as it was
    // when the replay caught up (serve's projector handles what comes after).
    while runner.step().await? == Step::Progressed {}
    for range in &ranges {
        stores.checkpoints.forget(REPLAY, range).await?;
    }
    progress.finish_with_message("done");
    println!("replayed {} events into snapshots (store {})", progress.position(), pipeline.store_name);
    Ok(())
}
