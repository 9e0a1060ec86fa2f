//! Liveness and readiness probes.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::extract::ApiJson;
use crate::state::ApiState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    pub status: &'static str,
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The process is up and serving HTTP. Says nothing about dependencies (that is `/readyz`).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Status))
)]
pub async fn healthz() -> ApiJson<Status> {
    ApiJson(Status { status: "ok" })
}

/// What `/readyz` reports, ready or not, so an operator sees *why* a node takes no traffic.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `not_open`, `open` or `closed`, by the node's clock.
    pub campaign: &'static str,
    /// Unix seconds.
    pub opens_at: i64,
    /// Unix seconds.
    pub ends_at: i64,
    /// `open` once the app has opened its store, `not_open` before.
    pub store: &'static str,
    /// `loaded` (from a profile file) or `none` (everyone is a new user).
    pub profiles: &'static str,
    /// `reachable`, `unreachable` or `unknown`, from the role cache's recent calls (see
    /// [`ApiState::game_side`]); informational, it does not decide `ready`.
    pub game_side: &'static str,
    /// Present on 503, so the body is also the API's usual error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<NotReady>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotReady {
    pub code: &'static str,
    pub message: &'static str,
}

/// Whether this node should receive traffic: 200 when [`ApiState::is_ready`], else 503
/// `not_ready`; the body reports each part either way.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "ready: send traffic", body = Readiness),
        (status = 503, description = "not ready; `error.code` is `not_ready` (or `overloaded`, \
            with `Retry-After`, when the node is at its in-flight cap)", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let ready = state.is_ready();
    let now = state.clock.now_unix_s();
    let campaign = &state.campaign;
    let window = if now < campaign.starts_at_unix_s {
        "not_open"
    } else if now < campaign.ends_at_unix_s {
        "open"
    } else {
        "closed"
    };
    let body = Readiness {
        ready,
        campaign: window,
        opens_at: campaign.starts_at_unix_s,
        ends_at: campaign.ends_at_unix_s,
        store: if state.is_store_open() { "open" } else { "not_open" },
        profiles: if state.profiles_loaded { "loaded" } else { "none" },
        game_side: state.game_side().as_str(),
        error: (!ready).then_some(NotReady {
            code: "not_ready",
            message: "this node is not ready to take traffic",
        }),
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, ApiJson(body)).into_response()
}
