//! Claim a gift (`POST /v1/claims`) and see orders (`GET /v1/orders`, `GET /v1/orders/{id}`).
//!
//! A claim is verified here (ticket, coupon, role through the role cache, the same eligibility
//! function as the list) and then decided by the store in one atomic, durable step (redeem,
//! per-user limit, stock, order, enqueue). Answers:
//! - 202 `{"order_id","status","deliver_by"}`: a new order, durable and queued;
//! - 200 with the same body: the same claim again (same coupon, same gift) — the first order;
//! - 409 `coupon_already_redeemed` (another gift), `out_of_stock`, `limit_reached`;
//! - 403 `not_eligible` with a `reason`, or the campaign/wave codes; 422 `role_not_found`;
//! - `Idempotency-Key`: the same key and body replay the first answer; the same key with another
//!   body is 422 `idempotency_key_reused`; keys are remembered 24 hours.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::routing::{get, post};
use hongbao_domain::eligibility::{RoleContext, Subject, check};
use hongbao_domain::{Ineligible, Order, OrderId, RoleId, ZoneId, verify_coupon};
use hongbao_store::{ClaimOutcome, ClaimRequest, IdempotencyKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, IdempotencyKeyHeader};
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
pub struct Claimed {
    pub order_id: String,
    pub status: &'static str,
    /// Unix milliseconds by which the gift is delivered.
    pub deliver_by: u64,
}

impl Claimed {
    fn of(order: &Order) -> Claimed {
        Claimed {
            order_id: order.id.as_str().to_string(),
            status: order.status.as_str(),
            deliver_by: order.deliver_by_ms,
        }
    }
}

async fn claim(
    State(state): State<ApiState>,
    caller: Caller,
    IdempotencyKeyHeader(idempotency_header): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<(StatusCode, ApiJson<Claimed>), ApiError> {
    let campaign = &state.campaign;
    let now_s = state.clock.now_unix_s();
    let now_ms = u64::try_from(now_s).unwrap_or(0).saturating_mul(1000);
    let idempotency = idempotency_key(idempotency_header.as_ref(), &body)?;
    let coupon = verify_coupon(&state.coupon_key, &body.coupon, &campaign.id, now_s)?;
    coupon.check_owner(caller.user)?;
    let gift = campaign.gift_by_id(&body.gift_id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "gift_not_found", "no such gift in this campaign")
    })?;

    // The same claim again answers with its order before anything that may have changed since
    // (stock, the window, the role): a retried claim must never turn into an error.
    let order_id = OrderId::derive(&campaign.id, caller.user, &coupon.id());
    if idempotency.is_none()
        && let Some(existing) = state.claims.order(&order_id).await?
    {
        return replay(existing, &body.gift_id);
    }

    // The role must exist in that zone: the cache first, the game side once more if not (a role
    // created a moment ago may not be in a cached list yet).
    let mut roles = state.roles.roles(caller.user, gift.game).await.map_err(game_side_error)?;
    let chosen = |roles: &[hongbao_domain::Role]| {
        roles.iter().find(|r| r.zone_id == body.zone_id && r.role_id == body.role_id).cloned()
    };
    let mut role = chosen(&roles);
    if role.is_none() {
        roles = state.roles.refresh(caller.user, gift.game).await.map_err(game_side_error)?;
        role = chosen(&roles);
    }
    let role = role.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "role_not_found",
            format!(
                "no role {} in zone {} of {}",
                body.role_id,
                body.zone_id,
                campaign.game(gift.game).id
            ),
        )
    })?;

    // The same eligibility function as the gift list. Stock is left to the store, which decides
    // it atomically with the claim.
    let profile = state.profiles.get(caller.user);
    let subject = Subject {
        user: caller.user,
        profile: &profile,
        ticket_issued_at_unix_s: caller.ticket_issued_at_unix_s,
    };
    check(campaign, gift, &subject, RoleContext::Chosen(&role), false, now_s)
        .map_err(ineligible)?;

    let mut request = ClaimRequest::new(campaign, gift, coupon, body.zone_id, body.role_id, now_ms);
    if let Some(key) = idempotency {
        request = request.with_idempotency(key);
    }
    match state.claims.claim(request).await? {
        ClaimOutcome::Accepted(order) => Ok((StatusCode::ACCEPTED, ApiJson(Claimed::of(&order)))),
        ClaimOutcome::Replayed(order) => Ok((StatusCode::OK, ApiJson(Claimed::of(&order)))),
        ClaimOutcome::CouponAlreadyRedeemed(order) => replay(*order, &body.gift_id),
        ClaimOutcome::OutOfStock => {
            Err(ApiError::new(StatusCode::CONFLICT, "out_of_stock", "this gift is sold out"))
        }
        ClaimOutcome::LimitReached => Err(ApiError::new(
            StatusCode::CONFLICT,
            "limit_reached",
            format!("you already have the {} allowed of this gift", gift.per_user),
        )),
        ClaimOutcome::IdempotencyConflict => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )),
    }
}

/// An order already exists for the coupon: the same gift is a replay, another gift a conflict.
fn replay(order: Order, gift_id: &str) -> Result<(StatusCode, ApiJson<Claimed>), ApiError> {
    if order.gift_id == gift_id {
        Ok((StatusCode::OK, ApiJson(Claimed::of(&order))))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "coupon_already_redeemed",
            format!("this coupon was already redeemed for order {}", order.id.as_str()),
        ))
    }
}

/// `Idempotency-Key` and the fingerprint of the body it was sent with.
fn idempotency_key(
    header: Option<&HeaderValue>,
    body: &ClaimBody,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = header else { return Ok(None) };
    let invalid = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    let mut hash = Sha256::new();
    for part in [body.coupon.as_bytes(), body.gift_id.as_bytes()] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.update(body.zone_id.0.to_le_bytes());
    hash.update(body.role_id.0.to_le_bytes());
    IdempotencyKey::new(key, hash.finalize().into()).map(Some).ok_or_else(invalid)
}

fn ineligible(e: Ineligible) -> ApiError {
    match e {
        Ineligible::CampaignNotOpen { .. }
        | Ineligible::CampaignClosed { .. }
        | Ineligible::WaveNotOpen { .. } => ApiError::from(e),
        Ineligible::SoldOut => {
            ApiError::new(StatusCode::CONFLICT, "out_of_stock", "this gift is sold out")
        }
        other => ApiError::new(StatusCode::FORBIDDEN, "not_eligible", other.to_string())
            .with_reason(other.code()),
    }
}

fn game_side_error(e: hongbao_gateway::GatewayError) -> ApiError {
    tracing::warn!(error = %e, "role look-up for a claim failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "game_side_unavailable",
        "the game could not confirm your role; try again",
    )
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
    Path(order_id): Path<String>,
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
