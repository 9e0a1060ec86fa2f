//! The HTTP API node (DESIGN.md §1, §4): routes, request limits, errors and the static catalog.
//!
//! Layout, so later slices know where to put things:
//! - [`error`]: [`ApiError`], the one place failures map to HTTP statuses;
//! - [`extract`]: [`ApiJson`] / [`ApiQuery`], extractors whose rejections are `ApiError`s;
//! - [`state`]: [`ApiState`], what handlers reach;
//! - [`claim_service`]: every decision of a claim, free of HTTP;
//! - [`routes`]: one module per resource, merged by [`router`];
//! - [`static_catalog`]: the catalog held in memory for `/static/catalog/`.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub mod auth;
pub mod claim_service;
pub mod error;
pub mod extract;
pub mod ports;
pub mod routes;
pub mod state;
pub mod static_catalog;

pub use claim_service::{ClaimCommand, ClaimError, ClaimService, Claimed};
pub use error::ApiError;
pub use extract::{ApiJson, ApiQuery};
pub use state::ApiState;
pub use static_catalog::CatalogStore;

/// Largest request body accepted, in bytes. The API's bodies are a few ids (a claim is well under
/// 1 KiB); anything near this is abuse, refused with 413 `body_too_large` before it is buffered
/// whole.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The API node's router with every route, fallback and layer, ready to serve.
pub fn router(state: ApiState) -> Router {
    let routes = Router::new()
        .merge(routes::health::routes())
        .merge(routes::catalog::routes())
        .merge(routes::coupons::routes())
        .merge(routes::claims::routes());
    with_common_layers(routes).with_state(state)
}

/// What every router of the API gets, whatever its routes: JSON 404 for unknown paths, JSON 405
/// for known paths with a wrong method (axum keeps adding `Allow`), the body limit (enforced by
/// the body extractors, so [`ApiJson`] turns it into 413 `body_too_large`) and request tracing.
///
/// Call it *after* adding all routes: the 405 fallback attaches to the routes present.
pub fn with_common_layers<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TraceLayer::new_for_http())
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// in-flight requests to finish (graceful shutdown). Handlers can extract
/// `ConnectInfo<SocketAddr>` (the peer address, for per-address limits).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
