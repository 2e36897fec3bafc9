//! Refused reactions on `refusals`: one small document each, `id` = the
//! reaction's idempotency key, so recording one twice keeps one.

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, Query};
use orderflow_pipeline::ports::{Refusals, RefusedReaction};
use orderflow_pipeline::StoreError;

use crate::{status, unavailable, CosmosStore};

#[async_trait]
impl Refusals for CosmosStore {
    async fn record(&self, refusal: &RefusedReaction) -> Result<(), StoreError> {
        let id = refusal.id.clone();
        match self.inner.refusals.create_item(id.clone(), id.as_str(), refusal, None).await {
            Ok(response) => {
                self.inner.units.record_response("write-refusal", response.headers());
                Ok(())
            }
            Err(error) if status(&error) == 409 => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Sorted here: refusals are few, and a cross-partition ORDER BY needs a
    /// query plan the SDK does not run.
    async fn latest(&self, limit: usize) -> Result<(Vec<RefusedReaction>, u64), StoreError> {
        let query = Query::from("SELECT * FROM c");
        let mut all: Vec<RefusedReaction> =
            self.query_all("query-refusals", &self.inner.refusals, query, FeedScope::full_container()).await?;
        all.sort_by_key(|refusal| std::cmp::Reverse(refusal.time));
        let count = all.len() as u64;
        all.truncate(limit);
        Ok((all, count))
    }
}
