//! `orderflow refused list`: the reactions the fulfillment policy derived
//! from an event that their target stream refused, newest first. They are
//! kept in the store (never retried by themselves): each names the event,
//! the command and why it was refused, for an operator to act on.

use crate::config::Config;
use crate::pipeline::Pipeline;

pub async fn list(config: &Config, limit: usize, json: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(config).await?;
    let (refusals, count) = pipeline.stores.refusals.latest(limit).await?;
    for refusal in &refusals {
        if json {
            println!("{}", serde_json::to_string(refusal)?);
        } else {
            println!(
                "{}  {} #{} of {} → {} on {}: {} ({})",
                refusal.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                refusal.event_type,
                refusal.event_index,
                refusal.event_stream_id,
                refusal.command,
                refusal.target_stream_id,
                refusal.reason,
                refusal.code,
            );
        }
    }
    if !json {
        eprintln!("{count} refused reaction(s) in all (store {})", pipeline.store_name);
    }
    Ok(())
}
