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
use crate::error::{ApiError, ErrorBody};
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub coupon: String,
    pub gift_id: String,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClaimedBody {
    pub order_id: String,
    pub status: &'static str,
    /// Unix milliseconds by which the gift is delivered.
    pub deliver_by: u64,
}

/// Claim a gift with a coupon for one of the user's roles: 202 once the order is durable and
/// queued for delivery; the same claim again answers 200 with the first order.
#[utoipa::path(
    post,
    path = "/v1/claims",
    tag = "claims",
    request_body = ClaimBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "the same key and body replay the first answer for 24 hours; the same key \
            with another body is 422 `idempotency_key_reused`")),
    security(("ticket" = [])),
    responses(
        (status = 202, description = "a new order, durable and queued", body = ClaimedBody),
        (status = 200, description = "the same claim again: the first order", body = ClaimedBody),
        (status = 400, description = "`malformed_coupon`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 403, description = "`forged_coupon`; `campaign_not_open`, `wave_not_open` (with \
            `Retry-After`), `campaign_closed`; `not_eligible` with a `reason`",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds until it opens"))),
        (status = 404, description = "`gift_not_found`, `coupon_not_found`", body = ErrorBody),
        (status = 409, description = "`coupon_already_redeemed` (for another gift), `out_of_stock`, \
            `limit_reached`, `high_value_daily_limit` (with `Retry-After` until UTC midnight)",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds until the allowance renews"))),
        (status = 410, description = "`expired_coupon`", body = ErrorBody),
        (status = 422, description = "`role_not_found`, `idempotency_key_reused`, `invalid_request` \
            (a zone or role id the store refuses)", body = ErrorBody),
        (status = 429, description = "`high_value_budget_exhausted`: everyone's hourly budget of \
            high-value gifts is spent", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until the next hour's budget"))),
        (status = 500, description = "`internal`: the store is misconfigured or corrupt", body = ErrorBody),
        (status = 503, description = "`game_side_unavailable` (the role could not be confirmed), \
            `store_unavailable`: try again", body = ErrorBody),
    )
)]
pub async fn claim(
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

#[derive(Serialize, utoipa::ToSchema)]
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
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "claims",
    params(("order_id" = String, Path, description = "an `order_id` a claim returned")),
    security(("ticket" = [])),
    responses(
        (status = 200, description = "the order", body = OrderView),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`order_not_found`", body = ErrorBody),
        (status = 500, description = "`internal`: the store is misconfigured or corrupt", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: try again shortly", body = ErrorBody),
    )
)]
pub async fn get_order(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(order_id): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    let id = OrderId::parse(&order_id).map_err(|_| order_not_found())?;
    let order = state.claims.user_order(caller.user, &id).await?.ok_or_else(order_not_found)?;
    Ok(axum::response::IntoResponse::into_response(ApiJson(OrderView::of(&order))))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderList<'a> {
    pub orders: Vec<OrderView<'a>>,
}

/// The caller's orders (at most 100).
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "claims",
    security(("ticket" = [])),
    responses(
        (status = 200, description = "the orders", body = OrderList),
        (status = 500, description = "`internal`: the store is misconfigured or corrupt", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: try again shortly", body = ErrorBody),
    )
)]
pub async fn list_orders(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<axum::response::Response, ApiError> {
    let orders = state.claims.orders_of(caller.user, ORDERS_LIST_MAX).await?;
    let body = OrderList { orders: orders.iter().map(OrderView::of).collect() };
    Ok(axum::response::IntoResponse::into_response(ApiJson(body)))
}
