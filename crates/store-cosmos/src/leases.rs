//! Change-feed leases on `leases`: one document per consumer and feed range,
//! holding the checkpoint, the process that owns the range and when that
//! ownership expires. Every write is conditional on the ETag last seen, so
//! when two processes race for a range exactly one of them gets it; the
//! other learns it on its next write (412) and leaves the range alone.
//!
//! Expiry is compared with the local clock, as Cosmos DB's own change-feed
//! processor does: clocks of the sharing processes should agree to well
//! within the lease TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use chrono::{DateTime, Utc};
use orderflow_pipeline::ports::Checkpoints;
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
    updated_at: DateTime<Utc>,
}

impl LeaseDoc {
    fn new(consumer: &str, range: &str) -> LeaseDoc {
        LeaseDoc {
            id: lease_id(consumer, range),
            consumer: consumer.into(),
            range: range.into(),
            continuation: None,
            owner: None,
            expires_at: DateTime::UNIX_EPOCH,
            updated_at: Utc::now(),
        }
    }

    fn held_by_other_than(&self, owner: &str, now: DateTime<Utc>) -> Option<&str> {
        self.owner.as_deref().filter(|holder| *holder != owner && self.expires_at > now)
    }
}

/// A lease document as this process last saw it.
#[derive(Clone)]
struct Seen {
    doc: LeaseDoc,
    /// `None` while the document does not exist.
    etag: Option<Etag>,
}

/// The leases this process holds, by document id: their checkpoint is read
/// from here, and their ETag makes the next write conditional.
#[derive(Default)]
pub struct HeldLeases(Mutex<HashMap<String, Seen>>);

impl HeldLeases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lease_id(consumer: &str, range: &str) -> String {
    format!("{consumer}|{range}")
}

impl CosmosStore {
    async fn read_lease(&self, consumer: &str, range: &str) -> Result<Seen, StoreError> {
        let id = lease_id(consumer, range);
        match self.inner.leases.read_item(id.clone(), id.as_str(), None).await {
            Ok(response) => {
                self.inner.units.record_response("read-lease", response.headers());
                let etag = response.headers().etag().cloned();
                let doc = response.into_model().map_err(|e| StoreError::Corrupt(format!("lease {id}: {e}")))?;
                Ok(Seen { doc, etag })
            }
            Err(error) if status(&error) == 404 => Ok(Seen { doc: LeaseDoc::new(consumer, range), etag: None }),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Writes `doc` if the lease is still as `seen` (or still missing).
    /// `None` when another process wrote it first.
    async fn write_lease(&self, seen: Seen, mut doc: LeaseDoc) -> Result<Option<Seen>, StoreError> {
        doc.updated_at = Utc::now();
        let leases = &self.inner.leases;
        let id = doc.id.clone();
        let written = match seen.etag {
            Some(etag) => {
                let only_if_unchanged = ItemWriteOptions::default().with_precondition(Precondition::IfMatch(etag));
                leases.replace_item(id.clone(), id.as_str(), &doc, Some(only_if_unchanged)).await
            }
            None => leases.create_item(id.clone(), id.as_str(), &doc, None).await,
        };
        match written {
            Ok(response) => {
                self.inner.units.record_response("write-lease", response.headers());
                let etag = response.headers().etag().cloned();
                Ok(Some(Seen { doc, etag }))
            }
            Err(error) if matches!(status(&error), 409 | 412) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Takes (or renews) the lease for `owner` until `until`.
    async fn take_lease(&self, seen: Seen, owner: &str, until: DateTime<Utc>) -> Result<Option<Seen>, StoreError> {
        let doc = LeaseDoc { owner: Some(owner.into()), expires_at: until, ..seen.doc.clone() };
        self.write_lease(seen, doc).await
    }
}

#[async_trait]
impl Checkpoints for CosmosStore {
    async fn load(&self, consumer: &str, range: &str) -> Result<Option<String>, StoreError> {
        if let Some(held) = self.inner.held_leases.lock().get(&lease_id(consumer, range)) {
            return Ok(held.doc.continuation.clone());
        }
        Ok(self.read_lease(consumer, range).await?.doc.continuation)
    }

    async fn save(&self, consumer: &str, range: &str, owner: &str, continuation: &str) -> Result<(), StoreError> {
        let id = lease_id(consumer, range);
        let cached = self.inner.held_leases.lock().get(&id).cloned();
        let seen = match cached {
            Some(seen) => seen,
            None => self.read_lease(consumer, range).await?,
        };
        if let Some(holder) = seen.doc.held_by_other_than(owner, Utc::now()) {
            return Err(StoreError::LeaseLost(format!("{id} is held by {holder}")));
        }
        let doc = LeaseDoc { continuation: Some(continuation.into()), owner: Some(owner.into()), ..seen.doc.clone() };
        match self.write_lease(seen, doc).await? {
            Some(saved) => {
                self.inner.held_leases.lock().insert(id, saved);
                Ok(())
            }
            None => {
                self.inner.held_leases.lock().remove(&id);
                Err(StoreError::LeaseLost(format!("{id} was taken over")))
            }
        }
    }

    async fn forget(&self, consumer: &str, range: &str) -> Result<(), StoreError> {
        let id = lease_id(consumer, range);
        self.inner.held_leases.lock().remove(&id);
        match self.inner.leases.delete_item(id.clone(), id.as_str(), None).await {
            Ok(response) => {
                self.inner.units.record_response("write-lease", response.headers());
                Ok(())
            }
            Err(error) if status(&error) == 404 => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn acquire(
        &self,
        consumer: &str,
        owner: &str,
        ranges: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let now = Utc::now();
        let until = now + ttl;
        let mut leases = Vec::with_capacity(ranges.len());
        for range in ranges {
            leases.push(self.read_lease(consumer, range).await?);
        }
        // Live leases per other owner: this process's fair share is its part
        // of the ranges among every live owner, itself included.
        let mut others: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, seen) in leases.iter().enumerate() {
            if let Some(holder) = seen.doc.held_by_other_than(owner, now) {
                others.entry(holder.to_string()).or_default().push(i);
            }
        }
        let fair_share = ranges.len().div_ceil(others.len() + 1);

        let mut held: Vec<Seen> = Vec::new();
        let mut free = Vec::new();
        for seen in leases.iter() {
            if seen.doc.owner.as_deref() == Some(owner) {
                held.extend(self.take_lease(seen.clone(), owner, until).await?);
            } else if seen.doc.held_by_other_than(owner, now).is_none() {
                free.push(seen.clone());
            }
        }
        for seen in free {
            if held.len() >= fair_share {
                break;
            }
            held.extend(self.take_lease(seen, owner, until).await?);
        }
        // Uneven shares (a process joined): take one range a round from the
        // busiest owner; it notices on its next write and lets go.
        let busiest = others.values().max_by_key(|indexes| indexes.len());
        if let Some(&victim) =
            busiest.filter(|indexes| held.len() < fair_share && indexes.len() > held.len() + 1).and_then(|i| i.first())
        {
            held.extend(self.take_lease(leases[victim].clone(), owner, until).await?);
        }

        let mut cache = self.inner.held_leases.lock();
        cache.retain(|_, seen| seen.doc.consumer != consumer || seen.doc.owner.as_deref() != Some(owner));
        let mut names = Vec::with_capacity(held.len());
        for seen in held {
            names.push(seen.doc.range.clone());
            cache.insert(seen.doc.id.clone(), seen);
        }
        names.sort_by_key(|range| ranges.iter().position(|r| r == range));
        Ok(names)
    }
}
