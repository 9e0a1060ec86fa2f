//! The layers every API router gets: request-head limits, the request timeout, the access log.
//!
//! Each refusal here is an [`ApiError`], so it has the same JSON shape as every other error.
//! The head limits sit well below hyper's own (see [`crate::serve`]): hyper refuses a head it
//! cannot hold with an empty-bodied 414 or 431 before any layer runs, so ours must trip first.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

/// Longest request target (path and query) accepted, in bytes. The longest legitimate one is a
/// gift list with its coupon, well under 1 KiB.
pub const URI_MAX_BYTES: usize = 8 * 1024;
/// Most request header fields accepted. hyper is configured to hold more
/// ([`crate::HYPER_HEADERS_MAX`]), so this refusal is ours and JSON.
pub const HEADERS_MAX: usize = 64;
/// Largest total of header names and values accepted, in bytes.
pub const HEADERS_MAX_BYTES: usize = 16 * 1024;
/// Default time a request may take from its head being read to its response, in milliseconds.
/// A claim waits for one fsync and at most one game-side call (bounded by the game's own
/// `idip_timeout_ms`); anything still running after this is stuck, not slow.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// How [`crate::router_with`] builds the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterOptions {
    /// One INFO line per request under the target [`ACCESS_LOG_TARGET`].
    pub access_log: bool,
    /// See [`REQUEST_TIMEOUT_MS_DEFAULT`].
    pub request_timeout_ms: u64,
    /// The demo-only routes (`/demo/v1/…`: tickets for any user, role look-up and creation on
    /// the game side). Only `hongbao demo` turns this on; a real node must never: anyone could
    /// sign in as anyone.
    pub demo: bool,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            access_log: false,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            demo: false,
        }
    }
}

/// The `tracing` target of the access log, so it can be routed or filtered on its own
/// (`RUST_LOG=hongbao::access=info`).
pub const ACCESS_LOG_TARGET: &str = "hongbao::access";

/// 414 `uri_too_long` or 431 `headers_too_large` for a request head over our limits.
fn head_refusal(request: &Request) -> Option<Response> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().len(), |pq| pq.as_str().len());
    if uri_len > URI_MAX_BYTES {
        return Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request target is longer than {URI_MAX_BYTES} bytes"),
            )
            .into_response(),
        );
    }
    let headers = request.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > HEADERS_MAX || header_bytes > HEADERS_MAX_BYTES {
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "at most {HEADERS_MAX} header fields of {HEADERS_MAX_BYTES} bytes in all are accepted"
                ),
            )
            .into_response(),
        );
    }
    None
}

/// 408 `request_timeout` for a request not answered within `timeout`. Dropping the handler's
/// future is safe for every route: a claim dropped before its answer may or may not have
/// claimed, and the same claim again tells which.
pub(crate) async fn request_timeout(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not answered within {} ms", timeout.as_millis()),
        )
        .into_response(),
    }
}

/// One line per request: method, the matched route's *template* (the raw path may hold a
/// coupon, a bearer credential in all but name), status and latency. Headers are never logged,
/// so neither is the ticket in `Authorization`.
pub(crate) async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        method = %method,
        route = %route.as_ref().map_or("unmatched", MatchedPath::as_str),
        status = response.status().as_u16(),
        latency_ms = format_args!("{latency_ms:.3}"),
        "request"
    );
    response
}

/// Marks a gift list answered without the gifts that need a role check (the game side was slow),
/// for [`head_limits_and_metrics`].
#[derive(Clone, Copy, Debug)]
pub struct ListDegraded;

/// The head limits ([`head_refusal`]), and every request counted into the monitor's handles
/// (hongbao-monitor): latency, status and refusal code per route template, and the journey's
/// steps (grab, list, claim) by outcome. One layer for both: each layer costs a boxed future and
/// a clone of the stack below it on every request. The handles are found by route and value
/// without a lock, never registered per request.
pub(crate) async fn head_limits_and_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let metrics = hongbao_monitor::handles::http().route(route);
    let journey = Journey::of(route);
    let response = match head_refusal(&request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    };
    metrics.duration.record(started.elapsed().as_secs_f64());
    let status = response.status();
    metrics.statuses.get(status.as_u16()).increment(1);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let refused = status.is_client_error() || status.is_server_error();
    if refused {
        metrics.refusals.get(code.unwrap_or("uncoded")).increment(1);
    }
    let outcome = |ok: &'static str| if refused { code.unwrap_or("uncoded") } else { ok };
    let flow = hongbao_monitor::handles::flow();
    match journey {
        Journey::Grab => flow.grabs.get(outcome("granted")).increment(1),
        Journey::List => {
            let degraded = response.extensions().get::<ListDegraded>().is_some();
            flow.lists.get(outcome(if degraded { "degraded" } else { "full" })).increment(1);
        }
        Journey::Claim => {
            let made = if status == StatusCode::ACCEPTED { "accepted" } else { "replayed" };
            flow.claims.get(outcome(made)).increment(1);
        }
        Journey::None => {}
    }
    response
}

/// The step of a user's journey a route is, decided before the request moves on (the route's
/// name is borrowed from it).
#[derive(Clone, Copy)]
enum Journey {
    Grab,
    List,
    Claim,
    None,
}

impl Journey {
    fn of(route: &str) -> Journey {
        match route {
            "/v1/coupons" => Journey::Grab,
            "/v1/coupons/{coupon}/gifts" => Journey::List,
            "/v1/claims" => Journey::Claim,
            _ => Journey::None,
        }
    }
}
