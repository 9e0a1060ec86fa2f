//! Demo-only endpoints under `/demo/v1/`, mounted only when [`crate::RouterOptions::demo`] is set
//! (`hongbao demo` sets it; `serve` never does, and answers 404 for these paths).
//!
//! - `POST /demo/v1/ticket {"user"}` → `{"user","ticket","expires_at"}`: what the login service
//!   would issue, so the campaign page can sign a visitor in as any synthetic user. It signs with
//!   the campaign's first ticket key — in the demo a published example key, which is why no
//!   real node may expose it.
//! - `GET /demo/v1/roles?game=G` → `{"roles":[…],"zones":[{"zone_id","region"}]}` and
//!   `POST /demo/v1/roles {"game","zone_id"}` → 201 the new role: the caller's (ticket's) roles
//!   in a game, and creating one as a new player does. In production the game's own client
//!   knows the player's roles; the demo page has only this API's origin, so these forward to
//!   the game side (the simulator) for the *authenticated* user only — one cannot list or create
//!   another user's roles. The list goes through the node's role cache (what a claim will see);
//!   a creation invalidates it, so the next claim finds the new role.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hongbao_domain::campaign::Game;
use hongbao_domain::synth::{ZONES_PER_GAME, region_of_zone};
use hongbao_domain::{Role, ZoneId, sign_ticket};
use hongbao_gateway::{GatewayError, IdipClient};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::ApiState;

/// Lifetime of a demo ticket: long enough for a visit, capped by the campaign's maximum age.
pub const DEMO_TICKET_TTL_S: u64 = 3600;

/// The game-side client role creation uses, if it could be built.
type Idip = Option<Arc<IdipClient>>;

/// The demo routes, with one game-side client for role creation built now (if that fails, role
/// creation answers 503 and says why in the log; the rest of the demo still works).
pub fn routes(state: &ApiState) -> Router<ApiState> {
    let idip: Idip = IdipClient::new(&state.campaign)
        .inspect_err(|e| tracing::error!(error = %e, "demo: no game-side client"))
        .ok()
        .map(Arc::new);
    Router::new()
        .route("/demo/v1/ticket", post(ticket))
        .route("/demo/v1/roles", get(roles).post(create_role))
        .layer(Extension(idip))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketBody {
    user: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Issued {
    /// A string: JavaScript reads u64 ids above 2^53 inexactly.
    user: String,
    ticket: String,
    expires_at: i64,
}

/// Demo only: a login ticket for any user, as the login service would issue it.
#[utoipa::path(
    post,
    path = "/demo/v1/ticket",
    tag = "demo",
    request_body = TicketBody,
    responses(
        (status = 201, description = "a ticket for `Authorization: Bearer`", body = Issued),
        (status = 500, description = "`internal`: the campaign has no ticket key", body = ErrorBody),
    )
)]
pub async fn ticket(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<TicketBody>,
) -> Result<impl IntoResponse, ApiError> {
    let auth = &state.campaign.auth;
    let key = auth.ticket_keys.first().ok_or_else(|| ApiError::internal("no ticket key"))?;
    let now = state.clock.now_unix_s();
    let ttl_s = DEMO_TICKET_TTL_S.min(auth.ticket_max_age_s);
    let ticket = sign_ticket(key, body.user, now, ttl_s);
    let expires_at = now.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
    Ok((StatusCode::CREATED, ApiJson(Issued { user: body.user.to_string(), ticket, expires_at })))
}

#[derive(Deserialize)]
pub struct GameQuery {
    game: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Zone {
    zone_id: u16,
    region: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RolesBody {
    roles: Vec<Role>,
    /// Where a new role may be created.
    zones: Vec<Zone>,
}

/// Demo only: the caller's roles in a game (through the node's role cache) and the zones a new
/// role may be created in.
#[utoipa::path(
    get,
    path = "/demo/v1/roles",
    tag = "demo",
    params(("game" = String, Query, description = "a game id of the campaign")),
    security(("ticket" = [])),
    responses(
        (status = 200, description = "the roles and zones", body = RolesBody),
        (status = 400, description = "`invalid_query`: no `game`", body = ErrorBody),
        (status = 404, description = "`game_not_found`", body = ErrorBody),
        (status = 503, description = "`game_side_unavailable`", body = ErrorBody),
    )
)]
pub async fn roles(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<GameQuery>,
) -> Result<ApiJson<RolesBody>, ApiError> {
    let game = game(&state, &query.game)?;
    let roles = state.roles.roles(caller.user, game.index).await.map_err(game_side)?;
    let zones = (1..=ZONES_PER_GAME)
        .filter_map(|zone_id| region_of_zone(zone_id).map(|region| Zone { zone_id, region }))
        .collect();
    Ok(ApiJson(RolesBody { roles: roles.to_vec(), zones }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    game: String,
    zone_id: ZoneId,
}

/// Demo only: create a role for the caller in a game, as a new player does.
#[utoipa::path(
    post,
    path = "/demo/v1/roles",
    tag = "demo",
    request_body = CreateBody,
    security(("ticket" = [])),
    responses(
        (status = 201, description = "the new role", body = Role),
        (status = 404, description = "`game_not_found`", body = ErrorBody),
        (status = 422, description = "`role_not_created`: the game side refused", body = ErrorBody),
        (status = 503, description = "`game_side_unavailable`", body = ErrorBody),
    )
)]
pub async fn create_role(
    State(state): State<ApiState>,
    Extension(idip): Extension<Idip>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let game = game(&state, &body.game)?;
    let idip = idip.ok_or_else(|| game_side(GatewayError::Setup("no client".into())))?;
    let role = idip.create_role(caller.user, game.index, body.zone_id).await.map_err(game_side)?;
    // The cached list (perhaps empty) no longer holds: the claim must see the new role.
    state.roles.invalidate(caller.user, game.index).await.map_err(game_side)?;
    Ok((StatusCode::CREATED, ApiJson(role)))
}

fn game<'a>(state: &'a ApiState, id: &str) -> Result<&'a Game, ApiError> {
    state
        .campaign
        .game_by_id(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "game_not_found", "no such game"))
}

fn game_side(e: GatewayError) -> ApiError {
    match e {
        GatewayError::Rejected { reason, .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "role_not_created", reason)
        }
        other => {
            tracing::warn!(error = %other, "demo role request failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "game_side_unavailable",
                "the game could not be reached; try again",
            )
        }
    }
}
