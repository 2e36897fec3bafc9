//! `orderflow init`: the database and its containers, with allow-list
//! indexing (exclude everything, include the few paths queries use) and TTL
//! where documents expire. Idempotent: what exists is kept, and brought up
//! to what this version needs (a path to index, TTL turned on).

use azure_data_cosmos::models::{ContainerProperties, IndexingMode, IndexingPolicy, PropertyPath, TimeToLive};
use azure_data_cosmos::CosmosClient;
use orderflow_pipeline::StoreError;

use crate::{status, unavailable, ARCHIVE, EVENTS, IDEMPOTENCY, LEASES, PARKED, REFUSALS, SNAPSHOTS, TIMERS};

/// Indexing policy that indexes only `paths`.
fn allow_list(paths: &[&str]) -> IndexingPolicy {
    let policy = IndexingPolicy::default().with_indexing_mode(IndexingMode::Consistent).with_excluded_path("/*");
    let mut policy = paths.iter().fold(policy, |policy, path| policy.with_included_path(*path));
    policy.automatic = true;
    policy
}

/// One container: its name, partition key, indexed paths, and whether its
/// documents may carry a `ttl` (TTL on, no default expiry).
pub struct Container {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub indexed: &'static [&'static str],
    pub expiring: bool,
}

pub const CONTAINERS: [Container; 8] = [
    // Reading a stream's history queries by index within its partition;
    // idempotency records expire.
    Container { name: EVENTS, partition_key: "/streamId", indexed: &["/index/?"], expiring: true },
    // A customer's orders are listed by customer, newest first; orders to
    // archive are found by age, status and how far they are archived.
    Container {
        name: SNAPSHOTS,
        partition_key: "/id",
        indexed: &["/customerId/?", "/updatedAt/?", "/state/status/?", "/version/?", "/archivedThrough/?"],
        expiring: false,
    },
    // A consumer's leases are listed by consumer; heartbeats expire.
    Container { name: LEASES, partition_key: "/id", indexed: &["/consumer/?"], expiring: true },
    // Key claims are only point-read, and expire.
    Container { name: IDEMPOTENCY, partition_key: "/id", indexed: &[], expiring: true },
    // Refusals are few: listed whole.
    Container { name: REFUSALS, partition_key: "/id", indexed: &[], expiring: false },
    // A consumer's parked streams are listed by consumer.
    Container { name: PARKED, partition_key: "/id", indexed: &["/consumer/?"], expiring: false },
    // Timers are queried by due time.
    Container { name: TIMERS, partition_key: "/id", indexed: &["/dueAt/?"], expiring: false },
    // Archived pieces are read a whole stream's partition at a time.
    Container { name: ARCHIVE, partition_key: "/streamId", indexed: &[], expiring: false },
];

/// Creates what is missing. With an Entra ID identity (whose data-plane
/// roles cannot create databases or containers: the Bicep template does)
/// it checks that they are there instead.
pub async fn init(client: &CosmosClient, database: &str) -> Result<(), StoreError> {
    match client.create_database(database, None).await {
        Ok(_) => {}
        Err(error) if matches!(status(&error), 409 | 403) => {}
        Err(error) => return Err(unavailable(error)),
    }
    let db = client.database_client(database);
    for container in &CONTAINERS {
        let mut properties = ContainerProperties::new(container.name, container.partition_key.into())
            .with_indexing_policy(allow_list(container.indexed));
        if container.expiring {
            properties = properties.with_default_ttl(TimeToLive::NoDefault);
        }
        match db.create_container(properties, None).await {
            Ok(_) => {}
            Err(error) if status(&error) == 409 => upgrade(&db, container).await?,
            Err(error) if status(&error) == 403 => {
                let exists = db.container_client(container.name, None).await;
                if let Err(error) = exists {
                    let name = container.name;
                    return Err(StoreError::Unavailable(format!(
                        "container {database}/{name} is missing, and this identity may not create it \
                         (deploy infra/main.bicep, or run init with the account key): {error}"
                    )));
                }
            }
            Err(error) => return Err(unavailable(error)),
        }
    }
    Ok(())
}

/// Brings a container an earlier version created up to this one: the paths
/// it must index, TTL where documents expire. What it has besides is kept.
async fn upgrade(db: &azure_data_cosmos::clients::DatabaseClient, container: &Container) -> Result<(), StoreError> {
    let client = db.container_client(container.name, None).await.map_err(unavailable)?;
    let mut properties: ContainerProperties =
        client.read(None).await.map_err(unavailable)?.into_model().map_err(unavailable)?;
    let mut changed = false;
    if container.expiring && properties.default_ttl.is_forever() {
        properties.default_ttl = TimeToLive::NoDefault;
        changed = true;
    }
    let policy = properties.indexing_policy.get_or_insert_with(|| allow_list(&[]));
    for path in container.indexed {
        if !policy.included_paths.iter().any(|included| included.path == *path) {
            policy.included_paths.push(PropertyPath::from(*path));
            changed = true;
        }
    }
    if changed {
        tracing::info!(container = container.name, "bringing the container up to this version (indexing, TTL)");
        match client.replace(properties, None).await {
            Ok(_) => {}
            Err(error) if status(&error) == 403 => tracing::warn!(
                container = container.name,
                "this identity may not change the container; deploy infra/main.bicep to bring it up to date"
            ),
            Err(error) => return Err(unavailable(error)),
        }
    }
    Ok(())
}
