//! `orderflow replay`: runs a change-feed step again over the event store,
//! under a checkpoint of its own, with a progress line.
//!
//! - `replay snapshots`: every stream's snapshot projected again from its
//!   events by the same projector `serve` runs. Safe while `serve` runs (a
//!   snapshot is only ever replaced by a newer version, so a deleted or
//!   missing one comes back and a current one is left alone).
//! - `replay topics --from TIME`: the events committed since TIME published
//!   again to the downstream topics. Consumers deduplicate by CloudEvent id
//!   (the event id), so a republished event is recognised.
//!
//! Both are resumable: an interrupted replay goes on from its checkpoint; a
//! finished one forgets it, so the next replay starts over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Projector, Publisher, Step};
use orderflow_pipeline::ports::{EventRecord, StartFrom};
use orderflow_pipeline::StoreError;

use crate::config::Config;
use crate::pipeline::Pipeline;

/// A step run again under the replay's own name (its checkpoints), on the
/// events since `from`, counting what it handles.
struct Replay {
    name: &'static str,
    step: Box<dyn Consumer>,
    from: Option<DateTime<Utc>>,
    progress: ProgressBar,
}

#[async_trait]
impl Consumer for Replay {
    fn name(&self) -> &'static str {
        self.name
    }

    /// From the beginning, or the position of `--from`: what the operator asked for.
    fn start(&self) -> StartFrom {
        self.from.map_or(StartFrom::Beginning, StartFrom::Time)
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let since: Vec<EventRecord> = match self.from {
            Some(from) => events.iter().filter(|e| e.time >= from).cloned().collect(),
            None => events.to_vec(),
        };
        if !since.is_empty() {
            self.step.handle(&since).await?;
        }
        self.progress.inc(since.len() as u64);
        Ok(())
    }
}

pub async fn snapshots(config: Config, quiet: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(&config).await?;
    let projector = Projector::new(pipeline.stores.events.clone(), pipeline.stores.snapshots.clone());
    let replayed = replay(&pipeline, &config.instance, "replay-snapshots", Box::new(projector), None, quiet).await?;
    println!("replayed {replayed} events into snapshots (store {})", pipeline.store_name);
    Ok(())
}

pub async fn topics(config: Config, from: DateTime<Utc>, quiet: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(&config).await?;
    let publisher = Publisher::new(pipeline.producer.clone());
    let replayed = replay(&pipeline, &config.instance, "replay-topics", Box::new(publisher), Some(from), quiet).await?;
    pipeline.flush().await;
    println!("republished {replayed} events committed since {from} (store {})", pipeline.store_name);
    Ok(())
}

/// Runs `step` over the whole change feed as `name`; the events it handled.
async fn replay(
    pipeline: &Pipeline,
    instance: &str,
    name: &'static str,
    step: Box<dyn Consumer>,
    from: Option<DateTime<Utc>>,
    quiet: bool,
) -> anyhow::Result<u64> {
    let stores = &pipeline.stores;
    let progress = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    progress
        .set_style(ProgressStyle::with_template(&format!("{{spinner}} {name}: {{pos}} events ({{per_sec}}) {{msg}}"))?);
    progress.enable_steady_tick(Duration::from_millis(200));
    if !stores.leases.leases(name).await?.is_empty() {
        progress.println(format!("{name}: resuming an interrupted replay from its checkpoint"));
    }
    let replay = Arc::new(Replay { name, step, from, progress: progress.clone() });
    let mut runner = FeedRunner::new(stores, replay).with_owner(&format!("{name}@{instance}"));
    runner.batch_size = 1_000;
    // Until a pass over every range finds nothing new: the head as it was
    // when the replay caught up (serve's own steps handle what comes after).
    while runner.step().await? == Step::Progressed {}
    runner.forget().await?;
    progress.finish_with_message("done");
    Ok(progress.position())
}
