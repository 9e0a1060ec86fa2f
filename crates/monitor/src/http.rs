//! The monitor's routes on the API listener: `GET /metrics` (Prometheus text), `GET
//! /monitor/v1/query`, `POST /v1/events` and the read-only `/dashboard` with every asset built
//! into the binary (it works offline). Errors have the API's shape,
//! `{"error":{"code","message"}}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Monitor;
use crate::events::{self, Batch, Refused};
use crate::kv::KvError;
use crate::query::{self, FunnelAnswer, Request, SeriesAnswer};

/// The dashboard's files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../assets/dashboard.js")),
    ("dashboard.css", "text/css; charset=utf-8", include_str!("../assets/dashboard.css")),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/uPlot.iife.min.js"),
    ),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("../assets/vendor/uPlot.min.css")),
    ("LICENSE.uPlot.txt", "text/plain; charset=utf-8", include_str!("../assets/vendor/LICENSE")),
];
const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");

/// The routes, with their state.
pub fn routes(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/monitor/v1/query", get(query))
        .route("/v1/events", post(events).layer(DefaultBodyLimit::max(events::BODY_MAX_BYTES)))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/config.json", get(dashboard_config))
        .route("/dashboard/assets/{name}", get(asset))
        .with_state(monitor)
}

/// The monitor's part of the API contract (the API crate merges it into `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(metrics, query, events, dashboard, dashboard_config, asset),
    components(schemas(MonitorError, MonitorErrorDetail, QueryAnswer, Accepted))
)]
pub struct MonitorApi;

/// The wire layout of [`error`]: the API's error shape, without its optional fields.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MonitorError {
    pub error: MonitorErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MonitorErrorDetail {
    pub code: String,
    pub message: String,
}

/// An error in the API's shape.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = MonitorError {
        error: MonitorErrorDetail { code: code.to_string(), message: message.into() },
    };
    (status, axum::Json(body)).into_response()
}

/// Every metric in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "monitor",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(monitor): State<Arc<Monitor>>) -> Response {
    let text = monitor.render_prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// A series (per-second rates or levels) or the funnel, from the per-second readings. Parameters
/// other than these five are refused.
#[utoipa::path(
    get,
    path = "/monitor/v1/query",
    tag = "monitor",
    params(
        ("metric" = String, Query, description = "a catalog id, a histogram's `<id>_count`, or `funnel`"),
        ("labels" = Option<String>, Query, description = "`name:value,name:value`; a value `a|b` accepts either"),
        ("window" = Option<String>, Query, description = "`30s` … `7d` (default `5m`)"),
        ("step" = Option<String>, Query, description = "default: the window ÷ 300, at least a second"),
        ("by" = Option<String>, Query, description = "one line per value of this label"),
    ),
    responses(
        (status = 200, description = "the series, or the funnel for `metric=funnel`", body = QueryAnswer),
        (status = 400, description = "`bad_query`, `duplicate_parameter`, `unknown_parameter`, `parameter_too_long`, `missing_metric`, `bad_window`, `unknown_metric`, `unknown_label`, `bad_labels`, `bad_step`, `too_many_points`", body = MonitorError),
        (status = 500, description = "`series_corrupt`: the fleet's series store holds data its layout never writes", body = MonitorError),
        (status = 503, description = "`series_unavailable`: the fleet's series store (Redis) did not answer", body = MonitorError),
    )
)]
pub async fn query(
    State(monitor): State<Arc<Monitor>>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Ok(Query(pairs)) = params else {
        return error(StatusCode::BAD_REQUEST, "bad_query", "the query string does not parse");
    };
    let mut params = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if params.insert(name.clone(), value).is_some() {
            return error(
                StatusCode::BAD_REQUEST,
                "duplicate_parameter",
                format!("`{name}` is given twice"),
            );
        }
    }
    let now_s = monitor.clock().now_ms() / 1000;
    let answer = match query::parse(&params) {
        Ok(Request::Series(q)) => {
            query::series(monitor.series(), &q, now_s).await.map(QueryAnswer::Series)
        }
        Ok(Request::Funnel { window_s }) => {
            query::funnel(monitor.series(), monitor.config(), window_s, now_s)
                .await
                .map(QueryAnswer::Funnel)
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.code, e.message),
    };
    match answer {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e @ KvError::Unavailable(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "series_unavailable", e.to_string())
        }
        Err(e @ KvError::Corrupt(_)) => {
            tracing::error!(error = %e, "series store");
            error(StatusCode::INTERNAL_SERVER_ERROR, "series_corrupt", e.to_string())
        }
    }
}

/// What `GET /monitor/v1/query` answers: a series or the funnel (untagged: the fields tell).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum QueryAnswer {
    Series(SeriesAnswer),
    Funnel(FunnelAnswer),
}

/// The answer to an accepted events batch.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Events counted.
    pub accepted: usize,
}

/// The page's beacons (best-effort: a client drops a refused batch rather than retrying). The body
/// is read as JSON whatever its `Content-Type`, as `navigator.sendBeacon` sends `text/plain`.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "monitor",
    request_body = Batch,
    responses(
        (status = 202, description = "counted", body = Accepted),
        (status = 400, description = "`bad_body`, `invalid_json`, `no_events`, `too_many_events`, `unknown_event`", body = MonitorError),
        (status = 413, description = "`body_too_large`", body = MonitorError),
        (status = 429, description = "`rate_limited`: the node's events rate is spent", body = MonitorError),
    )
)]
pub async fn events(
    State(monitor): State<Arc<Monitor>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("an events batch is at most {} bytes", events::BODY_MAX_BYTES),
            );
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad_body", "the body could not be read"),
    };
    let batch: Batch = match events::parse_batch(&body) {
        Ok(batch) => batch,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("not an events batch: {e}"),
            );
        }
    };
    let now_s = monitor.clock().now_ms() / 1000;
    match monitor.events.accept(&batch, now_s) {
        Ok(accepted) => (StatusCode::ACCEPTED, axum::Json(Accepted { accepted })).into_response(),
        Err(Refused::Empty) => {
            error(StatusCode::BAD_REQUEST, "no_events", "the batch holds no events")
        }
        Err(Refused::TooMany(n)) => error(
            StatusCode::BAD_REQUEST,
            "too_many_events",
            format!("{n} events; a batch holds at most {}", events::BATCH_MAX),
        ),
        Err(Refused::Unknown(name)) => error(
            StatusCode::BAD_REQUEST,
            "unknown_event",
            format!("`{}` is not one of {:?}", name.escape_debug(), events::EVENTS),
        ),
        Err(Refused::RateLimited) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this node takes at most {} events a second", events::EVENTS_PER_S_MAX),
        ),
    }
}

/// The read-only live dashboard (HTML; its script reads the query endpoint).
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "monitor",
    responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String))
)]
pub async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], DASHBOARD_HTML).into_response()
}

/// The node's monitor file, as the dashboard draws it.
#[utoipa::path(
    get,
    path = "/dashboard/config.json",
    tag = "monitor",
    responses((status = 200, description = "the monitor file", body = crate::config::MonitorConfig))
)]
pub async fn dashboard_config(State(monitor): State<Arc<Monitor>>) -> Response {
    axum::Json(monitor.config().clone()).into_response()
}

/// One of the dashboard's files (built into the binary).
#[utoipa::path(
    get,
    path = "/dashboard/assets/{name}",
    tag = "monitor",
    params(("name" = String, Path, description = "e.g. `dashboard.js`")),
    responses(
        (status = 200, description = "the file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/plain"),
        )),
        (status = 404, description = "`not_found`", body = MonitorError),
    )
)]
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such dashboard asset"),
    }
}
