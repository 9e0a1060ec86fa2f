//! The HTTP API node (DESIGN.md §1, §4): routes, request limits, errors and the static catalog.
//!
//! Layout, so later slices know where to put things:
//! - [`error`]: [`ApiError`], the one place failures map to HTTP statuses;
//! - [`extract`]: [`ApiJson`] / [`ApiQuery`], extractors whose rejections are `ApiError`s;
//! - [`state`]: [`ApiState`], what handlers reach;
//! - [`claim_service`]: every decision of a claim, free of HTTP;
//! - [`layers`]: request-head limits, the request timeout and the access log;
//! - [`limits`]: per-address and per-user request rates (429 `rate_limited`);
//! - [`routes`]: one module per resource, merged by [`router`];
//! - [`static_catalog`]: the catalog held in memory for `/static/catalog/`;
//! - [`openapi`]: the API's contract, served at `/openapi.json`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, map_response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub mod auth;
pub mod claim_service;
mod conns;
pub mod error;
pub mod extract;
pub mod layers;
pub mod limits;
pub mod openapi;
pub mod ports;
pub mod routes;
mod stack_refusals;
pub mod state;
pub mod static_catalog;

pub use claim_service::{ClaimCommand, ClaimError, ClaimService, Claimed};
pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use layers::{ACCESS_LOG_TARGET, REQUEST_TIMEOUT_MS_DEFAULT, RouterOptions};
pub use limits::{RateLimits, with_rate_limits};
pub use state::ApiState;
pub use static_catalog::CatalogStore;

/// Largest request body accepted, in bytes. The API's bodies are a few ids (a claim is well under
/// 1 KiB); anything near this is abuse, refused with 413 `body_too_large` before it is buffered
/// whole.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// Header fields hyper holds before refusing a request itself (with an empty 431). Above
/// [`layers::HEADERS_MAX`], so that a request with too many is refused by our layer, as JSON.
pub const HYPER_HEADERS_MAX: usize = 256;
/// Bytes hyper buffers for a request head before refusing it itself (with an empty 431): room
/// for [`layers::URI_MAX_BYTES`] plus [`layers::HEADERS_MAX_BYTES`] and the field overhead, so
/// that our layer sees an oversized head first and refuses it as JSON. Beyond this (a head of
/// more than 64 KiB, or a request line hyper cannot parse at all) hyper answers on its own:
/// such a request is not one a client of this API sends by mistake.
pub const HYPER_BUF_MAX_BYTES: usize = 64 * 1024;
/// Time a connection may take to send a request head, in milliseconds; then hyper closes it
/// (there is no request to answer). Also bounds how long an idle keep-alive connection is held.
pub const HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// Default cap on open connections of one API node (each is a file descriptor and a task).
pub const CONNECTIONS_MAX_DEFAULT: usize = 50_000;
/// Default cap on open connections from one client address: enough for a carrier-grade NAT's
/// share of users, far below [`CONNECTIONS_MAX_DEFAULT`] so no one address can take them all.
pub const CONNECTIONS_PER_ADDR_MAX_DEFAULT: usize = 1_024;
/// Default cap on requests being handled at once; more are answered 503 `overloaded` at once.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 20_000;

/// How [`serve_with`] holds connections and requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Open connections at most; more are closed on accept.
    pub connections_max: usize,
    /// Open connections from one address at most; more are closed on accept.
    pub connections_per_addr_max: usize,
    /// Requests handled at once at most; more are answered 503 `overloaded`.
    pub in_flight_max: usize,
    /// See [`HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout_ms: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_addr_max: CONNECTIONS_PER_ADDR_MAX_DEFAULT,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS,
        }
    }
}

/// The API node's router with every route, fallback and layer, ready to serve.
pub fn router(state: ApiState) -> Router {
    router_with(state, RouterOptions::default())
}

/// [`router`] with options (the access log, the request timeout).
pub fn router_with(state: ApiState, options: RouterOptions) -> Router {
    router_with_extra(state, options, Extra::default())
}

/// Routes other crates serve on the API listener, with their part of the contract.
#[derive(Default)]
pub struct Extra {
    /// Served with the API's layers (the monitor's: `/metrics`, `/monitor/v1/query`,
    /// `/v1/events`, `/dashboard`).
    pub router: Router,
    /// The contract of `router`'s routes.
    pub openapi: Option<utoipa::openapi::OpenApi>,
    /// Operations served on another listener that `/openapi.json` covers too (the operator
    /// API), their shared refusals already added ([`openapi::add_shared_refusals`]).
    pub elsewhere: Option<utoipa::openapi::OpenApi>,
}

