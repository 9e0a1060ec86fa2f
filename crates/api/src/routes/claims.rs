//! Claim a gift (`POST /v1/claims`) and see orders (`GET /v1/orders`, `GET /v1/orders/{id}`).
//!
//! The handler parses the claim and renders what [`crate::claim_service`] decides (coupon, role,
//! the same eligibility function as the list, then the store's one atomic, durable step). Answers:
//! - 202 `{"order_id","status","deliver_by"}`: a new order, durable and queued;
//! - 200 with the same body: the same claim again (same coupon, same gift) — the first order;
//! - 409 `coupon_already_redeemed` (another gift), `out_of_stock`, `limit_reached`;
//! - 403 `not_eligible` with a `reason`, or the campaign/wave codes; 422 `role_not_found`;
//! - `Idempotency-Key`: the same key and body replay the first answer; the same key with another
//!   body is 422 `idempotency_key_reused`; keys are remembered 24 hours.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hongbao_domain::{Order, OrderId, RoleId, ZoneId};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::claim_service::{ClaimCommand, ClaimError, Claimed};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, IdempotencyKeyHeader};
use crate::state::ApiState;

/// Orders `GET /v1/orders` returns at most.
pub const ORDERS_LIST_MAX: usize = 100;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/claims", post(claim))
        .route("/v1/orders", get(list_orders))
        .route("/v1/orders/{order_id}", get(get_order))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub coupon: String,
    pub gift_id: String,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
}

#[derive(Serialize)]
pub struct ClaimedBody {
    pub order_id: String,
    pub status: &'static str,
    /// Unix milliseconds by which the gift is delivered.
    pub deliver_by: u64,
}

async fn claim(
    State(state): State<ApiState>,
    caller: Caller,
    IdempotencyKeyHeader(idempotency_header): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<(StatusCode, ApiJson<ClaimedBody>), ApiError> {
    let idempotency_key = idempotency_header
        .map(|value| value.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ClaimError::InvalidIdempotencyKey)?;
    let command = ClaimCommand {
        user: caller.user,
        ticket_issued_at_unix_s: caller.ticket_issued_at_unix_s,
        coupon: body.coupon,
        gift_id: body.gift_id,
        zone_id: body.zone_id,
        role_id: body.role_id,
        idempotency_key,
    };
    let Claimed { order, created } = state
        .claim_service()
        .claim(command)
        .await
        .map_err(|e| ApiError::from(e).retry_from(state.clock.now_unix_s()))?;
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let body = ClaimedBody {
        order_id: order.id.as_str().to_string(),
        status: order.status.as_str(),
        deliver_by: order.deliver_by_ms,
    };
    Ok((status, ApiJson(body)))
}

#[derive(Serialize)]
pub struct OrderView<'a> {
    pub order_id: &'a str,
    pub status: &'static str,
    pub gift_id: &'a str,
    pub game_id: &'a str,
    /// Text, as orders have always been shown (role ids may pass 2^53 in other games).
    pub zone_id: String,
    pub role_id: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub deliver_by: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<u64>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<&'a str>,
}

impl<'a> OrderView<'a> {
    fn of(order: &'a Order) -> OrderView<'a> {
        OrderView {
            order_id: order.id.as_str(),
            status: order.status.as_str(),
            gift_id: &order.gift_id,
            game_id: &order.game_id,
            zone_id: order.zone_id.to_string(),
            role_id: order.role_id.to_string(),
            created_at: order.created_at_ms,
            updated_at: order.updated_at_ms,
            deliver_by: order.deliver_by_ms,
            delivered_at: order.delivered_at_ms,
            attempts: order.attempts,
            last_error: order.last_error.as_deref(),
        }
    }
}

fn order_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "order_not_found", "no such order")
}

/// The caller's own order; anyone else's is indistinguishable from one that does not exist.
async fn get_order(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(order_id): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    let id = OrderId::parse(&order_id).map_err(|_| order_not_found())?;
    let order = state
        .claims
        .order(&id)
        .await?
        .filter(|o| o.user == caller.user)
        .ok_or_else(order_not_found)?;
    Ok(axum::response::IntoResponse::into_response(ApiJson(OrderView::of(&order))))
}

#[derive(Serialize)]
pub struct OrderList<'a> {
    pub orders: Vec<OrderView<'a>>,
}

async fn list_orders(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<axum::response::Response, ApiError> {
    let orders = state.claims.orders_of(caller.user, ORDERS_LIST_MAX).await?;
    let body = OrderList { orders: orders.iter().map(OrderView::of).collect() };
    Ok(axum::response::IntoResponse::into_response(ApiJson(body)))
}
