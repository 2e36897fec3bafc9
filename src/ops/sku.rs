//! A SKU for the console: on hand, reserved, available, and the open
//! reservations by order with their age — the SKU's view, read as the API
//! reads it (a SKU whose view lags is caught up from its events).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_api::Problem;
use orderflow_domain::inventory::Inventory;
use orderflow_domain::values::Sku;
use orderflow_pipeline::reads::{self, Current};
use orderflow_pipeline::streams::sku_stream;
use serde::Deserialize;
use serde_json::json;

use super::state::Ops;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Find {
    sku: String,
}

/// `GET /sku.json?sku=ID`.
pub async fn sku(
    State(ops): State<Arc<Ops>>,
    find: Result<Query<Find>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(Find { sku })) = find else { return Problem::bad_request("name a SKU (?sku=)").into_response() };
    let sku = match Sku::try_from(sku) {
        Ok(sku) => sku,
        Err(invalid) => return Problem::from(invalid).into_response(),
    };
    let read =
        match reads::current::<Inventory>(ops.events.as_ref(), ops.snapshots.as_ref(), &sku_stream(&sku), 0).await {
            Ok(Current::Found(read)) => read,
            Ok(_) => return Problem::not_found(format!("no SKU {sku}")).into_response(),
            Err(error) => return Problem::from(error).into_response(),
        };
    let now = chrono::Utc::now();
    let view = read.view;
    let reservations: Vec<_> = view
        .open_reservations
        .iter()
        .map(|r| {
            json!({
                "orderId": r.order_id,
                "attempt": r.attempt,
                "quantity": r.quantity,
                "since": r.since,
                "ageSeconds": (now - r.since).num_seconds().max(0),
            })
        })
        .collect();
    Json(json!({
        "sku": sku.as_str(),
        "onHand": view.on_hand,
        "reserved": view.reserved,
        "available": view.available(),
        "openReservations": reservations,
        "unlistedReservations": view.unlisted,
        "version": read.version,
        "updatedAt": read.updated_at,
    }))
    .into_response()
}
