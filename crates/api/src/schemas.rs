//! The limits of the values the domain bounds, written into the OpenAPI
//! document from the domain's own constants and lists: the document and the
//! checks at every door cannot disagree. They are applied to the generated
//! document (so fields keep their descriptions), by schema and property, or
//! by parameter name.

use orderflow_domain::inventory::MAX_STOCK_CHANGE;
use orderflow_domain::limits::{
    id_pattern, MAX_CORRELATION_ID, MAX_EVENT_ID, MAX_ID, MAX_REFERENCE, MAX_SOURCE, MAX_TEXT,
};
use orderflow_domain::order::{OrderStatus, MAX_LINES, MAX_QUANTITY, MAX_UNIT_PRICE_MINOR};
use utoipa::openapi::path::Parameter;
use utoipa::openapi::{Object, OpenApi, RefOr, Schema};

use crate::request::{MAX_IDEMPOTENCY_KEY, TOKEN_PATTERN};

type Bound = fn(&mut Schema);

/// Which property of which schema holds which bounded value.
const PROPERTIES: [(&str, &str, Bound); 13] = [
    ("PlaceOrder", "orderId", id),
    ("PlaceOrder", "customerId", customer_id),
    ("PlaceOrder", "currency", currency),
    ("PlaceOrder", "lines", lines),
    ("Line", "sku", id),
    ("Line", "quantity", quantity),
    ("Line", "unitPriceMinor", unit_price_minor),
    ("CancelOrder", "reason", text),
    ("Restock", "quantity", stock_change),
    ("StructuredEvent", "id", event_id),
    ("StructuredEvent", "source", event_source),
    ("OrderView", "status", order_status),
    ("OrderSummary", "status", order_status),
];

/// Which parameter (in a path or a header) holds which bounded value.
const PARAMETERS: [(&str, Bound); 5] = [
    ("order_id", id),
    ("sku", id),
    ("customer_id", reference),
    ("Idempotency-Key", idempotency_key),
    ("X-Correlation-Id", correlation_id),
];

/// Writes every bound into `openapi`; answers the ones it found no place for.
pub fn apply(openapi: &mut OpenApi) -> Vec<String> {
    let mut missing = Vec::new();
    if let Some(components) = openapi.components.as_mut() {
        for (schema, property, bound) in PROPERTIES {
            let target = match components.schemas.get_mut(schema) {
                Some(RefOr::T(Schema::Object(object))) => object.properties.get_mut(property),
                _ => None,
            };
            match target {
                Some(RefOr::T(target)) => bound(target),
                _ => missing.push(format!("{schema}.{property}")),
            }
        }
    }
    let mut parameters: Vec<&mut Parameter> = openapi
        .paths
        .paths
        .values_mut()
        .flat_map(|item| [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten())
        .flat_map(|operation| operation.parameters.iter_mut().flatten())
        .collect();
    for (name, bound) in PARAMETERS {
        let mut found = false;
        for parameter in parameters.iter_mut().filter(|p| p.name == name) {
            if let Some(RefOr::T(schema)) = parameter.schema.as_mut() {
                bound(schema);
                found = true;
            }
        }
        if !found {
            missing.push(format!("parameter {name}"));
        }
    }
    missing
}

fn object(schema: &mut Schema) -> Option<&mut Object> {
    match schema {
        Schema::Object(object) => Some(object),
        _ => None,
    }
}

fn text_of(schema: &mut Schema, min: usize, max: usize, pattern: Option<String>) {
    if let Some(object) = object(schema) {
        object.min_length = Some(min);
        object.max_length = Some(max);
        if pattern.is_some() {
            object.pattern = pattern;
        }
    }
}

fn integer(schema: &mut Schema, minimum: u64, maximum: u64) {
    if let Some(object) = object(schema) {
        object.minimum = Some(minimum.into());
        object.maximum = Some(maximum.into());
    }
}

/// An order id or a SKU.
fn id(schema: &mut Schema) {
    text_of(schema, 1, MAX_ID, Some(id_pattern()));
}

/// A customer id in a body: not blank, no control characters.
fn customer_id(schema: &mut Schema) {
    text_of(schema, 1, MAX_REFERENCE, Some(r"^[^\x00-\x1F\x7F-\x9F]*\S[^\x00-\x1F\x7F-\x9F]*$".into()));
}

fn reference(schema: &mut Schema) {
    text_of(schema, 1, MAX_REFERENCE, None);
}

fn text(schema: &mut Schema) {
    text_of(schema, 0, MAX_TEXT, None);
}

/// ISO 4217, such as `EUR`.
fn currency(schema: &mut Schema) {
    text_of(schema, 3, 3, Some("^[A-Z]{3}$".into()));
}

fn lines(schema: &mut Schema) {
    if let Schema::Array(array) = schema {
        array.min_items = Some(1);
        array.max_items = Some(MAX_LINES);
    }
}

fn quantity(schema: &mut Schema) {
    integer(schema, 1, u64::from(MAX_QUANTITY));
}

fn unit_price_minor(schema: &mut Schema) {
    integer(schema, 0, MAX_UNIT_PRICE_MINOR);
}

fn stock_change(schema: &mut Schema) {
    integer(schema, 1, MAX_STOCK_CHANGE);
}

fn idempotency_key(schema: &mut Schema) {
    text_of(schema, 1, MAX_IDEMPOTENCY_KEY, Some(TOKEN_PATTERN.into()));
}

fn correlation_id(schema: &mut Schema) {
    text_of(schema, 1, MAX_CORRELATION_ID, Some(TOKEN_PATTERN.into()));
}

fn event_id(schema: &mut Schema) {
    text_of(schema, 1, MAX_EVENT_ID, None);
}

fn event_source(schema: &mut Schema) {
    text_of(schema, 1, MAX_SOURCE, None);
}

fn order_status(schema: &mut Schema) {
    if let Some(object) = object(schema) {
        object.enum_values = Some(OrderStatus::ALL.iter().map(|status| status.as_str().into()).collect());
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;
    use crate::ApiDoc;

    #[test]
    fn every_bound_has_its_place_in_the_document() {
        let mut document = ApiDoc::openapi();
        assert_eq!(apply(&mut document), Vec::<String>::new());
        let json = serde_json::to_value(&document).expect("serializes");
        let line = &json["components"]["schemas"]["Line"]["properties"];
        assert_eq!(line["quantity"]["maximum"], MAX_QUANTITY);
        assert_eq!(line["sku"]["pattern"], id_pattern());
        let lines = &json["components"]["schemas"]["PlaceOrder"]["properties"]["lines"];
        assert_eq!(lines["maxItems"], MAX_LINES);
    }
}
