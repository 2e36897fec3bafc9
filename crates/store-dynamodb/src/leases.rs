//! Leases on DynamoDB: table `{prefix}leases`, partition `c` (the consumer),
//! sort `r` (the range), the version `v` every conditional write names (a
//! fresh id per write), and heartbeats kept with their expiry `x` (the
//! table's TTL attribute).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use orderflow_pipeline::ports::{Lease, LeaseStore, Versioned};
use orderflow_pipeline::StoreError;

use crate::{conditional, n, s, unavailable, DynamoStore, Partition};

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn leases(&self, consumer: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        let partition = Partition { table: &self.tables.leases, index: None, key: "c", value: consumer };
        self.all_of(&partition).await?.iter().map(lease_of).collect()
    }

    async fn lease(&self, consumer: &str, range: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        let item = self.get(&self.tables.leases, [("c", s(consumer)), ("r", s(range))]).await?;
        item.as_ref().map(lease_of).transpose()
    }

    async fn put(&self, lease: &Lease, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let new_version = new_version();
        let put = self.client.put_item().table_name(&self.tables.leases).set_item(Some(item_of(lease, &new_version)));
        let put = match version {
            None => put.condition_expression("attribute_not_exists(c)"),
            Some(version) => put.condition_expression("v = :v").expression_attribute_values(":v", s(version)),
        };
        Ok(conditional(put.send().await)?.then_some(new_version))
    }

    async fn delete(&self, consumer: &str, range: &str, version: Option<&str>) -> Result<bool, StoreError> {
        let delete = self.client.delete_item().table_name(&self.tables.leases).key("c", s(consumer)).key("r", s(range));
        let delete = match version {
            None => delete.condition_expression("attribute_exists(c)"),
            Some(version) => delete.condition_expression("v = :v").expression_attribute_values(":v", s(version)),
        };
        conditional(delete.send().await)
    }

    async fn heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        let lease = Lease::heartbeat(instance);
        let mut item = item_of(&lease, &new_version());
        item.insert("x".into(), n(lease.expires_at.timestamp()));
        self.client
            .put_item()
            .table_name(&self.tables.leases)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// A fresh version for a conditional write.
pub(crate) fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn item_of(lease: &Lease, version: &str) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("c".to_string(), s(&lease.consumer)),
        ("r".to_string(), s(&lease.range)),
        ("v".to_string(), s(version)),
        ("expiresAt".to_string(), s(&lease.expires_at.to_rfc3339())),
    ]);
    for (name, value) in
        [("continuation", &lease.continuation), ("owner", &lease.owner), ("requestedBy", &lease.requested_by)]
    {
        if let Some(value) = value {
            item.insert(name.to_string(), s(value));
        }
    }
    item
}

fn lease_of(item: &HashMap<String, AttributeValue>) -> Result<Versioned<Lease>, StoreError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let required = |name: &str| text(name).ok_or_else(|| StoreError::Corrupt(format!("a lease without {name}")));
    let expires_at = DateTime::parse_from_rfc3339(&required("expiresAt")?)
        .map_err(|e| StoreError::Corrupt(format!("a lease's expiry: {e}")))?
        .with_timezone(&Utc);
    let consumer = required("c")?;
    Ok(Versioned {
        value: Lease {
            range: required("r")?,
            continuation: text("continuation"),
            owner: text("owner"),
            expires_at,
            requested_by: text("requestedBy"),
            consumer,
        },
        version: required("v")?,
    })
}
