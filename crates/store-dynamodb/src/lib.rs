//! orderflow's AWS store: Amazon DynamoDB through the official AWS SDK,
//! behind every one of the pipeline's ports; the change feed is the events
//! table's DynamoDB Stream ([`feed`]).
//!
//! Tables, each named `{prefix}{name}` (the prefix is the setting
//! `DynamoDBTablePrefix`):
//!
//! - `events`: partition key `p` (the stream id), sort key `i` (the event's
//!   index; the stream's **tip** is the item at `i = -1`, with its version
//!   `n` and state `s`). An event item holds the whole record as JSON (`e`).
//!   An append is one `TransactWriteItems`: the tip, conditioned on the
//!   version the events were decided on, each event, and the idempotency
//!   record — all or nothing; a lost race re-decides.
//! - `keys`: partition key `k`: idempotency records of a stream
//!   (`{streamId}␟{key}`) and claims of keys that may name any stream
//!   (`claim␟{key}`), each with its expiry `x` (epoch seconds, the table's
//!   TTL attribute; reads ignore expired items before DynamoDB deletes them).
//! - `leases` ([`leases`]), `refusals` ([`refusals`]), `snapshots`
//!   ([`snapshots`]), `timers` ([`timers`]), `parked` ([`parking`]) and
//!   `archive` ([`archive`]).
//!
//! Limits handled by design: an item is at most 400 KB (events, states and
//! receipts are bounded by the domain's limits); a transaction holds at most
//! 100 items, so an append of more items than that (its events, its keys and
//! the tip: [`MAX_APPEND_ITEMS`]) is refused for good rather than split.

mod archive;
mod capacity;
mod feed;
mod leases;
mod lineage;
mod parking;
mod refusals;
mod schema;
mod snapshots;
mod timers;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use orderflow_pipeline::ports::{
    Append, AppendOutcome, EventRecord, EventStore, IdempotencyRecord, KeyClaim, Loaded, StreamIds, Tip,
    MAX_APPEND_ITEMS,
};
use orderflow_pipeline::StoreError;

pub use capacity::{CapacityUnits, Charge};
pub use feed::event_of_image;
pub use schema::init;

/// The sort key of a stream's tip.
const TIP: i64 = -1;
/// Between a stream id or `claim` and a key (a character neither contains).
const SEPARATOR: char = '\u{1f}';

/// The table names under one prefix.
#[derive(Debug, Clone)]
pub struct Tables {
    pub events: String,
    pub keys: String,
    pub leases: String,
    pub refusals: String,
    pub snapshots: String,
    pub timers: String,
    pub parked: String,
    pub archive: String,
}

impl Tables {
    pub fn new(prefix: &str) -> Tables {
        let table = |name: &str| format!("{prefix}{name}");
        Tables {
            events: table("events"),
            keys: table("keys"),
            leases: table("leases"),
            refusals: table("refusals"),
            snapshots: table("snapshots"),
            timers: table("timers"),
            parked: table("parked"),
            archive: table("archive"),
        }
    }

    pub fn all(&self) -> [&String; 8] {
        [
            &self.events,
            &self.keys,
            &self.leases,
            &self.refusals,
            &self.snapshots,
            &self.timers,
            &self.parked,
            &self.archive,
        ]
    }
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    streams: aws_sdk_dynamodbstreams::Client,
    tables: Tables,
    key_retention: Duration,
    endpoint: String,
    inner: Arc<Shared>,
}

/// What the store's clones learn and keep together.
#[derive(Default)]
struct Shared {
    stream_arn: OnceLock<String>,
    iterators: feed::Iterators,
    units: Arc<CapacityUnits>,
}

/// Whether `prefix` makes valid table names: DynamoDB allows letters,
/// digits, `_`, `-` and `.`, 3 to 255 of them.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if let Some(bad) = prefix.chars().find(|c| !allowed(*c)) {
        return Err(format!("{bad:?} cannot be in a DynamoDB table name (letters, digits, _ - . only)"));
    }
    let longest = Tables::new(prefix).all().iter().map(|name| name.len()).max().unwrap_or(0);
    if longest > 255 {
        return Err(format!("too long: {longest} characters in a table name, DynamoDB takes 255"));
    }
    Ok(())
}

/// The AWS SDK's standard chain: region, credentials and endpoint from the
/// environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, …), profiles and roles.
pub async fn standard_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

