//! Refused reactions on DynamoDB: table `{prefix}refusals`, partition `id`
//! (the reaction's key: recording it again writes nothing), with a global
//! index `byTime` (partition `g`, one value for every refusal; sort `t`, the
//! time) for the newest first. Refusals are rare, so one index partition
//! holds them; the index is eventually consistent, so a refusal recorded a
//! moment ago may be missing from a list for that moment.

use async_trait::async_trait;
use orderflow_pipeline::ports::{Refusals, RefusedReaction};
use orderflow_pipeline::StoreError;

use crate::{conditional, json_of, s, to_json, DynamoStore, Partition};

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
            .item("t", s(&crate::snapshots::sortable(refusal.time)))
            .item("j", s(&to_json(refusal)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        conditional(put).map(drop)
    }

    async fn latest(&self, limit: usize) -> Result<(Vec<RefusedReaction>, u64), StoreError> {
        let partition = Partition { table: &self.tables.refusals, index: Some(BY_TIME), key: "g", value: ALL };
        let newest = self.first_of(&partition, None, false, limit).await?;
        let latest = newest.iter().map(|item| json_of(item, "j", "a refusal")).collect::<Result<Vec<_>, _>>()?;
        Ok((latest, self.count_of(&partition).await?))
    }
}
