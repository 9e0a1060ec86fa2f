//! The API's contract: one OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the types they (de)serialize, served read-only at `GET /openapi.json`.
//!
//! The document is assembled here: the public routes (and the demo's, when the router serves
//! them), the monitor's, and the operator API the binary describes (it runs on the admin
//! listener). Refusals every operation shares — the stack's head limits and timeout, the address
//! rate limit, the in-flight cap, the body extractor's and the ticket's refusals — are added by
//! [`add_shared_refusals`] rather than repeated on each handler, so no operation can forget them.
//! The test `tests/openapi.rs` checks that the routers register exactly the documented
//! operations, and CI (`ci/schemathesis.sh`) that a running node answers as documented.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, OpenApi as Document, RefOr, Response as DocResponse};

use serde_json::{Value, json};

use crate::error::ErrorBody;
use crate::routes;
use crate::state::ApiState;

pub mod drift;

/// The security scheme of the login ticket (`Authorization: Bearer <ticket>`).
pub const TICKET_SCHEME: &str = "ticket";
/// The name of the error schema every refusal references.
pub const ERROR_SCHEMA: &str = "Error";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hongbao",
        description = "Festival red-packet campaigns: grab a coupon, list its gifts, claim one, \
            follow the order. Errors are `{\"error\":{\"code\",\"message\"}}`: clients branch on \
            `code`. The `/admin/v1/` operations are served on the node's admin listener \
            (`--admin-addr`), not on this one, and every request there is signed with an operator \
            key (docs/SECURITY.md). The `/demo/v1/` operations appear only in the document of \
            `hongbao demo`, the one node that serves them."
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::catalog::catalog_file,
        routes::coupons::grab,
        routes::coupons::list_gifts,
        routes::claims::claim,
        routes::claims::list_orders,
        routes::claims::get_order,
        routes::page::index,
        routes::page::asset,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "liveness and readiness"),
        (name = "catalog", description = "the static gift catalog, as a CDN origin"),
        (name = "coupons", description = "grab a red packet, list its gifts"),
        (name = "claims", description = "claim a gift, follow the orders"),
        (name = "page", description = "the campaign page"),
        (name = "monitor", description = "metrics, series, beacons and the dashboard"),
        (name = "contract", description = "this document"),
    )
)]
struct PublicApi;

#[derive(OpenApi)]
#[openapi(
    paths(routes::demo::ticket, routes::demo::roles, routes::demo::create_role),
    tags((name = "demo", description = "`hongbao demo` only: tickets for anyone, roles on the simulator"))
)]
struct DemoApi;

/// The document of the API listener: the public routes, the demo's if `demo`, then `extra`
/// (paths served on this listener by other crates, e.g. the monitor's), each operation with its
/// shared refusals; then `elsewhere` (paths of another listener, their refusals already added).
pub fn document(demo: bool, extra: Option<Document>, elsewhere: Option<Document>) -> Document {
    let mut doc = PublicApi::openapi();
    if demo {
        doc.merge(DemoApi::openapi());
    }
    if let Some(extra) = extra {
        doc.merge(extra);
    }
    doc.components.get_or_insert_with(Default::default).add_security_scheme(
        TICKET_SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The login ticket the login service issued (signed, with an expiry and a \
                     maximum age).",
                ))
                .build(),
        ),
    );
    add_shared_refusals(&mut doc, Listener::Api);
    if let Some(elsewhere) = elsewhere {
        doc.merge(elsewhere);
    }
    doc
}

/// Which listener an operation is served on: each has its own stack of refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The API listener: address and user rate limits, the in-flight cap, tickets.
    Api,
    /// The admin listener: signed requests, no rate limits.
    Admin,
}

/// One refusal shared by many operations.
struct Refusal {
    status: u16,
    description: &'static str,
    retry_after: bool,
}

const fn refusal(status: u16, description: &'static str, retry_after: bool) -> Refusal {
    Refusal { status, description, retry_after }
}