impl DynamoStore {
    /// The store over the tables of `prefix`, configured by the standard
    /// chain; fails when its events table is not there (`orderflow init`).
    pub async fn connect(prefix: &str, key_retention: Duration) -> Result<DynamoStore, StoreError> {
        let store = DynamoStore::new(&standard_config().await, prefix, key_retention);
        store.stream_arn().await?;
        Ok(store)
    }

    /// A store over the tables of `prefix`, with clients configured by
    /// `config` (the AWS SDK's standard chain, or the caller's, for tests).
    pub fn new(config: &aws_config::SdkConfig, prefix: &str, key_retention: Duration) -> DynamoStore {
        let inner = Arc::new(Shared::default());
        let metered = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(capacity::Metering { units: inner.units.clone(), prefix: prefix.to_string() });
        DynamoStore {
            client: Client::from_conf(metered.build()),
            streams: aws_sdk_dynamodbstreams::Client::new(config),
            tables: Tables::new(prefix),
            key_retention,
            endpoint: match (config.endpoint_url(), config.region()) {
                (Some(url), _) => url.to_string(),
                (None, Some(region)) => format!("AWS {region}"),
                (None, None) => "AWS (no region set: AWS_REGION)".to_string(),
            },
            inner,
        }
    }

    /// Requests and capacity units so far, by operation.
    pub fn capacity_units(&self) -> std::collections::BTreeMap<String, Charge> {
        self.inner.units.totals()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where the tables are, for people: the endpoint, or the AWS region.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    fn expiry(&self) -> i64 {
        now_seconds() + i64::try_from(self.key_retention.as_secs()).unwrap_or(i64::MAX / 2)
    }

    async fn tip(&self, stream_id: &str) -> Result<Option<Tip>, StoreError> {
        let item = self.get(&self.tables.events, [("p", s(stream_id)), ("i", n(TIP))]).await?;
        item.map(|item| Ok(Tip { version: number(&item, "n")?, state: json_of(&item, "s", stream_id)? })).transpose()
    }

    /// The unexpired item of `key` in the keys table, as `T`.
    async fn key_item<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(&self.tables.keys, [("k", s(key))]).await? {
            Some(item) if number::<i64>(&item, "x")? > now_seconds() => Ok(Some(json_of(&item, "r", key)?)),
            _ => Ok(None),
        }
    }

