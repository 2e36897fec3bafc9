//! `orderflow deadlines list` and `pass`: the deadlines orders wait on, and
//! passing the due ones by hand (what `serve` does every second).

use chrono::{SecondsFormat, Utc};
use orderflow_pipeline::deadlines::{backlog, ROUND};

use crate::config::Config;
use crate::pipeline::Pipeline;

pub async fn list(config: &Config, limit: usize, json: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(config).await?;
    let now = Utc::now();
    let (timers, _) = pipeline.stores.timers.pending(limit).await?;
    for timer in &timers {
        if json {
            println!("{}", serde_json::to_string(timer)?);
        } else {
            let when = timer.due_at.to_rfc3339_opts(SecondsFormat::Secs, true);
            let wait = match (now - timer.due_at).to_std() {
                Ok(overdue) => format!("overdue by {}", humantime::format_duration(whole_seconds(overdue))),
                Err(_) => "not due yet".into(),
            };
            println!("{when}  {} of {} ({wait})", timer.name, timer.stream_id);
        }
    }
    if !json {
        let backlog = backlog(pipeline.stores.timers.as_ref(), now).await?;
        let overdue = if backlog.overdue >= ROUND { format!("{ROUND} or more") } else { backlog.overdue.to_string() };
        eprintln!("{} deadline(s) in all, {overdue} due (store {})", backlog.pending, pipeline.store_name);
    }
    Ok(())
}

pub async fn pass(config: &Config) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(config).await?;
    let passed = pipeline.pass_deadlines().pass_due(Utc::now(), std::time::Duration::MAX).await?;
    println!(
        "passed {} deadline(s): {} changed their order, the others were no longer relevant",
        passed.handled, passed.acted
    );
    if passed.failed > 0 {
        anyhow::bail!("{} due deadline(s) could not be passed now; try again", passed.failed);
    }
    Ok(())
}

fn whole_seconds(duration: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(duration.as_secs())
}
