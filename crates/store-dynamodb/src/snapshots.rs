//! Read models on DynamoDB: table `{prefix}snapshots`, partition `p` (the
//! stream id), with the stream version `n` it reflects (a write of an older
//! or the same version is refused by its condition, so a snapshot never goes
//! back), its time `u`, and the view as JSON (`j`). Orders also carry their
//! customer `cu` and `g = "order"`, which two global indexes sort by time:
//! `byCustomer` (a customer's orders) and `recent` (the console's latest;
//! one partition, written once per projected order). The indexes are
//! eventually consistent: an order projected a moment ago may be missing
//! from a list for that moment, never from `get`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::try_join_all;
use orderflow_pipeline::ports::{Snapshot, SnapshotStore};
use orderflow_pipeline::StoreError;

use crate::{conditional, json_of, n, number, s, to_json, unavailable, DynamoStore, Partition};

pub(crate) const BY_CUSTOMER: &str = "byCustomer";
pub(crate) const RECENT: &str = "recent";
pub(crate) const ORDERS: &str = "order";
/// Keys in one `BatchGetItem`.
const BATCH: usize = 100;

#[async_trait]
impl SnapshotStore for DynamoStore {
    async fn get_many(&self, stream_ids: &[String]) -> Result<HashMap<String, Snapshot>, StoreError> {
        let mut found = HashMap::new();
        for chunk in stream_ids.chunks(BATCH) {
            let keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|id| HashMap::from([("p".to_string(), s(id))])).collect();
            let mut asked = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(crate::invalid)?;
            loop {
                let answer = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.snapshots, asked)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in answer.responses().and_then(|r| r.get(&self.tables.snapshots)).into_iter().flatten() {
                    let snapshot = snapshot_of(item)?;
                    found.insert(snapshot.stream_id.clone(), snapshot);
                }
                // Keys the service did not get to (throttling): asked again.
                match answer.unprocessed_keys.and_then(|mut left| left.remove(&self.tables.snapshots)) {
                    Some(left) if !left.keys().is_empty() => asked = left,
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    async fn put(&self, snapshots: Vec<Snapshot>) -> Result<(), StoreError> {
        let writes = snapshots.iter().map(|snapshot| async move {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.tables.snapshots)
                .item("p", s(&snapshot.stream_id))
                .item("n", n(snapshot.version))
                .item("u", s(&sortable(snapshot.updated_at)))
                .item("j", s(&to_json(&snapshot.state)?))
                .condition_expression("attribute_not_exists(p) OR n < :n")
                .expression_attribute_values(":n", n(snapshot.version));
            if let Some(customer_id) = &snapshot.customer_id {
                put = put.item("cu", s(customer_id)).item("g", s(ORDERS));
            }
            conditional(put.send().await).map(drop)
        });
        try_join_all(writes).await.map(drop)
    }

    async fn by_customer(&self, customer_id: &str, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        self.newest(BY_CUSTOMER, "cu", customer_id, limit).await
    }

    async fn recent_orders(&self, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        self.newest(RECENT, "g", ORDERS, limit).await
    }
}

impl DynamoStore {
    /// The newest `limit` read models of one partition of a time-sorted index.
    async fn newest(&self, index: &str, key: &str, value: &str, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let partition = Partition { table: &self.tables.snapshots, index: Some(index), key, value };
        self.first_of(&partition, None, false, limit).await?.iter().map(snapshot_of).collect()
    }
}

/// A time as text that sorts as the time does.
pub(crate) fn sortable(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn time_of(item: &HashMap<String, AttributeValue>, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let text = item.get(name).and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Corrupt(format!("no {name}")))?;
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
}

fn snapshot_of(item: &HashMap<String, AttributeValue>) -> Result<Snapshot, StoreError> {
    let stream_id = item.get("p").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    Ok(Snapshot {
        version: number(item, "n")?,
        updated_at: time_of(item, "u")?,
        customer_id: item.get("cu").and_then(|v| v.as_s().ok()).cloned(),
        state: json_of(item, "j", &stream_id)?,
        stream_id,
    })
}
