//! `orderflow init` on DynamoDB: the tables, created when missing (on-demand
//! billing; the events table's stream on, with new images, for the change
//! feed; the TTL on `x` of the keys and leases tables; the refusals' index by
//! time). Safe to run again, and by several processes at once.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
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
    let tables = Tables::new(prefix);
    let mut created = Vec::new();
    let events = client
        .create_table()
        .table_name(&tables.events)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("p", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("i", ScalarAttributeType::N)?)
        .key_schema(key("p", KeyType::Hash)?)
        .key_schema(key("i", KeyType::Range)?)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(crate::invalid)?,
        );
    if create(events.send().await)? {
        created.push(tables.events.clone());
    }
    let keys = client
        .create_table()
        .table_name(&tables.keys)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("k", ScalarAttributeType::S)?)
        .key_schema(key("k", KeyType::Hash)?);
    if create(keys.send().await)? {
        created.push(tables.keys.clone());
    }
    let leases = client
        .create_table()
        .table_name(&tables.leases)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("c", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("r", ScalarAttributeType::S)?)
        .key_schema(key("c", KeyType::Hash)?)
        .key_schema(key("r", KeyType::Range)?);
    if create(leases.send().await)? {
        created.push(tables.leases.clone());
    }
    let by_time = GlobalSecondaryIndex::builder()
        .index_name(crate::refusals::BY_TIME)
        .key_schema(key("g", KeyType::Hash)?)
        .key_schema(key("t", KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(crate::invalid)?;
    let refusals = client
        .create_table()
        .table_name(&tables.refusals)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("id", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("g", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("t", ScalarAttributeType::S)?)
        .key_schema(key("id", KeyType::Hash)?)
        .global_secondary_indexes(by_time);
    if create(refusals.send().await)? {
        created.push(tables.refusals.clone());
    }
    for table in [&tables.events, &tables.keys] {
        active(client, table).await?;
    }
    let ttl = TimeToLiveSpecification::builder().enabled(true).attribute_name("x").build().map_err(crate::invalid)?;
    if let Err(error) =
        client.update_time_to_live().table_name(&tables.keys).time_to_live_specification(ttl).send().await
    {
        // Enabling it again is refused: it is on.
        let error = error.into_service_error();
        if !error.message().is_some_and(|m| m.contains("already enabled")) {
            return Err(unavailable(error));
        }
    }
    Ok(created)
}

/// Whether the table was created (`false`: it exists).
fn create<O, E: ProvideErrorMetadata + std::fmt::Display, R>(
    sent: Result<O, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    aws_sdk_dynamodb::error::SdkError<E, R>: ProvideErrorMetadata + std::fmt::Display,
{
    match sent {
        Ok(_) => Ok(true),
        Err(error) if error.code() == Some("ResourceInUseException") => Ok(false),
        Err(error) => Err(unavailable(error)),
    }
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

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(crate::invalid)
}
