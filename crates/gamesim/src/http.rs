//! The HTTP face of the simulator: parses requests into the arguments of `sim.rs` and maps every
//! outcome and error to a status and JSON body in one place ([`ApiError`], [`deliver_response`]).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::routing::post;
use hongbao_domain::Role;
use hongbao_domain::synth::ZONES_PER_GAME;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::log::DeliveryItem;
use crate::sim::{CreateRoleError, Delivery, FaultSettings, FaultsUpdate, GameSim, Outcome};
use crate::{SimError, StatsBody};

/// Largest request body: a delivery with the most items fits many times over.
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest serial (hongbao's order ids are far shorter).
const SERIAL_BYTES_MAX: usize = 128;
/// Most items in one delivery.
const ITEMS_PER_DELIVERY_MAX: usize = 32;
/// Longest item id.
const ITEM_ID_BYTES_MAX: usize = 64;

type Sim = State<Arc<GameSim>>;

pub(crate) fn router(sim: Arc<GameSim>) -> Router {
    Router::new()
        .route("/idip/v1/roles", get(get_roles).post(post_role))
        .route("/idip/v1/deliver", post(post_deliver))
        .route("/idip/v1/stats", get(get_stats))
        .route("/idip/v1/faults", get(get_faults).post(post_faults))
        .route("/healthz", get(healthz))
        // After the routes: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(sim)
}

/// An error answer: `{"error":{"code","message"}}` with its status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<SimError> for ApiError {
    fn from(e: SimError) -> ApiError {
        match e {
            SimError::InvalidConfig { .. } | SimError::InvalidOutage { .. } => {
                ApiError::bad_request("invalid_faults", e.to_string())
            }
            SimError::LogIo { .. } | SimError::LogCorrupt { .. } | SimError::Bind(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not accept that method",
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Parses a JSON body. The content type is not checked: the simulator's clients are ours.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                format!("request body over {BODY_BYTES_MAX} bytes"),
            )
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("malformed JSON body: {e}")))
}

fn game_index(sim: &GameSim, game: Option<&str>) -> Result<usize, ApiError> {
    let game = game.ok_or_else(|| ApiError::bad_request("invalid_game", "`game` is required"))?;
    sim.game_index(game)
        .ok_or_else(|| ApiError::bad_request("unknown_game", format!("unknown game `{game}`")))
}

fn check_user(user: u64) -> Result<u64, ApiError> {
    if user == 0 {
        return Err(ApiError::bad_request("invalid_user", "`user` must be a positive integer"));
    }
    Ok(user)
}

fn invalid_zone(zone_id: u64) -> ApiError {
    ApiError::bad_request(
        "invalid_zone",
        format!("zone_id {zone_id} is not in 1..={ZONES_PER_GAME}"),
    )
}

fn check_zone(zone_id: u64) -> Result<u16, ApiError> {
    u16::try_from(zone_id)
        .ok()
        .filter(|z| (1..=ZONES_PER_GAME).contains(z))
        .ok_or_else(|| invalid_zone(zone_id))
}

// ---------------------------------------------------------------------------------------------
// Roles

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesQuery {
    // Strings, parsed here, so a bad value gets its own error code.
    user: Option<String>,
    game: Option<String>,
}

#[derive(Serialize)]
struct RolesBody {
    roles: Vec<Role>,
}

