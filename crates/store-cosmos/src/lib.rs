//! The production store: Azure Cosmos DB for NoSQL through the official
//! `azure_data_cosmos` SDK, behind the same ports as the embedded store
//! (DESIGN §3).
//!
//! | container | partition key | holds |
//! |---|---|---|
//! | `events` | `/streamId` | one document per event (`id` = its index, zero-padded), one `tip` per stream, and the idempotency record of each keyed command (TTL) |
//! | `snapshots` | `/id` | the read model of each stream, with its version |
//! | `leases` | `/id` | per consumer and feed range: the position, its owner and lease expiry |
//! | `idempotency` | `/id` | which request each outside key (HTTP, CloudEvent) was first used for (TTL) |
//! | `refusals` | `/id` | reactions their target refused, for operators |
//! | `parked` | `/id` | streams a consumer could not handle, and how far their events wait |
//! | `timers` | `/id` | deadlines of streams by due time, until handled |
//! | `archive` | `/streamId` | the events of orders closed long ago, deflated, a piece per document |
//!
//! A command costs one transactional batch in the stream's partition: create
//! its idempotency record (if keyed) and the event documents, and replace the
//! tip with `If-Match` on its ETag (or create it, for a new stream). Loading
//! state is one point read of the tip, answered 304 when the cached ETag
//! still matches.

mod archive;
mod connect;
#[cfg(feature = "emulator")]
pub mod emulator;
mod events;
mod feed;
mod leases;
mod parking;
mod read_models;
mod refusals;
mod request_units;
mod schema;
mod timers;

use std::sync::Arc;
use std::time::Duration;

use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::{CosmosClient, CosmosError};
use orderflow_pipeline::ports::DEFAULT_KEY_RETENTION;
use orderflow_pipeline::StoreError;

pub use connect::{client, ConnectionString, CosmosAccount, Identity};
pub use events::{event_of_document, events_of_documents};
pub use request_units::Charge;
pub use schema::{init, Container, CONTAINERS};

/// The containers orderflow uses, in one database.
pub const EVENTS: &str = "events";
pub const SNAPSHOTS: &str = "snapshots";
pub const LEASES: &str = "leases";
pub const IDEMPOTENCY: &str = "idempotency";
pub const REFUSALS: &str = "refusals";
pub const PARKED: &str = "parked";
pub const TIMERS: &str = "timers";
pub const ARCHIVE: &str = "archive";

#[derive(Clone)]
pub struct CosmosStore {
    inner: Arc<Inner>,
}

struct Inner {
    events: ContainerClient,
    snapshots: ContainerClient,
    leases: ContainerClient,
    idempotency: ContainerClient,
    refusals: ContainerClient,
    parked: ContainerClient,
    timers: ContainerClient,
    archive: ContainerClient,
    tips: events::TipCache,
    units: request_units::RequestUnits,
    /// How long idempotency records and key claims count (also their TTL).
    key_retention: Duration,
}

impl CosmosStore {
    /// Connects to the containers of `database` (created by [`init`]),
    /// keeping idempotency records for the default retention.
    pub async fn connect(client: &CosmosClient, database: &str) -> Result<CosmosStore, StoreError> {
        CosmosStore::connect_with(client, database, DEFAULT_KEY_RETENTION).await
    }

    /// Connects, keeping idempotency records and key claims for
    /// `key_retention` (their Cosmos DB TTL; older ones are also ignored
    /// before the service deletes them).
    pub async fn connect_with(
        client: &CosmosClient,
        database: &str,
        key_retention: Duration,
    ) -> Result<CosmosStore, StoreError> {
        let db = client.database_client(database);
        let container = |name: &'static str| {
            let opened = db.container_client(name, None);
            async move { opened.await.map_err(|e| StoreError::Unavailable(format!("container {database}/{name}: {e}"))) }
        };
        Ok(CosmosStore {
            inner: Arc::new(Inner {
                events: container(EVENTS).await?,
                snapshots: container(SNAPSHOTS).await?,
                leases: container(LEASES).await?,
                idempotency: container(IDEMPOTENCY).await?,
                refusals: container(REFUSALS).await?,
                parked: container(PARKED).await?,
                timers: container(TIMERS).await?,
                archive: container(ARCHIVE).await?,
                tips: events::TipCache::new(10_000),
                units: request_units::RequestUnits::default(),
                key_retention,
            }),
        })
    }

    /// Every item a query finds, page by page, each page's RU counted as
    /// `operation`.
    async fn query_all<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        operation: &'static str,
        container: &ContainerClient,
        query: azure_data_cosmos::Query,
        scope: azure_data_cosmos::FeedScope,
    ) -> Result<Vec<T>, StoreError> {
        use futures::StreamExt;
        let mut pages = container.query_items::<T>(query, scope, None).await.map_err(unavailable)?.into_pages();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            self.inner.units.record_response(operation, page.headers());
            items.extend(page.into_items());
        }
        Ok(items)
    }

    /// RU charged so far, per kind of operation.
    pub fn request_units(&self) -> std::collections::BTreeMap<&'static str, Charge> {
        self.inner.units.totals()
    }
}

/// A page of at most `max` items (1 to 1,000, the service's own bound).
fn page_size(max: usize) -> azure_data_cosmos::options::MaxItemCountHint {
    use azure_data_cosmos::options::MaxItemCountHint;
    std::num::NonZeroU32::new(max.clamp(1, 1000) as u32)
        .map_or(MaxItemCountHint::ServerDecides, MaxItemCountHint::Limit)
}

fn unavailable(error: CosmosError) -> StoreError {
    StoreError::Unavailable(format!("cosmos: {error}"))
}

fn status(error: &CosmosError) -> u16 {
    u16::from(error.status().status_code())
}