/// What the stack answers for any operation, before or around its handler.
const STACK: &[Refusal] = &[
    refusal(400, "`bad_request`: a request head or path that does not parse", false),
    refusal(408, "`request_timeout`: the request took too long", false),
    refusal(414, "`uri_too_long`", false),
    refusal(431, "`headers_too_large`: too many or too large header fields", false),
];
/// The API listener's own limits.
const API_LIMITS: &[Refusal] = &[
    refusal(429, "`rate_limited`: this address's request rate is spent", true),
    refusal(503, "`overloaded`: the node is at its in-flight cap", true),
];
/// A JSON body read by `ApiJson`.
const JSON_BODY: &[Refusal] = &[
    refusal(400, "`invalid_json`: the body is not JSON", false),
    refusal(413, "`body_too_large`", false),
    refusal(415, "`unsupported_media_type`: not `Content-Type: application/json`", false),
    refusal(
        422,
        "`invalid_body`: JSON of the wrong shape (unknown, missing or mistyped field)",
        false,
    ),
];
/// A ticket checked by the `Caller` extractor.
const TICKET: &[Refusal] = &[
    refusal(
        401,
        "`missing_ticket`, `malformed_ticket`, `unknown_ticket_key`, `forged_ticket`, \
         `expired_ticket`, `ticket_not_yet_valid`",
        false,
    ),
    refusal(429, "`rate_limited`: this user's request rate is spent", true),
];
/// The admin listener's signature check (`hongbao-auth`), before any handler.
const SIGNED: &[Refusal] = &[
    refusal(400, "`signature_malformed`: a signature header of the wrong form", false),
    refusal(
        401,
        "`signature_missing`, `unknown_key`, `timestamp_stale`, `timestamp_future`, \
         `bad_signature`, `nonce_reused`",
        false,
    ),
    refusal(403, "`scope_missing`: the key lacks the operation's scope", false),
    refusal(413, "`body_too_large`: a signed body is at most 16 KiB", false),
    refusal(503, "`nonce_store_full` (with `Retry-After`) or `nonce_store_unavailable`", true),
];

/// Adds to every operation of `doc` the refusals it shares with others on `listener`: the
/// stack's, the listener's limits, the JSON body's (an operation whose only body type is
/// `application/json`), the ticket's (an operation secured by [`TICKET_SCHEME`]) and the
/// signature's (every operation on the admin listener). A status the operation documents
/// already keeps its own description, with the shared one appended, and its body may then be
/// either.
pub fn add_shared_refusals(doc: &mut Document, listener: Listener) {
    for item in doc.paths.paths.values_mut() {
        let operations =
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let mut shared: Vec<&Refusal> = STACK.iter().collect();
            match listener {
                Listener::Api => shared.extend(API_LIMITS),
                Listener::Admin => shared.extend(SIGNED),
            }
            if takes_json_body(operation) {
                shared.extend(JSON_BODY);
            }
            if needs_ticket(operation) {
                shared.extend(TICKET);
            }
            for refusal in shared {
                add_refusal(operation, refusal);
            }
        }
    }
}

fn takes_json_body(operation: &Operation) -> bool {
    match &operation.request_body {
        Some(RefOr::T(body)) => body.content.keys().eq(["application/json"]),
        _ => false,
    }
}

fn needs_ticket(operation: &Operation) -> bool {
    operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement).is_ok_and(|v| v.get(TICKET_SCHEME).is_some())
    })
}

fn add_refusal(operation: &mut Operation, refusal: &Refusal) {
    let status = refusal.status.to_string();
    let error = || RefOr::Ref(Ref::from_schema_name(ERROR_SCHEMA));
    let entry = operation.responses.responses.entry(status);
    let response = entry
        .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(String::new()).build()));
    let RefOr::T(response) = response else { return };
    if !response.description.contains(refusal.description) {
        if !response.description.is_empty() {
            response.description.push_str("; or ");
        }
        response.description.push_str(refusal.description);
    }
    merge_error_body(response, error());
    if refusal.retry_after {
        response.headers.entry("Retry-After".to_string()).or_insert_with(|| {
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                    .description(Some("seconds to wait before trying again"))
                    .build(),
            )
        });
    }
}

/// The response's JSON body may be the error: alone if it had none, else either.
fn merge_error_body(response: &mut DocResponse, error: RefOr<Schema>) {
    let json = response
        .content
        .entry("application/json".to_string())
        .or_insert_with(|| RefOr::T(ContentBuilder::new().build()));
    let RefOr::T(content) = json else { return };
    content.schema = Some(match content.schema.take() {
        None => error,
        Some(existing) if is_error(&existing) => existing,
        Some(RefOr::T(Schema::AnyOf(mut any))) => {
            if !any.items.iter().any(is_error) {
                any.items.push(error);
            }
            RefOr::T(Schema::AnyOf(any))
        }
        Some(existing) => {
            RefOr::T(Schema::AnyOf(AnyOfBuilder::new().item(existing).item(error).build()))
        }
    });
}

fn is_error(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::Ref(r) if r.ref_location.ends_with(&format!("/{ERROR_SCHEMA}"))
        || r.ref_location.ends_with("/MonitorError"))
}

/// The document as served: serialized once.
#[derive(Clone)]
struct Served(Bytes);