    /// Why a transaction was cancelled, as the append's outcome.
    async fn cancelled(
        &self,
        append: &Append,
        reasons: Vec<Option<String>>,
        keys: &[String],
    ) -> Result<AppendOutcome, StoreError> {
        // A retry of a command that was appended: its key went in with it
        // (and the tip moved too), so the keys are asked about first. They
        // are the transaction's last items.
        let key_reasons = reasons.iter().skip(reasons.len().saturating_sub(keys.len()));
        for (key, reason) in keys.iter().zip(key_reasons) {
            if reason.as_deref() == Some("ConditionalCheckFailed") {
                if let Some(prior) = self.key_item::<IdempotencyRecord>(key).await? {
                    return Ok(AppendOutcome::Duplicate(prior));
                }
            }
        }
        // The tip moved (or another transaction held it): decide again.
        let actual = self.tip(&append.stream_id).await?.map_or(0, |tip| tip.version);
        Ok(AppendOutcome::WrongVersion { actual })
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError> {
        let prior = async {
            match idempotency_key {
                Some(key) => self.key_item::<IdempotencyRecord>(&stream_key(stream_id, key)).await,
                None => Ok(None),
            }
        };
        let (tip, prior) = tokio::try_join!(self.tip(stream_id), prior)?;
        Ok(Loaded { tip, prior })
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        if append.items() > MAX_APPEND_ITEMS {
            return Err(StoreError::Refused(format!(
                "{} events and {} keys in one append: a transaction takes at most {MAX_APPEND_ITEMS} items",
                append.events.len(),
                append.idempotency.len()
            )));
        }
        let version = append.expected_version + append.events.len() as u64;
        let tip = Put::builder()
            .table_name(&self.tables.events)
            .item("p", s(&append.stream_id))
            .item("i", n(TIP))
            .item("n", n(version))
            .item("s", s(&to_json(&append.state)?));
        let tip = if append.expected_version == 0 {
            tip.condition_expression("attribute_not_exists(p)")
        } else {
            tip.condition_expression("n = :expected")
                .expression_attribute_values(":expected", n(append.expected_version))
        };
        let mut items = vec![TransactWriteItem::builder().put(tip.build().map_err(invalid)?).build()];
        for event in &append.events {
            let put = Put::builder()
                .table_name(&self.tables.events)
                .item("p", s(&event.stream_id))
                .item("i", n(event.index))
                .item("e", s(&to_json(event)?))
                .condition_expression("attribute_not_exists(p)")
                .build()
                .map_err(invalid)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let keys: Vec<String> =
            append.idempotency.iter().map(|record| stream_key(&append.stream_id, &record.key)).collect();
        for (record, key) in append.idempotency.iter().zip(&keys) {
            let put = Put::builder()
                .table_name(&self.tables.keys)
                .item("k", s(key))
                .item("r", s(&to_json(record)?))
                .item("x", n(self.expiry()))
                .condition_expression("attribute_not_exists(k) OR x < :now")
                .expression_attribute_values(":now", n(now_seconds()))
                .build()
                .map_err(invalid)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let written = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match written {
            Ok(_) => Ok(AppendOutcome::Appended { version }),
            Err(error) => match error.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons =
                        cancelled.cancellation_reasons().iter().map(|r| r.code().map(str::to_string)).collect();
                    self.cancelled(&append, reasons, &keys).await
                }
                other => Err(unavailable(other)),
            },
        }
    }

    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        let until = from_index.saturating_add(max as u64);
        let events = self.read_hot(stream_id, from_index, until).await?;
        // Only a stream whose first event here is not the one asked for
        // may have been archived.
        if events.first().is_some_and(|first| first.index == from_index) {
            return Ok(events);
        }
        let archived = self.archived_events(stream_id).await?;
        Ok(orderflow_pipeline::archive::merge(archived, events, from_index, max))
    }

    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError> {
        let key = format!("claim{SEPARATOR}{}", claim.key);
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.keys)
            .item("k", s(&key))
            .item("r", s(&to_json(claim)?))
            .item("x", n(self.expiry()))
            .condition_expression("attribute_not_exists(k) OR x < :now")
            .expression_attribute_values(":now", n(now_seconds()))
            .send()
            .await;
        if conditional(put)? {
            return Ok(None);
        }
        // Bound by an earlier use; if it expired meanwhile, bind again.
        match self.key_item::<KeyClaim>(&key).await? {
            Some(earlier) => Ok(Some(earlier)),
            None => Box::pin(self.claim(claim)).await,
        }
    }

    /// A scan of the events table for tips, `max` items examined a request;
    /// the position is the last key examined, as `{i} {p}`.
    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError> {
        let mut start = match after.map(|after| after.split_once(' ')) {
            None => None,
            Some(Some((index, stream_id))) => Some(HashMap::from([("p".into(), s(stream_id)), ("i".into(), n(index))])),
            Some(None) => return Err(StoreError::Corrupt(format!("not a position of the tips' scan: {after:?}"))),
        };
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.events)
                .filter_expression("i = :tip")
                .expression_attribute_values(":tip", n(TIP))
                .projection_expression("p")
                .consistent_read(true)
                .limit(i32::try_from(max.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            let ids = page.items().iter().filter_map(|item| item.get("p")?.as_s().ok().cloned()).collect::<Vec<_>>();
            let next = match page.last_evaluated_key {
                Some(last) if !last.is_empty() => last,
                _ => return Ok(StreamIds { ids, next: None }),
            };
            let position = match (next.get("i").and_then(|i| i.as_n().ok()), next.get("p").and_then(|p| p.as_s().ok()))
            {
                (Some(index), Some(stream_id)) => format!("{index} {stream_id}"),
                _ => return Err(StoreError::Corrupt(format!("a scan's last key without p and i: {next:?}"))),
            };
            if !ids.is_empty() {
                return Ok(StreamIds { ids, next: Some(position) });
            }
            start = Some(next);
        }
    }
}

impl DynamoStore {
    /// The events of a stream still in the events table with an index in
    /// `[from, until)`, in order.
    async fn read_hot(&self, stream_id: &str, from: u64, until: u64) -> Result<Vec<EventRecord>, StoreError> {
        let stream = Partition { table: &self.tables.events, index: None, key: "p", value: stream_id };
        let mut events = Vec::new();
        let mut start: Option<Item> = None;
        if from >= until {
            return Ok(events);
        }
        loop {
            let page = self
                .query(&stream, Some("i BETWEEN :from AND :last"))
                .expression_attribute_values(":from", n(from))
                .expression_attribute_values(":last", n(until - 1))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                events.push(json_of::<EventRecord>(item, "e", stream_id)?);
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(events),
            }
        }
    }
}

