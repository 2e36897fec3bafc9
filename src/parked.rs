//! `orderflow parked`: the streams a change-feed consumer could not handle
//! (their events wait, in order, behind the one that failed), and getting
//! them through again once what failed is fixed. A retry runs here, in this
//! process, against the shared store: it works whatever host runs the
//! consumers (`serve`, the Functions app), and a consumer that holds the
//! stream's range keeps holding its events back until the retry is through.

use orderflow_pipeline::consumers::{retry, Retried};
use orderflow_pipeline::ports::{ParkedStream, Versioned};

use crate::config::Config;
use crate::pipeline::Pipeline;

pub async fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(config).await?;
    let parked = pipeline.stores.parking.parked(None).await?;
    for Versioned { value: p, .. } in &parked {
        if json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            println!(
                "{:<18} {}  from #{} ({}) through #{}, parked {}{}: {}",
                p.consumer,
                p.stream_id,
                p.from_index,
                p.event_type,
                p.held_through,
                p.parked_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if p.retries > 0 { format!(", {} retries failed", p.retries) } else { String::new() },
                p.reason,
            );
        }
    }
    if !json {
        eprintln!("{} parked stream(s) (store {})", parked.len(), pipeline.store_name);
    }
    Ok(())
}

/// Retries the parked streams (all, or one stream, or one consumer's);
/// fails when one stays parked.
pub async fn retry_parked(config: &Config, stream: Option<String>, consumer: Option<String>) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(config).await?;
    let consumers = pipeline.consumers();
    let stores = &pipeline.stores;
    let chosen = |p: &ParkedStream| {
        stream.as_ref().is_none_or(|s| *s == p.stream_id) && consumer.as_ref().is_none_or(|c| *c == p.consumer)
    };
    let parked: Vec<_> = stores.parking.parked(None).await?.into_iter().filter(|p| chosen(&p.value)).collect();
    if parked.is_empty() {
        println!("nothing parked to retry");
        return Ok(());
    }
    let mut still = 0;
    for parked in parked {
        let (name, stream_id) = (parked.value.consumer.clone(), parked.value.stream_id.clone());
        let Some(step) = consumers.iter().find(|c| c.name() == name) else {
            println!("{name} {stream_id}: not a consumer this command runs (a replay's: replay it again)");
            still += 1;
            continue;
        };
        match retry(step.as_ref(), stores.events.as_ref(), stores.parking.as_ref(), parked).await? {
            Retried::Unparked { events } => println!("{name} {stream_id}: {events} event(s) handled, unparked"),
            Retried::StillParked { events, reason } => {
                still += 1;
                println!("{name} {stream_id}: {events} event(s) handled, still parked: {reason}");
            }
        }
    }
    pipeline.flush().await;
    if still > 0 {
        anyhow::bail!("{still} stream(s) still parked");
    }
    Ok(())
}
