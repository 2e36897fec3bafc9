//! Parked streams on DynamoDB: table `{prefix}parked`, partition `c` (the
//! consumer), sort `s` (the stream), the version `v` every conditional write
//! names, and the parked stream as JSON (`j`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use orderflow_pipeline::ports::{ParkedStream, Parking, Versioned};
use orderflow_pipeline::StoreError;

use crate::leases::new_version;
use crate::{conditional, json_of, s, to_json, unavailable, DynamoStore, Partition};

#[async_trait]
impl Parking for DynamoStore {
    async fn parked(&self, consumer: Option<&str>) -> Result<Vec<Versioned<ParkedStream>>, StoreError> {
        let items = match consumer {
            Some(consumer) => {
                self.all_of(&Partition { table: &self.tables.parked, index: None, key: "c", value: consumer }).await?
            }
            // Few streams are ever parked: every consumer's is one scan.
            None => {
                let mut items = Vec::new();
                let mut start = None;
                loop {
                    let page = self
                        .client
                        .scan()
                        .table_name(&self.tables.parked)
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(unavailable)?;
                    items.extend(page.items.unwrap_or_default());
                    match page.last_evaluated_key {
                        Some(last) if !last.is_empty() => start = Some(last),
                        _ => break items,
                    }
                }
            }
        };
        items.iter().map(parked_of).collect()
    }

    async fn put_parked(&self, parked: &ParkedStream, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let new_version = new_version();
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.parked)
            .item("c", s(&parked.consumer))
            .item("s", s(&parked.stream_id))
            .item("v", s(&new_version))
            .item("j", s(&to_json(parked)?));
        let put = match version {
            None => put.condition_expression("attribute_not_exists(c)"),
            Some(version) => put.condition_expression("v = :v").expression_attribute_values(":v", s(version)),
        };
        Ok(conditional(put.send().await)?.then_some(new_version))
    }

    async fn unpark(&self, consumer: &str, stream_id: &str, version: &str) -> Result<bool, StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.tables.parked)
            .key("c", s(consumer))
            .key("s", s(stream_id))
            .condition_expression("v = :v")
            .expression_attribute_values(":v", s(version))
            .send()
            .await;
        conditional(deleted)
    }
}

fn parked_of(item: &HashMap<String, AttributeValue>) -> Result<Versioned<ParkedStream>, StoreError> {
    let version = item.get("v").and_then(|v| v.as_s().ok()).cloned();
    let version = version.ok_or_else(|| StoreError::Corrupt("a parked stream without a version".into()))?;
    Ok(Versioned { value: json_of(item, "j", "a parked stream")?, version })
}
