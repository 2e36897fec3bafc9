//! Timers on DynamoDB: table `{prefix}timers`, partition `p` (the stream),
//! sort `name`, the due time `d` and the timer as JSON (`j`); a global index
//! `byDue` (partition `g`, one value for every timer; sort `d`) gives the
//! due ones, earliest first. Scheduling again keeps the first (a conditional
//! put); completing deletes it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use orderflow_pipeline::ports::{Timer, Timers};
use orderflow_pipeline::StoreError;

use crate::snapshots::sortable;
use crate::{conditional, json_of, s, to_json, unavailable, DynamoStore, Partition};

pub(crate) const BY_DUE: &str = "byDue";
const ALL: &str = "timer";

#[async_trait]
impl Timers for DynamoStore {
    async fn schedule(&self, timers: Vec<Timer>) -> Result<(), StoreError> {
        let writes = timers.iter().map(|timer| async move {
            let put = self
                .client
                .put_item()
                .table_name(&self.tables.timers)
                .item("p", s(&timer.stream_id))
                .item("name", s(&timer.name))
                .item("g", s(ALL))
                .item("d", s(&sortable(timer.due_at)))
                .item("j", s(&to_json(timer)?))
                .condition_expression("attribute_not_exists(p)")
                .send()
                .await;
            conditional(put).map(drop)
        });
        try_join_all(writes).await.map(drop)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        self.earliest(Some(now), limit).await
    }

    async fn complete(&self, stream_id: &str, name: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.timers)
            .key("p", s(stream_id))
            .key("name", s(name))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn pending(&self, limit: usize) -> Result<(Vec<Timer>, u64), StoreError> {
        Ok((self.earliest(None, limit).await?, self.count_of(&self.due_index()).await?))
    }
}

impl DynamoStore {
    fn due_index(&self) -> Partition<'_> {
        Partition { table: &self.tables.timers, index: Some(BY_DUE), key: "g", value: ALL }
    }

    /// The earliest `limit` timers, due by `until` when given.
    async fn earliest(&self, until: Option<DateTime<Utc>>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let due_by = until.map(|until| ("d <= :until", ":until", s(&sortable(until))));
        let items = self.first_of(&self.due_index(), due_by, true, limit).await?;
        items.iter().map(|item| json_of::<Timer>(item, "j", "a timer")).collect()
    }
}
