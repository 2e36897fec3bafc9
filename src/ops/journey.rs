//! An order's journey, for the console: its read model, every event of its
//! stream in order (time, type, data, what caused it), the reactions each
//! event causes (fulfillment's commands, from the domain's own `react`) and
//! the events they produced on their streams (linked by causation id), the
//! downstream message it became, and the trace id to look up; or, by
//! customer, the customer's orders to pick from.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloudevents::AttributesReader;
use orderflow_api::Problem;
use orderflow_domain::values::{CustomerId, OrderId};
use orderflow_domain::{react, Command};
use orderflow_pipeline::cloudevents::downstream_event;
use orderflow_pipeline::ports::{EventRecord, EventStore};
use orderflow_pipeline::streams::{current_data, domain_event, order_stream, target_stream};
use orderflow_pipeline::trace::is_trace_id;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::Ops;
use super::status::order_summary;

/// Events shown of one order: far more than any order's life takes.
const MAX_EVENTS: usize = 1000;
/// Orders listed for a customer, newest first.
const MAX_ORDERS: usize = 50;

#[derive(Deserialize)]
pub struct Find {
    order: Option<String>,
    customer: Option<String>,
}

/// `GET /journey.json?order=ID` or `?customer=ID`.
pub async fn journey(State(ops): State<Arc<Ops>>, Query(find): Query<Find>) -> Response {
    let answer = match (find.order, find.customer) {
        (Some(order_id), _) => order(&ops, &order_id).await,
        (None, Some(customer_id)) => customer(&ops, &customer_id).await,
        (None, None) => Err(Problem::bad_request("name an order (?order=) or a customer (?customer=)")),
    };
    answer.map(Json).into_response()
}

async fn order(ops: &Ops, order_id: &str) -> Result<Value, Problem> {
    let order_id = OrderId::try_from(order_id)?;
    let stream_id = order_stream(&order_id);
    let records = ops.events.read_stream(&stream_id, 0, MAX_EVENTS).await?;
    if records.is_empty() {
        return Err(Problem::not_found(format!("no order {order_id}")));
    }
    let read_model = ops.snapshots.get(&stream_id).await?;
    let mut produced = HashMap::new();
    for record in &records {
        let targets: BTreeSet<String> =
            domain_event(record).map(|event| react(&event).iter().map(target_stream).collect()).unwrap_or_default();
        let mut found = Vec::new();
        for target in targets {
            found.extend(produced_on(ops.events.as_ref(), &target, record).await?);
        }
        produced.insert(record.index, found);
    }
    let mut traces: Vec<&str> = records.iter().filter_map(|r| trace_id(&r.correlation_id)).collect();
    traces.dedup();
    Ok(json!({
        "orderId": order_id.as_str(),
        "readModel": read_model.map(|s| json!({"version": s.version, "updatedAt": s.updated_at, "state": s.state})),
        "events": records.iter().map(|record| step(record, produced.remove(&record.index))).collect::<Vec<_>>(),
        "truncated": records.len() == MAX_EVENTS,
        "traceIds": traces,
    }))
}

/// Events of a target stream found per reaction: more than any reaction
/// appends, and the window searched after the cause's time.
const WINDOW: usize = 1000;
/// Writers' clocks may differ this much (a reaction is never earlier).
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The events `cause`'s reactions appended to `stream_id` (their causation
/// id is its event id). A SKU's stream may be long and has no index by
/// cause: a binary search over its indexes finds where events of the cause's
/// time begin (a point read each), and the next [`WINDOW`] events are read.
async fn produced_on(events: &dyn EventStore, stream_id: &str, cause: &EventRecord) -> Result<Vec<Value>, Problem> {
    let version = events.load(stream_id, None).await?.tip.map_or(0, |tip| tip.version);
    let since = cause.time - CLOCK_SKEW;
    let (mut low, mut high) = (0, version);
    while low < high {
        let middle = low + (high - low) / 2;
        match events.read_stream(stream_id, middle, 1).await?.first() {
            Some(event) if event.time < since => low = middle + 1,
            _ => high = middle,
        }
    }
    let cause_id = cause.event_id.to_string();
    let window = events.read_stream(stream_id, low, WINDOW).await?;
    Ok(window
        .iter()
        .filter(|event| event.causation_id == cause_id)
        .map(|event| {
            let data = current_data(event).map_or_else(|_| event.data.clone(), |(_, data)| data);
            json!({"stream": event.stream_id, "index": event.index, "type": event.event_type, "time": event.time, "data": data})
        })
        .collect())
}

/// One event, what it causes (and produced) and where it goes.
fn step(record: &EventRecord, produced: Option<Vec<Value>>) -> Value {
    let (schema_version, data) = current_data(record).unwrap_or((record.schema_version, record.data.clone()));
    let reactions = match domain_event(record) {
        Ok(event) => json!(react(&event).iter().map(reaction).collect::<Vec<_>>()),
        Err(error) => json!({"error": error.to_string()}),
    };
    let downstream = match downstream_event(record) {
        Ok((topic, event)) => json!({
            "topic": topic,
            "type": event.ty(),
            "id": event.id(),
            "dataschema": event.dataschema().map(|schema| schema.to_string()),
        }),
        Err(error) => json!({"error": error}),
    };
    json!({
        "index": record.index,
        "eventId": record.event_id,
        "time": record.time,
        "type": record.event_type,
        "schemaVersion": schema_version,
        "data": data,
        "messageId": record.message_id,
        "causationId": record.causation_id,
        "traceId": trace_id(&record.correlation_id),
        "reactions": reactions,
        "produced": produced.unwrap_or_default(),
        "downstream": downstream,
    })
}

fn reaction(command: &Command) -> Value {
    let name = match command {
        Command::Order { command, .. } => command.name(),
        Command::Inventory { command, .. } => command.name(),
    };
    json!({"command": name, "stream": target_stream(command)})
}

/// The correlation id, when it is a trace id (not a caller's own id).
fn trace_id(correlation_id: &str) -> Option<&str> {
    is_trace_id(correlation_id).then_some(correlation_id)
}

async fn customer(ops: &Ops, customer_id: &str) -> Result<Value, Problem> {
    let customer_id = CustomerId::try_from(customer_id)?;
    let orders = ops.snapshots.by_customer(&customer_id, MAX_ORDERS).await?;
    let orders: Vec<Value> = orders.iter().map(order_summary).collect();
    Ok(json!({"customerId": customer_id.as_str(), "orders": orders}))
}
