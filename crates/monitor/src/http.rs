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
use serde_json::json;

use crate::Monitor;
use crate::events::{self, Batch, Refused};
use crate::query::{self, Request};

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

/// An error in the API's shape.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(monitor): State<Arc<Monitor>>) -> Response {
    let text = monitor.render_prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn query(
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
    match query::parse(&params) {
        Ok(Request::Series(q)) => {
            axum::Json(query::series(monitor.series(), &q, now_s)).into_response()
        }
        Ok(Request::Funnel { window_s }) => {
            axum::Json(query::funnel(monitor.series(), monitor.config(), window_s, now_s))
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.code, e.message),
    }
}

async fn events(
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
    let batch: Batch = match serde_json::from_slice(&body) {
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
        Ok(accepted) => {
            (StatusCode::ACCEPTED, axum::Json(json!({"accepted": accepted}))).into_response()
        }
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

async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], DASHBOARD_HTML).into_response()
}

async fn dashboard_config(State(monitor): State<Arc<Monitor>>) -> Response {
    axum::Json(monitor.config().clone()).into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
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
