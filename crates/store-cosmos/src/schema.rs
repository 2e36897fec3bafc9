//! `orderflow init`: the database and its three containers, with allow-list
//! indexing (exclude everything, include the few paths queries use).
//! Idempotent: what exists is left as it is.

use azure_data_cosmos::models::{ContainerProperties, IndexingMode, IndexingPolicy};
use azure_data_cosmos::CosmosClient;
use orderflow_pipeline::StoreError;

use crate::{status, unavailable, EVENTS, LEASES, SNAPSHOTS};

/// Indexing policy that indexes only `paths`.
fn allow_list(paths: &[&str]) -> IndexingPolicy {
    let policy = IndexingPolicy::default().with_indexing_mode(IndexingMode::Consistent).with_excluded_path("/*");
    let mut policy = paths.iter().fold(policy, |policy, path| policy.with_included_path(*path));
    policy.automatic = true;
    policy
}

/// The containers: (name, partition key, indexed paths).
pub const CONTAINERS: [(&str, &str, &[&str]); 3] = [
    // Reading a stream's history queries by index within its partition.
    (EVENTS, "/streamId", &["/index/?"]),
    // A customer's orders are listed by customer, newest first.
    (SNAPSHOTS, "/id", &["/customerId/?", "/updatedAt/?"]),
    // Checkpoints are only ever point-read.
    (LEASES, "/id", &[]),
];

pub async fn init(client: &CosmosClient, database: &str) -> Result<(), StoreError> {
    match client.create_database(database, None).await {
        Ok(_) => {}
        Err(error) if status(&error) == 409 => {}
        Err(error) => return Err(unavailable(error)),
    }
    let db = client.database_client(database);
    for (name, partition_key, paths) in CONTAINERS {
        let properties = ContainerProperties::new(name, partition_key.into()).with_indexing_policy(allow_list(paths));
        match db.create_container(properties, None).await {
            Ok(_) => {}
            Err(error) if status(&error) == 409 => {}
            Err(error) => return Err(unavailable(error)),
        }
    }
    Ok(())
}