/// [`router_with`] plus the `extra` routes, which get the same layers, and `GET /openapi.json`
/// describing all of them and `extra.elsewhere`.
pub fn router_with_extra(state: ApiState, options: RouterOptions, extra: Extra) -> Router {
    let routes = Router::new()
        .merge(routes::health::routes())
        .merge(routes::catalog::routes())
        .merge(routes::coupons::routes())
        .merge(routes::claims::routes())
        .merge(routes::page::routes());
    let routes = if options.demo { routes.merge(routes::demo::routes(&state)) } else { routes };
    let contract = openapi::document(options.demo, extra.openapi, extra.elsewhere);
    let contract = openapi::route(&contract, &state);
    let router = routes.with_state(state).merge(extra.router).merge(contract);
    with_layers(router, options)
}

/// What every router of the API gets, whatever its routes: JSON 404 for unknown paths, JSON 405
/// for known paths with a wrong method (axum keeps adding `Allow`), the body limit (enforced by
/// the body extractors, so [`ApiJson`] turns it into 413 `body_too_large`), request tracing and
/// the layers of [`with_layers`] with the default options.
///
/// Call it *after* adding all routes: the 405 fallback attaches to the routes present.
pub fn with_common_layers<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    with_layers(router, RouterOptions::default())
}

/// [`with_common_layers`] with options. Besides the fallbacks and the body limit: 414/431 for an
/// oversized head, 408 after the request timeout, any other non-JSON error the stack produces
/// rewritten as JSON, and (if asked) the access log, outermost so that it sees the final status
/// and the whole latency.
pub fn with_layers<S>(router: Router<S>, options: RouterOptions) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let timeout = Duration::from_millis(options.request_timeout_ms);
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(from_fn(move |request, next| layers::request_timeout(timeout, request, next)))
        .layer(map_response(error::json_errors))
        .layer(from_fn(layers::head_limits_and_metrics))
        .layer(TraceLayer::new_for_http());
    if options.access_log { router.layer(from_fn(layers::access_log)) } else { router }
}

/// Serves `router` on `listener` with the default [`ServeOptions`]: see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// in-flight requests to finish (graceful shutdown). Handlers can extract
/// `ConnectInfo<SocketAddr>` (the peer address, for per-address limits).
///
/// HTTP/1.1 over hyper directly rather than `axum::serve`, for hyper's limits: its header-count
/// and head-buffer limits are set above the router's own ([`HYPER_HEADERS_MAX`],
/// [`HYPER_BUF_MAX_BYTES`]), so an oversized head is refused by the router's layer with a JSON
/// body instead of by hyper with an empty one; what hyper still refuses by itself (a head it
/// cannot parse, one over its whole buffer) goes out with a JSON body too, through the stream
/// wrapper in `stack_refusals`. And for the connection hygiene of [`ServeOptions`]: a connection
/// over a cap is closed as soon as it is accepted (the listener's backlog keeps draining, so one
/// client's sockets never stop others being answered), a connection that sends no complete head
/// within the header timeout — a new one, a half-sent head, or an idle keep-alive between
/// requests — is closed, and a request over the in-flight cap is answered 503 `overloaded` at
/// once.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Closed when shutdown begins; each connection holds a receiver until it is done, so the
    // sender's `closed()` completes once the last one has finished.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let connections = Arc::new(conns::Connections::new(&options));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(options.in_flight_max));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a cap: closed at once (dropping the stream), before any byte is read.
        let Some(slot) = connections.admit(peer.ip()) else { continue };
        let service = conns::service(router.clone(), peer, Arc::clone(&in_flight));
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        let header_read_timeout = Duration::from_millis(options.header_read_timeout_ms);
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_headers(HYPER_HEADERS_MAX)
                .max_buf_size(HYPER_BUF_MAX_BYTES);
            let conn = http.serve_connection(
                TokioIo::new(stack_refusals::JsonStackRefusals::new(stream)),
                TowerToHyperService::new(service),
            );
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(result),
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_connection_end(conn.await);
                }
            }
            drop(slot);
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Pause after a failed `accept`, in milliseconds.
const ACCEPT_RETRY_MS: u64 = 50;

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
