//! Refused reactions on DynamoDB: table `{prefix}refusals`, partition `id`
//! (the reaction's key: recording it again writes nothing), with a global
//! index `byTime` (partition `g`, one value for every refusal; sort `t`, the
//! time) for the newest first. Refusals are rare, so one index partition
//! holds them; the index is eventually consistent, so a refusal recorded a
//! moment ago may be missing from a list for that moment.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::Select;
use chrono::SecondsFormat;
use orderflow_pipeline::ports::{Refusals, RefusedReaction};
use orderflow_pipeline::StoreError;

use crate::{conditional, json_of, s, to_json, unavailable, DynamoStore};

/// The index of refusals by time, and its one partition.
pub(crate) const BY_TIME: &str = "byTime";
const ALL: &str = "refusal";

#[async_trait]
impl Refusals for DynamoStore {
    async fn record(&self, refusal: &RefusedReaction) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.refusals)
            .item("id", s(&refusal.id))
            .item("g", s(ALL))
            .item("t", s(&refusal.time.to_rfc3339_opts(SecondsFormat::Micros, true)))
            .item("j", s(&to_json(refusal)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        conditional(put).map(drop)
    }

    async fn latest(&self, limit: usize) -> Result<(Vec<RefusedReaction>, u64), StoreError> {
        let newest = self
            .client
            .query()
            .table_name(&self.tables.refusals)
            .index_name(BY_TIME)
            .key_condition_expression("g = :g")
            .expression_attribute_values(":g", s(ALL))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let latest = newest
            .items()
            .iter()
            .take(limit)
            .map(|item| json_of::<RefusedReaction>(item, "j", "a refusal"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut count = 0u64;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.refusals)
                .index_name(BY_TIME)
                .key_condition_expression("g = :g")
                .expression_attribute_values(":g", s(ALL))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            count += u64::try_from(page.count()).unwrap_or(0);
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok((latest, count)),
            }
        }
    }
}
