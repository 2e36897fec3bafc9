//! Snapshots (read models) on `snapshots`.

use std::collections::HashMap;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};
use orderflow_pipeline::ports::{Snapshot, SnapshotStore};
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{status, unavailable, CosmosStore};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotDoc {
    id: String,
    version: u64,
    updated_at: DateTime<Utc>,
    customer_id: Option<String>,
    state: Value,
}

impl From<SnapshotDoc> for Snapshot {
    fn from(doc: SnapshotDoc) -> Self {
        Snapshot {
            stream_id: doc.id,
            version: doc.version,
            updated_at: doc.updated_at,
            customer_id: doc.customer_id,
            state: doc.state,
        }
    }
}

impl CosmosStore {
    async fn read_snapshot(&self, stream_id: &str) -> Result<Option<(SnapshotDoc, Option<Etag>)>, StoreError> {
        match self.inner.snapshots.read_item(stream_id.to_string(), stream_id, None).await {
            Ok(response) => {
                self.inner.units.record_response("read-snapshot", response.headers());
                let etag = response.headers().etag().cloned();
                let doc = response.into_model().map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
                Ok(Some((doc, etag)))
            }
            Err(error) if status(&error) == 404 => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// The snapshots a query finds, the `limit` last updated first: sorted
    /// here, since a cross-partition ORDER BY needs a query plan the SDK
    /// does not run.
    async fn newest_first(
        &self,
        operation: &'static str,
        query: Query,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        let scope = FeedScope::full_container();
        let mut docs: Vec<SnapshotDoc> = self.query_all(operation, &self.inner.snapshots, query, scope).await?;
        docs.sort_by_key(|doc| std::cmp::Reverse(doc.updated_at));
        docs.truncate(limit);
        Ok(docs.into_iter().map(Snapshot::from).collect())
    }

    /// Writes one snapshot unless a newer one is stored: a conditional
    /// replace (or create), retried when another writer got there first.
    async fn put_one(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let doc = SnapshotDoc {
            id: snapshot.stream_id.clone(),
            version: snapshot.version,
            updated_at: snapshot.updated_at,
            customer_id: snapshot.customer_id,
            state: snapshot.state,
        };
        let container = &self.inner.snapshots;
        loop {
            let written = match self.read_snapshot(&doc.id).await? {
                Some((current, _)) if current.version >= doc.version => return Ok(()),
                Some((_, etag)) => {
                    let options =
                        etag.map(|etag| ItemWriteOptions::default().with_precondition(Precondition::IfMatch(etag)));
                    container.replace_item(doc.id.clone(), doc.id.as_str(), &doc, options).await
                }
                None => container.create_item(doc.id.clone(), doc.id.as_str(), &doc, None).await,
            };
            match written {
                Ok(response) => {
                    self.inner.units.record_response("write-snapshot", response.headers());
                    return Ok(());
                }
                // Someone else wrote it meanwhile: look again.
                Err(error) if matches!(status(&error), 409 | 412) => continue,
                Err(error) => return Err(unavailable(error)),
            }
        }
    }
}

#[async_trait]
impl SnapshotStore for CosmosStore {
    async fn get_many(&self, stream_ids: &[String]) -> Result<HashMap<String, Snapshot>, StoreError> {
        let reads = stream_ids.iter().map(|id| self.read_snapshot(id));
        let found = futures::future::try_join_all(reads).await?;
        Ok(found.into_iter().flatten().map(|(doc, _)| (doc.id.clone(), Snapshot::from(doc))).collect())
    }

    async fn put(&self, snapshots: Vec<Snapshot>) -> Result<(), StoreError> {
        futures::future::try_join_all(snapshots.into_iter().map(|s| self.put_one(s))).await?;
        Ok(())
    }

    /// Orders updated in the last hour.
    async fn recent_orders(&self, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let since = Utc::now() - chrono::Duration::hours(1);
        let query = Query::from("SELECT * FROM c WHERE c.updatedAt >= @since AND IS_STRING(c.customerId)")
            .with_parameter("@since", since)
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        self.newest_first("query-recent-orders", query, limit).await
    }

    async fn by_customer(&self, customer_id: &str, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.customerId = @customer")
            .with_parameter("@customer", customer_id)
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        self.newest_first("query-customer-orders", query, limit).await
    }
}