/// `GET /openapi.json` serving `doc` with what this node serves filled in ([`for_node`]).
pub fn route(doc: &Document, state: &ApiState) -> Router {
    let json = for_node(doc, state).to_string();
    Router::new().route("/openapi.json", get(openapi_json)).with_state(Served(Bytes::from(json)))
}

/// `doc` as JSON with what only the running node knows: the campaign's channel, gift and game
/// ids and the names of the catalog's and the page's files as the enums of the fields and
/// parameters that take them (a client, or a fuzzer, then knows the values that lead past
/// validation), and the links from a coupon to its gift list and from a claim to its order.
pub fn for_node(doc: &Document, state: &ApiState) -> Value {
    let campaign = &state.campaign;
    // The document is built from types in this binary: failing to serialize it is a bug.
    #[allow(clippy::expect_used)]
    let mut json = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    let channels: Vec<&str> = campaign.channels.iter().map(|c| c.channel.as_str()).collect();
    let gifts: Vec<&str> = campaign.gifts.iter().map(|g| g.id.as_str()).collect();
    let games: Vec<&str> = campaign.games.iter().map(|g| g.id.as_str()).collect();
    let schemas = "/components/schemas";
    for (pointer, values) in [
        (format!("{schemas}/GrabBody/properties/channel"), &channels),
        (format!("{schemas}/ClaimBody/properties/gift_id"), &gifts),
        (format!("{schemas}/CreateBody/properties/game"), &games),
    ] {
        if let Some(Value::Object(schema)) = json.pointer_mut(&pointer) {
            schema.insert("enum".into(), json!(values));
        }
    }
    if let Some(Value::Object(schema)) =
        json.pointer_mut(&format!("{schemas}/Event/properties/event"))
    {
        schema.insert("enum".into(), json!(hongbao_monitor::events::EVENTS));
    }
    let metrics = queryable_metrics();
    let metrics: Vec<&str> = metrics.iter().map(String::as_str).collect();
    for parameter in operations_mut(&mut json).flat_map(parameters_mut) {
        set_enum(parameter, "game", &games);
        set_enum(parameter, "metric", &metrics);
    }
    let files = [
        ("/static/catalog/{file}", state.catalog.names()),
        ("/page/{file}", routes::page::asset_names()),
    ];
    for (path, names) in files {
        let pointer = format!("/paths/{}/get", path.replace('/', "~1"));
        if let Some(operation) = json.pointer_mut(&pointer) {
            parameters_mut(operation).for_each(|parameter| set_enum(parameter, "file", &names));
        }
    }
    let links = [
        ("/v1/coupons", "post", "201", "gifts", "list_gifts", "coupon", "$response.body#/coupon"),
        ("/v1/claims", "post", "202", "order", "get_order", "order_id", "$response.body#/order_id"),
        ("/v1/claims", "post", "200", "order", "get_order", "order_id", "$response.body#/order_id"),
    ];
    for (path, method, status, name, operation_id, parameter, expression) in links {
        let pointer = format!("/paths/{}/{method}/responses/{status}", path.replace('/', "~1"));
        if let Some(Value::Object(response)) = json.pointer_mut(&pointer) {
            let link = json!({"operationId": operation_id, "parameters": {parameter: expression}});
            response.insert("links".into(), json!({ name: link }));
        }
    }
    json
}

/// What `GET /monitor/v1/query` takes as `metric`: every metric, each histogram's `_count`, and
/// the funnel.
fn queryable_metrics() -> Vec<String> {
    use hongbao_monitor::catalog::{METRICS, MetricKind};
    let mut ids: Vec<String> = METRICS.iter().map(|m| m.id.to_string()).collect();
    ids.extend(
        METRICS
            .iter()
            .filter(|m| m.kind == MetricKind::Histogram)
            .map(|m| format!("{}_count", m.id)),
    );
    ids.push("funnel".to_string());
    ids
}

/// The values `parameter` takes, if it is the one named `name`.
fn set_enum(parameter: &mut Value, name: &str, values: &[&str]) {
    if parameter.get("name").and_then(Value::as_str) == Some(name)
        && let Some(Value::Object(schema)) = parameter.get_mut("schema")
    {
        schema.insert("enum".into(), json!(values));
    }
}

fn operations_mut(doc: &mut Value) -> impl Iterator<Item = &mut Value> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
}

fn parameters_mut(operation: &mut Value) -> impl Iterator<Item = &mut Value> {
    operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten()
}

/// This document (OpenAPI 3.1): every operation of the API and the operator API, what each
/// answers, and how each is authenticated.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "contract",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object))
)]
async fn openapi_json(State(Served(json)): State<Served>) -> Response {
    ([(CONTENT_TYPE, "application/json")], json).into_response()
}
