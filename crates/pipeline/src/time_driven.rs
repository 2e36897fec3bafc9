//! The time-driven step as a scheduled host runs it (the Functions timer,
//! the Lambda schedule): pass the due deadlines, then archive the orders
//! closed long enough ago, within one invocation's time. (`serve` runs the
//! two on their own clocks: deadlines every second, archival every minute.)

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::archive::{ArchiveClosed, Archived};
use crate::deadlines::{PassDeadlines, Passed};
use crate::StoreError;

pub struct TimeDriven {
    pub deadlines: PassDeadlines,
    /// Archival, and how long after closing an order is archived (none:
    /// archival is off).
    pub archive: Option<(ArchiveClosed, chrono::Duration)>,
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    pub passed: Passed,
    pub archived: Archived,
}

impl TimeDriven {
    /// Deadlines first (they change orders people wait on), archival with
    /// the time left of `budget`.
    pub async fn run(&self, now: DateTime<Utc>, budget: Duration) -> Result<Ran, StoreError> {
        let started = tokio::time::Instant::now();
        let passed = self.deadlines.pass_due(now, budget).await?;
        let archived = match &self.archive {
            Some((step, closed_after)) if started.elapsed() < budget => {
                step.run(now - *closed_after, budget - started.elapsed(), |_| {}).await?
            }
            _ => Archived::default(),
        };
        Ok(Ran { passed, archived })
    }
}
