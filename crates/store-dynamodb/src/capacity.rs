//! Capacity units spent, per kind of operation, as DynamoDB counts them —
//! what on-demand billing charges. Every request asks for its consumed
//! capacity and every answer's is added up, in one interceptor on the
//! client, so no call site can forget it. (A refused conditional write
//! consumes capacity too, but its error does not say how much: it counts as
//! a request with no units.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::{
    batch_get_item, batch_write_item, delete_item, get_item, put_item, query, scan, transact_write_items, update_item,
};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// Requests made and capacity units consumed by one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Charge {
    pub requests: u64,
    pub units: f64,
}

/// The store's running totals, by operation and table (`PutItem snapshots`,
/// `Query timers`; a transaction or batch by its operation only).
#[derive(Default, Debug)]
pub struct CapacityUnits {
    by_operation: Mutex<BTreeMap<String, Charge>>,
}

impl CapacityUnits {
    fn record(&self, operation: &str, units: f64) {
        tracing::debug!(operation, units, "dynamodb request");
        let label = operation.to_string();
        metrics::counter!("orderflow_dynamodb_requests_total", "operation" => label.clone()).increment(1);
        // Units are fractional: a gauge that only grows, read as a counter.
        metrics::gauge!("orderflow_dynamodb_capacity_units", "operation" => label).increment(units);
        let mut totals = self.by_operation.lock().unwrap_or_else(|p| p.into_inner());
        let charge = totals.entry(operation.to_string()).or_default();
        charge.requests += 1;
        charge.units += units;
    }

    pub fn totals(&self) -> BTreeMap<String, Charge> {
        self.by_operation.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The interceptor: asks each request for its consumed capacity, and adds
/// up what the answer says; `prefix` is taken off table names.
#[derive(Debug)]
pub(crate) struct Metering {
    pub units: Arc<CapacityUnits>,
    pub prefix: String,
}

/// The table a request is about, kept from its input for its answer.
#[derive(Debug, Clone)]
struct Table(String);

impl Storable for Table {
    type Storer = StoreReplace<Table>;
}

/// Runs `$then` with the operation's input or output as the first of
/// `$types` it is.
macro_rules! as_one_of {
    ($value:expr, $downcast:ident, |$it:ident| $then:expr, $($type:ty),+) => {
        $(if let Some($it) = $value.$downcast::<$type>() { $then } else)+ {}
    };
}

fn sum(consumed: &[ConsumedCapacity]) -> f64 {
    consumed.iter().filter_map(ConsumedCapacity::capacity_units).sum()
}

impl Intercept for Metering {
    fn name(&self) -> &'static str {
        "orderflow-capacity-units"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let total = Some(ReturnConsumedCapacity::Total);
        let input = context.input_mut();
        let mut table = None;
        as_one_of!(
            input,
            downcast_mut,
            |it| {
                it.return_consumed_capacity = total.clone();
                table = it.table_name.clone();
            },
            get_item::GetItemInput,
            put_item::PutItemInput,
            update_item::UpdateItemInput,
            delete_item::DeleteItemInput,
            query::QueryInput,
            scan::ScanInput
        );
        as_one_of!(
            input,
            downcast_mut,
            |it| it.return_consumed_capacity = total.clone(),
            batch_get_item::BatchGetItemInput,
            batch_write_item::BatchWriteItemInput,
            transact_write_items::TransactWriteItemsInput
        );
        if let Some(table) = table {
            let name = table.strip_prefix(self.prefix.as_str()).unwrap_or(&table).to_string();
            cfg.interceptor_state().store_put(Table(name));
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        let mut units = 0.0;
        if let Ok(output) = context.output_or_error() {
            let one = |consumed: Option<&ConsumedCapacity>| consumed.and_then(ConsumedCapacity::capacity_units);
            as_one_of!(
                output,
                downcast_ref,
                |it| units = one(it.consumed_capacity()).unwrap_or_default(),
                get_item::GetItemOutput,
                put_item::PutItemOutput,
                update_item::UpdateItemOutput,
                delete_item::DeleteItemOutput,
                query::QueryOutput,
                scan::ScanOutput
            );
            as_one_of!(
                output,
                downcast_ref,
                |it| units = sum(it.consumed_capacity()),
                batch_get_item::BatchGetItemOutput,
                batch_write_item::BatchWriteItemOutput,
                transact_write_items::TransactWriteItemsOutput
            );
        }
        let operation = match cfg.load::<Table>() {
            Some(Table(table)) => format!("{operation} {table}"),
            None => operation.to_string(),
        };
        self.units.record(&operation, units);
        Ok(())
    }
}
