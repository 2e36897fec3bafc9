//! Timers on `timers`: one document per deadline (`id` = a digest of the
//! stream and the deadline's name, which may hold any characters), queried
//! by due time (`/dueAt/?` is indexed; RFC 3339 in UTC with a fixed number
//! of digits sorts as time).

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_pipeline::ports::{Timer, Timers};
use orderflow_pipeline::processor::fingerprint;
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};

use crate::{status, unavailable, CosmosStore};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimerDoc {
    id: String,
    due_at: String,
    timer: Timer,
}

fn timer_id(stream_id: &str, name: &str) -> String {
    fingerprint(&[stream_id.as_bytes(), name.as_bytes()])
}

fn sortable(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[async_trait]
impl Timers for CosmosStore {
    async fn schedule(&self, timers: Vec<Timer>) -> Result<(), StoreError> {
        for timer in timers {
            let id = timer_id(&timer.stream_id, &timer.name);
            let doc = TimerDoc { id: id.clone(), due_at: sortable(timer.due_at), timer };
            match self.inner.timers.create_item(id.clone(), id.as_str(), &doc, None).await {
                Ok(response) => self.inner.units.record_response("write-timer", response.headers()),
                // Scheduled before: it stays as it is.
                Err(error) if status(&error) == 409 => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        Ok(())
    }

    /// Sorted here: a cross-partition ORDER BY needs a query plan the SDK
    /// does not run. What is due at one moment is a small part of all timers.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.dueAt <= @now")
            .with_parameter("@now", sortable(now))
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        let docs: Vec<TimerDoc> =
            self.query_all("query-timers", &self.inner.timers, query, FeedScope::full_container()).await?;
        let mut due: Vec<Timer> = docs.into_iter().map(|doc| doc.timer).collect();
        due.sort_by_key(|timer| timer.due_at);
        due.truncate(limit);
        Ok(due)
    }

    async fn complete(&self, stream_id: &str, name: &str) -> Result<(), StoreError> {
        let id = timer_id(stream_id, name);
        match self.inner.timers.delete_item(id.clone(), id.as_str(), None).await {
            Ok(response) => {
                self.inner.units.record_response("write-timer", response.headers());
                Ok(())
            }
            Err(error) if status(&error) == 404 => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn pending(&self, limit: usize) -> Result<(Vec<Timer>, u64), StoreError> {
        let docs: Vec<TimerDoc> = self
            .query_all("query-timers", &self.inner.timers, Query::from("SELECT * FROM c"), FeedScope::full_container())
            .await?;
        let mut all: Vec<Timer> = docs.into_iter().map(|doc| doc.timer).collect();
        all.sort_by_key(|timer| timer.due_at);
        let count = all.len() as u64;
        all.truncate(limit);
        Ok((all, count))
    }
}
