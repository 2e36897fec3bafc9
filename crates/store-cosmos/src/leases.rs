//! Change-feed leases on `leases`: one document per consumer and feed range
//! (`id` = `{consumer}|{range}`), every write conditional on the ETag last
//! read. Who takes which lease when is the pipeline's (`consumers::leases`);
//! this is only the storage. The Functions host's own leases (ids with the
//! function prefixes) live in the same container and are left alone.

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};
use orderflow_pipeline::ports::{Lease, LeaseStore, Versioned, HEARTBEAT_RETENTION};
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};

use crate::{status, unavailable, CosmosStore};

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseDoc {
    id: String,
    consumer: String,
    range: String,
    continuation: Option<String>,
    owner: Option<String>,
    expires_at: DateTime<Utc>,
    #[serde(default)]
    requested_by: Option<String>,
    updated_at: DateTime<Utc>,
    /// Seconds the document is kept after its last write (heartbeats only:
    /// a feed range's position is kept for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    /// The service's ETag, as queries return it.
    #[serde(rename = "_etag", default, skip_serializing)]
    etag: Option<String>,
}

impl LeaseDoc {
    fn of(lease: &Lease) -> LeaseDoc {
        LeaseDoc {
            id: lease_id(&lease.consumer, &lease.range),
            consumer: lease.consumer.clone(),
            range: lease.range.clone(),
            continuation: lease.continuation.clone(),
            owner: lease.owner.clone(),
            expires_at: lease.expires_at,
            requested_by: lease.requested_by.clone(),
            updated_at: Utc::now(),
            ttl: None,
            etag: None,
        }
    }

    fn versioned(self, etag: Option<&Etag>) -> Result<Versioned<Lease>, StoreError> {
        let version = etag
            .map(|e| e.to_string())
            .or(self.etag)
            .ok_or_else(|| StoreError::Corrupt(format!("lease {} came without an ETag", self.id)))?;
        let LeaseDoc { consumer, range, continuation, owner, expires_at, requested_by, .. } = self;
        Ok(Versioned { value: Lease { consumer, range, continuation, owner, expires_at, requested_by }, version })
    }
}

fn lease_id(consumer: &str, range: &str) -> String {
    format!("{consumer}|{range}")
}

#[async_trait]
impl LeaseStore for CosmosStore {
    async fn leases(&self, consumer: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.consumer = @consumer")
            .with_parameter("@consumer", consumer)
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        let docs: Vec<LeaseDoc> =
            self.query_all("query-leases", &self.inner.leases, query, FeedScope::full_container()).await?;
        let mut leases = docs.into_iter().map(|doc| doc.versioned(None)).collect::<Result<Vec<_>, _>>()?;
        leases.sort_by(|a, b| a.value.range.cmp(&b.value.range));
        Ok(leases)
    }

    async fn lease(&self, consumer: &str, range: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        let id = lease_id(consumer, range);
        match self.inner.leases.read_item(id.clone(), id.as_str(), None).await {
            Ok(response) => {
                self.inner.units.record_response("read-lease", response.headers());
                let etag = response.headers().etag().cloned();
                let doc: LeaseDoc =
                    response.into_model().map_err(|e| StoreError::Corrupt(format!("lease {id}: {e}")))?;
                doc.versioned(etag.as_ref()).map(Some)
            }
            Err(error) if status(&error) == 404 => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn put(&self, lease: &Lease, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let doc = LeaseDoc::of(lease);
        let leases = &self.inner.leases;
        let id = doc.id.clone();
        let written = match version {
            Some(version) => {
                let condition = Precondition::IfMatch(Etag::from(version.to_string()));
                let options = ItemWriteOptions::default().with_precondition(condition);
                leases.replace_item(id.clone(), id.as_str(), &doc, Some(options)).await
            }
            None => leases.create_item(id.clone(), id.as_str(), &doc, None).await,
        };
        match written {
            Ok(response) => {
                self.inner.units.record_response("write-lease", response.headers());
                let etag = response.headers().etag().map(|e| e.to_string());
                etag.map(Some).ok_or_else(|| StoreError::Corrupt(format!("lease {id} written without an ETag")))
            }
            // Another process wrote (or created, or deleted) it first.
            Err(error) if matches!(status(&error), 404 | 409 | 412) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn delete(&self, consumer: &str, range: &str, version: Option<&str>) -> Result<bool, StoreError> {
        let id = lease_id(consumer, range);
        let options = version.map(|version| {
            ItemWriteOptions::default().with_precondition(Precondition::IfMatch(Etag::from(version.to_string())))
        });
        match self.inner.leases.delete_item(id.clone(), id.as_str(), options).await {
            Ok(response) => {
                self.inner.units.record_response("write-lease", response.headers());
                Ok(true)
            }
            Err(error) if matches!(status(&error), 404 | 412) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        let heartbeat = Lease::heartbeat(instance);
        let doc = LeaseDoc { ttl: Some(HEARTBEAT_RETENTION.as_secs()), ..LeaseDoc::of(&heartbeat) };
        let id = doc.id.clone();
        let response = self.inner.leases.upsert_item(id.clone(), id.as_str(), &doc, None).await.map_err(unavailable)?;
        self.inner.units.record_response("write-lease", response.headers());
        Ok(())
    }
}
