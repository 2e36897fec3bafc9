//! The API's OpenAPI 3.1 document, generated from the route handlers'
//! annotations and the request/answer types (the ones routes share are in
//! [`crate::declared`]), served at `/api/openapi.json`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use orderflow_domain::Rule;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::ProblemBody;
use crate::{commands, events, queries, schemas};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow",
        description = "Event-sourced order processing: commands change orders and stock; \
            queries read snapshots, which follow the commands within milliseconds (each names the \
            version it reflects, also as its ETag). Errors are RFC 9457 problem details.",
    ),
    paths(
        commands::place_order,
        commands::add_line,
        commands::remove_line,
        commands::confirm,
        commands::cancel,
        commands::restock,
        queries::get_order,
        queries::order_events,
        queries::customer_orders,
        queries::get_inventory,
        queries::sku_events,
        events::post_events,
    ),
    components(schemas(ProblemBody)),
    modifiers(&ApiKeys, &RejectionCodes, &Bounds),
    security((), ("api_key" = [])),
)]
pub struct ApiDoc;

/// `X-API-Key`, required when the server is configured with keys.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "Needed when the server has keys (OrderflowApiKeys); `Authorization: Bearer <key>` works too.",
        )));
        components.add_security_scheme("api_key", scheme);
    }
}

/// `RejectionCode`: the `code` of a 422 problem when a business rule refused
/// the command, from the domain's list of rules.
struct RejectionCodes;

impl Modify for RejectionCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let codes = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("The business rule that refused a command: the `code` of its 422 problem."))
            .enum_values(Some(Rule::codes()))
            .build();
        components.schemas.insert("RejectionCode".to_string(), codes.into());
    }
}

/// The limits of bounded values, from the domain's constants ([`schemas`]).
struct Bounds;

impl Modify for Bounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // A bound with no place is a test failure (`schemas::tests`), not a crash here.
        let _unplaced = schemas::apply(openapi);
    }
}

pub async fn document() -> Response {
    let body = ApiDoc::openapi().to_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