async fn get_roles(
    State(sim): Sim,
    query: Result<Query<RolesQuery>, QueryRejection>,
) -> Result<Json<RolesBody>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let user = q
        .user
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("invalid_user", "`user` is required"))?;
    let user = user.parse::<u64>().map_err(|_| {
        ApiError::bad_request("invalid_user", format!("`user` {user:?} is not a user id"))
    })?;
    let user = check_user(user)?;
    let game = game_index(&sim, q.game.as_deref())?;
    Ok(Json(RolesBody { roles: sim.query_roles(user, game).await }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoleBody {
    user: u64,
    game: String,
    zone_id: u64,
}

async fn post_role(
    State(sim): Sim,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Role>), ApiError> {
    let b: CreateRoleBody = parse_body(body)?;
    let user = check_user(b.user)?;
    let game = game_index(&sim, Some(&b.game))?;
    let zone_id = check_zone(b.zone_id)?;
    match sim.create_role(user, game, zone_id) {
        Ok(role) => Ok((StatusCode::CREATED, Json(role))),
        Err(CreateRoleError::InvalidZone) => Err(invalid_zone(u64::from(zone_id))),
        Err(CreateRoleError::TooManyForUser) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_roles",
            format!(
                "at most {} roles per user in one zone",
                crate::CREATED_ROLES_PER_USER_ZONE_MAX
            ),
        )),
        Err(CreateRoleError::StoreFull) => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "role_store_full",
            format!("the simulator holds at most {} created roles", crate::CREATED_ROLES_MAX),
        )),
        Err(CreateRoleError::LogUnavailable) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "role_log_unavailable",
            "the role log could not be written; the role was not created",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Deliveries

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverBody {
    serial: String,
    user: u64,
    game: String,
    zone_id: u64,
    role_id: u64,
    items: Vec<DeliveryItem>,
}

#[derive(Serialize)]
struct DeliverAnswer {
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

fn parse_delivery(sim: &GameSim, b: DeliverBody) -> Result<Delivery, ApiError> {
    if b.serial.is_empty()
        || b.serial.len() > SERIAL_BYTES_MAX
        || b.serial.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_serial",
            format!("`serial` must be 1..={SERIAL_BYTES_MAX} bytes without control characters"),
        ));
    }
    let user = check_user(b.user)?;
    let game = game_index(sim, Some(&b.game))?;
    let zone_id = check_zone(b.zone_id)?;
    if b.items.is_empty() || b.items.len() > ITEMS_PER_DELIVERY_MAX {
        return Err(ApiError::bad_request(
            "invalid_items",
            format!("a delivery holds 1..={ITEMS_PER_DELIVERY_MAX} items"),
        ));
    }
    for it in &b.items {
        if it.item.is_empty() || it.item.len() > ITEM_ID_BYTES_MAX || it.count == 0 {
            return Err(ApiError::bad_request(
                "invalid_items",
                format!(
                    "each item needs an id of 1..={ITEM_ID_BYTES_MAX} bytes and a positive count"
                ),
            ));
        }
    }
    Ok(Delivery { serial: b.serial, user, game, zone_id, role_id: b.role_id, items: b.items })
}

fn deliver_response(outcome: Outcome) -> (StatusCode, Json<DeliverAnswer>) {
    let (status, result, reason) = match outcome {
        Outcome::Applied => (StatusCode::OK, "applied", None),
        Outcome::Duplicate => (StatusCode::OK, "duplicate", None),
        Outcome::Busy => (StatusCode::OK, "busy", None),
        Outcome::Failed(reason) => (StatusCode::OK, "error", Some(reason)),
        Outcome::Outage => (StatusCode::SERVICE_UNAVAILABLE, "error", Some("outage")),
        Outcome::SerialStoreFull => {
            (StatusCode::INSUFFICIENT_STORAGE, "error", Some("serial_store_full"))
        }
        Outcome::LogUnavailable => {
            (StatusCode::INTERNAL_SERVER_ERROR, "error", Some("log_unavailable"))
        }
    };
    (status, Json(DeliverAnswer { result, reason }))
}

async fn post_deliver(
    State(sim): Sim,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DeliverAnswer>), ApiError> {
    let delivery = parse_delivery(&sim, parse_body(body)?)?;
    Ok(deliver_response(sim.deliver(delivery).await))
}

// ---------------------------------------------------------------------------------------------
// Stats and faults

async fn get_stats(State(sim): Sim) -> Json<StatsBody> {
    Json(sim.stats())
}

async fn get_faults(State(sim): Sim) -> Json<FaultSettings> {
    Json(sim.faults())
}

async fn post_faults(
    State(sim): Sim,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FaultSettings>, ApiError> {
    let update: FaultsUpdate = parse_body(body)?;
    Ok(Json(sim.set_faults(&update)?))
}