/// One partition of a table, or of one of its global indexes.
pub(crate) struct Partition<'a> {
    pub table: &'a str,
    pub index: Option<&'a str>,
    /// The partition key's name and value (text).
    pub key: &'a str,
    pub value: &'a str,
}

pub(crate) type Item = HashMap<String, AttributeValue>;

impl DynamoStore {
    /// One item by its whole key (name and value of each part), read
    /// consistently.
    async fn get<const N: usize>(
        &self,
        table: &str,
        key: [(&str, AttributeValue); N],
    ) -> Result<Option<Item>, StoreError> {
        let key = key.into_iter().map(|(name, value)| (name.to_string(), value)).collect();
        let answer = self.client.get_item().table_name(table).set_key(Some(key)).consistent_read(true).send().await;
        Ok(answer.map_err(unavailable)?.item)
    }

    /// A query of one partition (consistent on the table; an index is
    /// eventually consistent), with `and` on the sort key if given.
    fn query(&self, partition: &Partition<'_>, and: Option<&str>) -> QueryFluentBuilder {
        let condition = match and {
            Some(and) => format!("#k = :k AND {and}"),
            None => "#k = :k".to_string(),
        };
        let query = self
            .client
            .query()
            .table_name(partition.table)
            .key_condition_expression(condition)
            .expression_attribute_names("#k", partition.key)
            .expression_attribute_values(":k", s(partition.value));
        match partition.index {
            Some(index) => query.index_name(index),
            None => query.consistent_read(true),
        }
    }

    /// Every item of a partition, page after page.
    async fn all_of(&self, partition: &Partition<'_>) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page =
                self.query(partition, None).set_exclusive_start_key(start.take()).send().await.map_err(unavailable)?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(items),
            }
        }
    }

    /// How many items a partition holds (counted page by page).
    async fn count_of(&self, partition: &Partition<'_>) -> Result<u64, StoreError> {
        let mut count = 0u64;
        let mut start = None;
        loop {
            let page = self
                .query(partition, None)
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            count += u64::try_from(page.count()).unwrap_or(0);
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(count),
            }
        }
    }

    /// The first `limit` items of a partition in sort order (`forward`) or
    /// the reverse, with `and` on the sort key.
    async fn first_of(
        &self,
        partition: &Partition<'_>,
        and: Option<(&str, &str, AttributeValue)>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self.query(partition, and.as_ref().map(|(condition, _, _)| *condition));
        if let Some((_, name, value)) = and {
            query = query.expression_attribute_values(name, value);
        }
        let page = query
            .scan_index_forward(forward)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(page.items.unwrap_or_default().into_iter().take(limit).collect())
    }
}

/// A write's outcome: `Ok(true)` when it was done, `Ok(false)` when the
/// service refused it with `code` (a condition that did not hold, a table
/// that exists), `Err` for anything else.
fn done_unless<T, E, R>(
    sent: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    code: &str,
) -> Result<bool, StoreError>
where
    aws_sdk_dynamodb::error::SdkError<E, R>: ProvideErrorMetadata + std::fmt::Display,
{
    match sent {
        Ok(_) => Ok(true),
        Err(error) if error.code() == Some(code) => Ok(false),
        Err(error) => Err(unavailable(error)),
    }
}

/// What a conditional write's refusal is called.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// A conditional write: `Ok(false)` when its condition did not hold.
fn conditional<T, E, R>(sent: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>) -> Result<bool, StoreError>
where
    aws_sdk_dynamodb::error::SdkError<E, R>: ProvideErrorMetadata + std::fmt::Display,
{
    done_unless(sent, CONDITION_FAILED)
}

fn stream_key(stream_id: &str, key: &str) -> String {
    format!("{stream_id}{SEPARATOR}{key}")
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_string())
}

fn n(number: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|value| value.as_n().ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("item without a number {name}")))
}

fn json_of<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    of: &str,
) -> Result<T, StoreError> {
    let text = item.get(name).and_then(|value| value.as_s().ok());
    let text = text.ok_or_else(|| StoreError::Corrupt(format!("an item of {of} without {name}")))?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("an item of {of}: {e}")))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("not serializable: {e}")))
}

fn unavailable(error: impl ProvideErrorMetadata + std::fmt::Display) -> StoreError {
    let code = error.code().unwrap_or("unknown").to_string();
    StoreError::Unavailable(format!("DynamoDB {code}: {}", error.message().unwrap_or(&error.to_string())))
}

fn invalid(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Corrupt(format!("a DynamoDB request that does not build: {error}"))
}
