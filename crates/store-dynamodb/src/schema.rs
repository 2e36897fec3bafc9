//! `orderflow init` on DynamoDB: the tables, created when missing (on-demand
//! billing; the events table's stream on, with new images, for the change
//! feed; the TTL on `x` of the keys and leases tables; the indexes by time of
//! refusals, snapshots and timers). Safe to run again, and by several
//! processes at once.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use orderflow_pipeline::StoreError;

use crate::{unavailable, Tables};

/// Creates the tables of `prefix` that do not exist yet and waits until all
/// are active; returns the ones it created.
pub async fn init(client: &Client, prefix: &str) -> Result<Vec<String>, StoreError> {
    use ScalarAttributeType::{N, S};
    let tables = Tables::new(prefix);
    let specs = [
        Spec { name: &tables.events, partition: "p", sort: Some(("i", N)), indexes: &[], stream: true },
        Spec { name: &tables.keys, partition: "k", sort: None, indexes: &[], stream: false },
        Spec { name: &tables.leases, partition: "c", sort: Some(("r", S)), indexes: &[], stream: false },
        Spec {
            name: &tables.refusals,
            partition: "id",
            sort: None,
            indexes: &[(crate::refusals::BY_TIME, "g", "t")],
            stream: false,
        },
        Spec {
            name: &tables.snapshots,
            partition: "p",
            sort: None,
            indexes: &[(crate::snapshots::BY_CUSTOMER, "cu", "u"), (crate::snapshots::RECENT, "g", "u")],
            stream: false,
        },
        Spec {
            name: &tables.timers,
            partition: "p",
            sort: Some(("name", S)),
            indexes: &[(crate::timers::BY_DUE, "g", "d")],
            stream: false,
        },
        Spec { name: &tables.parked, partition: "c", sort: Some(("s", S)), indexes: &[], stream: false },
        Spec { name: &tables.archive, partition: "p", sort: Some(("f", N)), indexes: &[], stream: false },
    ];
    let mut created = Vec::new();
    for spec in &specs {
        if create(spec.request(client)?.send().await)? {
            created.push(spec.name.clone());
        }
    }
    for table in tables.all() {
        active(client, table).await?;
    }
    // Expired idempotency records and claims, and heartbeats of instances
    // long gone, are deleted by DynamoDB.
    for table in [&tables.keys, &tables.leases] {
        let ttl =
            TimeToLiveSpecification::builder().enabled(true).attribute_name("x").build().map_err(crate::invalid)?;
        let enabled = client.update_time_to_live().table_name(table).time_to_live_specification(ttl).send().await;
        if let Err(error) = enabled {
            // Enabling it again is refused: it is on.
            let error = error.into_service_error();
            if !error.message().is_some_and(|m| m.contains("already enabled")) {
                return Err(unavailable(error));
            }
        }
    }
    Ok(created)
}

/// One table: its keys (the partition key is text), its global indexes
/// (name, partition, sort; all text, every attribute projected), and
/// whether it has a stream of new images.
struct Spec<'a> {
    name: &'a String,
    partition: &'static str,
    sort: Option<(&'static str, ScalarAttributeType)>,
    indexes: &'static [(&'static str, &'static str, &'static str)],
    stream: bool,
}

impl Spec<'_> {
    fn request(&self, client: &Client) -> Result<CreateTableFluentBuilder, StoreError> {
        let mut attributes = vec![(self.partition, ScalarAttributeType::S)];
        attributes.extend(self.sort.clone());
        for (_, partition, sort) in self.indexes {
            attributes.extend([(*partition, ScalarAttributeType::S), (*sort, ScalarAttributeType::S)]);
        }
        attributes.sort_by_key(|(name, _)| *name);
        attributes.dedup_by_key(|(name, _)| *name);
        let mut request = client.create_table().table_name(self.name.as_str()).billing_mode(BillingMode::PayPerRequest);
        for (name, kind) in attributes {
            request = request.attribute_definitions(attribute(name, kind)?);
        }
        request = request.key_schema(key(self.partition, KeyType::Hash)?);
        if let Some((sort, _)) = &self.sort {
            request = request.key_schema(key(sort, KeyType::Range)?);
        }
        for (name, partition, sort) in self.indexes {
            request = request.global_secondary_indexes(index(name, partition, sort)?);
        }
        if self.stream {
            let stream = StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(crate::invalid)?;
            request = request.stream_specification(stream);
        }
        Ok(request)
    }
}

/// Whether the table was created (`false`: it exists).
fn create<T, E, R>(sent: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>) -> Result<bool, StoreError>
where
    aws_sdk_dynamodb::error::SdkError<E, R>: ProvideErrorMetadata + std::fmt::Display,
{
    crate::done_unless(sent, "ResourceInUseException")
}

async fn active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let described = client.describe_table().table_name(table).send().await.map_err(unavailable)?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::Unavailable(format!("{table} did not become active within a minute")))
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().map_err(crate::invalid)
}

/// A global index of every attribute, by `partition` and `sort`.
fn index(name: &str, partition: &str, sort: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(partition, KeyType::Hash)?)
        .key_schema(key(sort, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(crate::invalid)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(crate::invalid)
}
