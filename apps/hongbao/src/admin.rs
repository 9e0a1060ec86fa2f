//! Operator endpoints under `/admin/v1/` on the admin address (loopback by default; request
//! signing arrives with the security work). Delivery: status per game, pause and resume.
//! Reconciliation: `POST /admin/v1/reconcile` (see `reconcile.rs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use hongbao_api::{ApiError, ApiJson};
use hongbao_delivery::{Dispatcher, DispatcherStatus};
use hongbao_domain::Campaign;
use hongbao_reconcile::Summary;
use hongbao_store::EmbeddedStore;
use serde::Serialize;

#[derive(Clone)]
pub struct AdminState {
    pub dispatcher: Option<Arc<Dispatcher>>,
    pub store: Arc<EmbeddedStore>,
    pub campaign: Arc<Campaign>,
    /// The node's clock: reconciliation passes run at its time.
    pub clock: hongbao_clock::SharedClock,
    /// Canonical; reconciliation reads game logs and writes reports only under it: an admin
    /// request must not make the node read or overwrite any file it can reach.
    pub reconcile_dir: std::path::PathBuf,
}

pub fn router(state: AdminState) -> Router {
    let routes = Router::new()
        .route("/admin/v1/store", get(store_stats))
        .route("/admin/v1/delivery", get(delivery_status))
        .route("/admin/v1/delivery/{game}/pause", post(pause))
        .route("/admin/v1/delivery/{game}/resume", post(resume))
        .route("/admin/v1/reconcile", post(reconcile));
    hongbao_api::with_common_layers(routes).with_state(state)
}

/// The embedded store's writer: commands, batches, fsyncs (group commit at work), and how long
/// its synced commits took: `synced_commits_by_ms[i]` took at most `synced_commit_bounds_ms[i]`
/// ms, the last entry longer than the last bound.
#[derive(Serialize)]
struct StoreStats {
    commands: u64,
    batches: u64,
    fsyncs: u64,
    commit_failures: u64,
    batch_len_max: u64,
    synced_commit_bounds_ms: [u64; hongbao_store::SYNCED_COMMIT_BOUNDS_MS.len()],
    synced_commits_by_ms: [u64; hongbao_store::SYNCED_COMMIT_BUCKETS],
    synced_commit_max_us: u64,
}

async fn store_stats(State(state): State<AdminState>) -> ApiJson<StoreStats> {
    let s = state.store.stats();
    ApiJson(StoreStats {
        commands: s.commands,
        batches: s.batches,
        fsyncs: s.fsyncs,
        commit_failures: s.commit_failures,
        batch_len_max: s.batch_len_max,
        synced_commit_bounds_ms: hongbao_store::SYNCED_COMMIT_BOUNDS_MS,
        synced_commits_by_ms: s.synced_commits_by_ms,
        synced_commit_max_us: s.synced_commit_max_us,
    })
}

fn dispatcher(state: &AdminState) -> Result<&Arc<Dispatcher>, ApiError> {
    state.dispatcher.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_delivery_here",
            "this node runs no delivery workers (--role api)",
        )
    })
}

async fn delivery_status(
    State(state): State<AdminState>,
) -> Result<ApiJson<DispatcherStatus>, ApiError> {
    Ok(ApiJson(dispatcher(&state)?.status().await))
}

#[derive(Serialize)]
struct Paused {
    game: String,
    paused: bool,
}

async fn pause(
    State(state): State<AdminState>,
    Path(game): Path<String>,
) -> Result<ApiJson<Paused>, ApiError> {
    set_paused(&state, game, true)
}

async fn resume(
    State(state): State<AdminState>,
    Path(game): Path<String>,
) -> Result<ApiJson<Paused>, ApiError> {
    set_paused(&state, game, false)
}

fn set_paused(state: &AdminState, game: String, paused: bool) -> Result<ApiJson<Paused>, ApiError> {
    let d = dispatcher(state)?;
    let index = d.game_index(&game).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_game", format!("no game `{game}`"))
    })?;
    let result = if paused { d.pause(index) } else { d.resume(index) };
    result.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ApiJson(Paused { game, paused }))
}

async fn reconcile(
    State(state): State<AdminState>,
    ApiJson(req): ApiJson<crate::reconcile::ReconcileRequest>,
) -> Result<ApiJson<Summary>, ApiError> {
    crate::reconcile::admin(&state.store, &state.campaign, &state.reconcile_dir, req, &*state.clock)
        .await
        .map(ApiJson)
}
