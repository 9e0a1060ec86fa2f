//! Grab a red packet (`POST /v1/coupons`) and see its gift list (`GET /v1/coupons/{c}/gifts`).
//!
//! The coupon is a signed, self-contained token: the list verifies it without a lookup. The
//! grant behind it is recorded durably (per-user-per-channel limit, channel budget) before 201.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use futures_util::future::join_all;
use hongbao_domain::campaign::{MAX_GAMES, MAX_GIFTS};
use hongbao_domain::eligibility::{check_open, games_needing_roles};
use hongbao_domain::{
    Channel, Coupon, GameIndex, GiftIndex, OrderId, Role, RoleContext, Subject, gift_list,
    sign_coupon, verify_coupon,
};
use hongbao_store::{GrantOutcome, GrantRequest, ORDERS_OF_MAX};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::claim_service::high_value_refused;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/coupons", post(grab))
        .route("/v1/coupons/{coupon}/gifts", get(list_gifts))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrabBody {
    /// A channel id of the campaign.
    pub channel: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Grabbed {
    /// The signed coupon: the gift list and the claim take it.
    pub coupon: String,
    pub channel: &'static str,
    /// This user's n-th coupon on this channel.
    pub serial: u32,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Grab a red packet on a channel: a signed coupon, once the grant (per-user limit, channel
/// budget) is recorded durably.
#[utoipa::path(
    post,
    path = "/v1/coupons",
    tag = "coupons",
    request_body = GrabBody,
    security(("ticket" = [])),
    responses(
        (status = 201, description = "a coupon", body = Grabbed),
        (status = 400, description = "`unknown_channel`", body = ErrorBody),
        (status = 403, description = "`campaign_not_open`, `wave_not_open` (with `opens_at` and \
            `Retry-After`), `campaign_closed` (with `ended_at`), or `not_eligible` with a `reason`",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds until it opens"))),
        (status = 409, description = "`coupon_limit_reached`, `channel_budget_exhausted`", body = ErrorBody),
        (status = 500, description = "`internal`: the store is misconfigured or corrupt", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: try again shortly", body = ErrorBody),
    )
)]
pub async fn grab(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<GrabBody>,
) -> Result<(StatusCode, ApiJson<Grabbed>), ApiError> {
    let campaign = &state.campaign;
    let spec =
        Channel::parse(&body.channel).and_then(|c| campaign.channel(c)).ok_or_else(|| {
            ApiError::bad_request(
                "unknown_channel",
                format!("`{}` is not a channel of this campaign", body.channel.escape_debug()),
            )
        })?;
    let now = state.clock.now_unix_s();
    check_open(campaign, caller.user, now).map_err(|e| ApiError::from(e).retry_from(now))?;
    let request = GrantRequest {
        user: caller.user,
        channel: spec.channel,
        per_user_limit: spec.coupons_per_user,
        budget: spec.budget,
    };
    match state.grants.grant(request).await? {
        GrantOutcome::Granted { serial } => {
            let expires_at =
                now.saturating_add(i64::try_from(campaign.coupon_ttl_s).unwrap_or(i64::MAX));
            let coupon = Coupon {
                campaign_id: campaign.id.clone(),
                user: caller.user,
                channel: spec.channel,
                serial,
                expires_at_unix_s: expires_at,
            };
            let token = sign_coupon(&state.coupon_key, &coupon);
            Ok((
                StatusCode::CREATED,
                ApiJson(Grabbed {
                    coupon: token,
                    channel: spec.channel.as_str(),
                    serial,
                    expires_at,
                }),
            ))
        }
        GrantOutcome::UserLimitReached => Err(ApiError::new(
            StatusCode::CONFLICT,
            "coupon_limit_reached",
            format!("you hold the {} coupons allowed on {}", spec.coupons_per_user, spec.channel),
        )),
        GrantOutcome::BudgetExhausted => Err(ApiError::new(
            StatusCode::CONFLICT,
            "channel_budget_exhausted",
            format!("the {} channel has given out all its red packets", spec.channel),
        )),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GiftListBody<'a> {
    pub catalog_version: &'a str,
    pub gifts: Vec<ListedGift<'a>>,
    /// True when the game side did not answer in time: gifts that need a role check are left
    /// out rather than failing the whole list.
    pub degraded: bool,
    /// The order this coupon was already redeemed for; `gifts` is then empty, as the coupon
    /// can claim nothing else (claiming the same gift again only replays this order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeemed: Option<RedeemedBody<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedeemedBody<'a> {
    pub order_id: &'a str,
    pub gift_id: &'a str,
    pub status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ListedGift<'a> {
    pub gift_id: &'a str,
    pub game_id: &'a str,
}

/// The gifts this coupon can claim now, for this user (eligibility, stock, per-user limits,
/// roles); or, once redeemed, the order it was redeemed for.
#[utoipa::path(
    get,
    path = "/v1/coupons/{coupon}/gifts",
    tag = "coupons",
    params(("coupon" = String, Path, description = "the coupon `POST /v1/coupons` returned")),
    security(("ticket" = [])),
    responses(
        (status = 200, description = "the list (`degraded` when the game side did not answer)", body = GiftListBody),
        (status = 400, description = "`malformed_coupon`, `invalid_path`", body = ErrorBody),
        (status = 403, description = "`forged_coupon`; `campaign_not_open`, `wave_not_open` (with \
            `Retry-After`), `campaign_closed`, `not_eligible`",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds until it opens"))),
        (status = 404, description = "`coupon_not_found`: another campaign's or user's", body = ErrorBody),
        (status = 410, description = "`expired_coupon`", body = ErrorBody),
        (status = 500, description = "`internal`: the store is misconfigured or corrupt", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: try again shortly", body = ErrorBody),
    )
)]
pub async fn list_gifts(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(coupon): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    let campaign = &state.campaign;
    let now = state.clock.now_unix_s();
    let coupon = verify_coupon(&state.coupon_key, &coupon, &campaign.id, now)?;
    coupon.check_owner(caller.user)?;
    // A redeemed coupon's answer is its order, whatever the window says now.
    let order_id = OrderId::derive(&campaign.id, caller.user, &coupon.id());
    if let Some(order) = state.claims.user_order(caller.user, &order_id).await? {
        let body = GiftListBody {
            catalog_version: state.catalog.version(),
            gifts: Vec::new(),
            degraded: false,
            redeemed: Some(RedeemedBody {
                order_id: order.id.as_str(),
                gift_id: &order.gift_id,
                status: order.status.as_str(),
            }),
        };
        return Ok(axum::response::IntoResponse::into_response(ApiJson(body)));
    }
    check_open(campaign, caller.user, now).map_err(|e| ApiError::from(e).retry_from(now))?;

    let profile = state.profiles.get(caller.user);
    let subject = Subject {
        user: caller.user,
        profile: &profile,
        ticket_issued_at_unix_s: caller.ticket_issued_at_unix_s,
    };
    let claims = &state.claims;
    let sold_out = |g: hongbao_domain::GiftIndex| {
        claims.stock_taken(g) >= campaign.gifts[usize::from(g.0)].stock
    };
    let roles = fetch_roles(&state, &subject, sold_out, now).await;
    let list = gift_list(
        campaign,
        &subject,
        |game| match &roles[usize::from(game.0)] {
            RoleLookup::NotNeeded => RoleContext::AnyOf(&[]),
            RoleLookup::Found(found) => RoleContext::AnyOf(found),
            RoleLookup::Failed => RoleContext::Unknown,
        },
        sold_out,
        now,
    );
    // Nothing to filter in an empty list: spare the reads.
    let at_limit = if list.gifts.is_empty() {
        Vec::new()
    } else {
        let mut at_limit = gifts_at_limit(&state, caller.user).await?;
        // The second's start: in the same UTC hour and day as the reading, which is all the
        // high-value rules look at.
        let now_ms = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
        at_limit.extend(
            high_value_refused(campaign, &*state.claims, caller.user, now_ms, &list.gifts).await?,
        );
        at_limit
    };
    let body = GiftListBody {
        catalog_version: state.catalog.version(),
        gifts: list
            .gifts
            .iter()
            .filter(|index| !at_limit.contains(index))
            .map(|&index| {
                let gift = &campaign.gifts[usize::from(index.0)];
                ListedGift { gift_id: &gift.id, game_id: &campaign.game(gift.game).id }
            })
            .collect(),
        degraded: list.degraded,
        redeemed: None,
    };
    let mut response = axum::response::IntoResponse::into_response(ApiJson(body));
    if list.degraded {
        response.extensions_mut().insert(crate::layers::ListDegraded);
    }
    Ok(response)
}

/// The gifts `user` has claimed as many times as their per-user limit allows: a claim of one
/// would only be refused with `limit_reached`, so the list does not offer it. One read of the
/// user's orders (bounded by [`ORDERS_OF_MAX`]; a user holds at most one order per coupon, and
/// coupons per user are few).
async fn gifts_at_limit(state: &ApiState, user: u64) -> Result<Vec<GiftIndex>, ApiError> {
    let orders = state.claims.orders_of(user, ORDERS_OF_MAX).await?;
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let campaign = &state.campaign;
    let mut claimed = [0u32; MAX_GIFTS];
    for order in &orders {
        if let Some(gift) = campaign.gift_by_id(&order.gift_id) {
            let count = &mut claimed[usize::from(gift.index.0)];
            *count = count.saturating_add(1);
        }
    }
    Ok(campaign
        .gifts
        .iter()
        .filter(|gift| claimed[usize::from(gift.index.0)] >= gift.per_user)
        .map(|gift| gift.index)
        .collect())
}

/// A user's roles in one game, as far as the list needs them.
enum RoleLookup {
    /// No gift in this game depends on roles for this user: no call made.
    NotNeeded,
    Found(Arc<[Role]>),
    /// The game side failed or timed out (each call is bounded by the game's `idip_timeout_ms`).
    Failed,
}

/// Looks up, concurrently, the user's roles in exactly the games where they can change the list.
async fn fetch_roles(
    state: &ApiState,
    subject: &Subject<'_>,
    sold_out: impl Fn(hongbao_domain::GiftIndex) -> bool,
    now: i64,
) -> [RoleLookup; MAX_GAMES] {
    let needed = games_needing_roles(&state.campaign, subject, sold_out, now);
    let mut out: [RoleLookup; MAX_GAMES] = std::array::from_fn(|_| RoleLookup::NotNeeded);
    let games: Vec<GameIndex> =
        state.campaign.games.iter().map(|g| g.index).filter(|&g| needed.contains(g)).collect();
    let answers = join_all(games.iter().map(|&game| state.roles.roles(subject.user, game))).await;
    for (game, answer) in games.into_iter().zip(answers) {
        out[usize::from(game.0)] = match answer {
            Ok(roles) => RoleLookup::Found(roles),
            Err(error) => {
                tracing::debug!(%error, game = game.0, "role look-up failed; list degraded");
                RoleLookup::Failed
            }
        };
    }
    out
}
