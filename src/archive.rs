//! `orderflow archive --closed-before`: moves the events of orders closed
//! before then into the archive, with a progress bar. Safe while `serve`
//! runs (which does the same on a schedule, `OrderflowArchiveClosedAfter`);
//! interrupted, it goes on where it stopped the next time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::pipeline::Pipeline;

/// `--closed-before`: an RFC 3339 time, or a duration before now (`90d`).
pub fn parse_cutoff(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(time.to_utc());
    }
    let ago = humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 90d"))?;
    chrono::Duration::from_std(ago).ok().and_then(|ago| Utc::now().checked_sub_signed(ago)).ok_or("too long ago".into())
}

pub async fn run(config: &Config, closed_before: DateTime<Utc>, quiet: bool) -> anyhow::Result<()> {
    if closed_before > Utc::now() {
        anyhow::bail!("--closed-before {closed_before} is in the future: only orders closed already can be archived");
    }
    let pipeline = Pipeline::open(config).await?;
    let progress = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    progress
        .set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} closed orders ({per_sec}, {eta} left) {msg}")?);
    let archived = pipeline
        .archive_closed()
        .run(closed_before, Duration::MAX, |so_far| {
            progress.set_length(so_far.candidates);
            progress.set_position(so_far.orders + so_far.still_open);
            progress.set_message(format!("{} events moved", so_far.events));
        })
        .await?;
    progress.finish_and_clear();
    println!(
        "archived {} order(s) closed before {closed_before}: {} event(s) moved out of the hot store (store {})",
        archived.orders, archived.events, pipeline.store_name
    );
    if archived.still_open > 0 {
        println!("{} order(s) left alone: their read model says closed, their stream not (yet)", archived.still_open);
    }
    let waiting = archived.candidates.saturating_sub(archived.orders + archived.still_open);
    if waiting > 0 {
        println!(
            "{waiting} order(s) left for a later run: a change-feed consumer has not read all their events yet \
             (the embedded store never archives what a consumer still has to read)"
        );
    }
    Ok(())
}
