//! Liveness and readiness probes.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::ApiState;

#[derive(Serialize)]
pub struct Status {
    pub status: &'static str,
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The process is up and serving HTTP. Says nothing about dependencies (that is `/readyz`).
async fn healthz() -> ApiJson<Status> {
    ApiJson(Status { status: "ok" })
}

/// Whether this node should receive traffic.
async fn readyz(State(state): State<ApiState>) -> Result<ApiJson<Status>, ApiError> {
    if state.is_ready() {
        Ok(ApiJson(Status { status: "ready" }))
    } else {
        Err(ApiError::not_ready("this node is not ready to take traffic"))
    }
}
