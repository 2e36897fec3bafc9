//! `orderflow replay`: runs a change-feed step again over the event store,
//! under a checkpoint of its own, with a progress line.
//!
//! - `replay snapshots`: every stream's snapshot projected again from its
//!   events by the same projector `serve` runs, stream by stream over the
//!   store's list of streams (all history, whatever the change feed still
//!   holds; one snapshot write per stream). Safe while `serve` runs (a
//!   snapshot is only ever replaced by a newer version, so a deleted or
//!   missing one comes back and a current one is left alone).
//! - `replay topics --from TIME`: the events committed since TIME published
//!   again to the downstream topics, read from the change feed — or stream
//!   by stream when the feed no longer holds TIME (a DynamoDB Stream keeps
//!   24 hours). Consumers deduplicate by CloudEvent id (the event id), so a
//!   republished event is recognised.
//!
//! Both are resumable: an interrupted replay goes on from its checkpoint; a
//! finished one forgets it, so the next replay starts over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Projector, Publisher, Step};
use orderflow_pipeline::ports::{EventRecord, Lease, LeaseStore, StartFrom};
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
    let replay = Replay::new("replay-snapshots", Box::new(projector), None, quiet)?;
    let replayed = replay.over_streams(&pipeline, &config.instance).await?;
    println!("replayed {replayed} events into snapshots (store {})", pipeline.store_name);
    Ok(())
}

pub async fn topics(config: Config, from: DateTime<Utc>, quiet: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(&config).await?;
    let publisher = Publisher::new(pipeline.producer.clone());
    let replay = Replay::new("replay-topics", Box::new(publisher), Some(from), quiet)?;
    let feed_holds_from = match pipeline.stores.feed.retention() {
        None => true,
        Some(kept) => chrono::Duration::from_std(kept).is_ok_and(|kept| from > Utc::now() - kept),
    };
    let replayed = if feed_holds_from {
        replay.over_feed(&pipeline, &config.instance).await?
    } else {
        replay.over_streams(&pipeline, &config.instance).await?
    };
    pipeline.flush().await;
    println!("republished {replayed} events committed since {from} (store {})", pipeline.store_name);
    Ok(())
}

/// Streams listed a request, and events read a request and handed to the
/// step at a time, when replaying stream by stream.
const STREAMS_PER_PAGE: usize = 100;
const EVENTS_PER_BATCH: usize = 1_000;
/// The checkpoint's range name when replaying stream by stream.
const STREAMS: &str = "streams";

impl Replay {
    fn new(
        name: &'static str,
        step: Box<dyn Consumer>,
        from: Option<DateTime<Utc>>,
        quiet: bool,
    ) -> anyhow::Result<Replay> {
        let progress = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
        progress.set_style(ProgressStyle::with_template(&format!(
            "{{spinner}} {name}: {{pos}} events ({{per_sec}}) {{msg}}"
        ))?);
        progress.enable_steady_tick(Duration::from_millis(200));
        Ok(Replay { name, step, from, progress })
    }

    async fn say_if_resuming(&self, leases: &dyn LeaseStore) -> Result<(), StoreError> {
        if !leases.leases(self.name).await?.is_empty() {
            self.progress.println(format!("{}: resuming an interrupted replay from its checkpoint", self.name));
        }
        Ok(())
    }

    /// Runs the step over the whole change feed; the events it handled.
    async fn over_feed(self, pipeline: &Pipeline, instance: &str) -> anyhow::Result<u64> {
        let stores = &pipeline.stores;
        self.say_if_resuming(stores.leases.as_ref()).await?;
        let (name, progress) = (self.name, self.progress.clone());
        let mut runner = FeedRunner::new(stores, Arc::new(self)).with_owner(&format!("{name}@{instance}"));
        runner.batch_size = EVENTS_PER_BATCH;
        // Until a pass over every range finds nothing new: the head as it was
        // when the replay caught up (serve's own steps handle what comes after).
        while runner.step().await? == Step::Progressed {}
        runner.forget().await?;
        progress.finish_with_message("done");
        Ok(progress.position())
    }

    /// Runs the step over every stream the store lists, each stream's events
    /// in order, checkpointing after each page of streams; the events it
    /// handled.
    async fn over_streams(self, pipeline: &Pipeline, instance: &str) -> anyhow::Result<u64> {
        let (events, leases) = (&pipeline.stores.events, pipeline.stores.leases.as_ref());
        self.say_if_resuming(leases).await?;
        let checkpoint = leases.lease(self.name, STREAMS).await?;
        let (mut after, mut version) = match checkpoint {
            Some(held) => (held.value.continuation, Some(held.version)),
            None => (None, None),
        };
        let (mut streams, mut batch) = (0u64, Vec::new());
        loop {
            let page = events.stream_ids(after.as_deref(), STREAMS_PER_PAGE).await?;
            for stream_id in &page.ids {
                let mut from_index = 0;
                loop {
                    let read = events.read_stream(stream_id, from_index, EVENTS_PER_BATCH).await?;
                    from_index += read.len() as u64;
                    let whole = read.len() < EVENTS_PER_BATCH;
                    batch.extend(read);
                    if batch.len() >= EVENTS_PER_BATCH {
                        self.handle(&std::mem::take(&mut batch)).await?;
                    }
                    if whole {
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                self.handle(&std::mem::take(&mut batch)).await?;
            }
            streams += page.ids.len() as u64;
            self.progress.set_message(format!("{streams} streams"));
            let Some(next) = page.next else { break };
            let lease = Lease {
                consumer: self.name.into(),
                range: STREAMS.into(),
                continuation: Some(next.clone()),
                owner: Some(format!("{}@{instance}", self.name)),
                expires_at: Utc::now(),
                requested_by: None,
            };
            let Some(written) = leases.put(&lease, version.as_deref()).await? else {
                anyhow::bail!("{}: another replay moved the checkpoint; run one replay at a time", self.name);
            };
            (after, version) = (Some(next), Some(written));
        }
        for lease in leases.leases(self.name).await? {
            leases.delete(self.name, &lease.value.range, None).await?;
        }
        self.progress.finish_with_message(format!("done: {streams} streams"));
        Ok(self.progress.position())
    }
}
