//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hongbao_domain::Campaign;
use hongbao_domain::Role;
use hongbao_domain::campaign::GameIndex;
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_gamesim::SimConfig;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const SEED: u64 = 7;
pub const USERS: u64 = 5_000;

pub fn campaign() -> Campaign {
    Campaign::parse(
        include_str!("../../../../config/spring-festival.toml"),
        "spring-festival.toml",
        &|_| None,
    )
    .expect("the shipped campaign parses")
}

/// A fast, healthy simulator: no latency, no faults.
pub fn config() -> SimConfig {
    SimConfig {
        seed: SEED,
        users: USERS,
        role_latency_ms: 0,
        deliver_latency_ms: 0,
        ..SimConfig::default()
    }
}

pub fn model() -> SynthModel {
    SynthModel::new(SEED, USERS, campaign().games.len())
}

/// The `nth` synthetic user with a role in `game`, and that role.
pub fn user_with_role(game: u8, nth: usize) -> (u64, Role) {
    let m = model();
    (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .filter_map(|u| m.roles(u, GameIndex(game)).into_iter().next().map(|r| (u, r)))
        .nth(nth)
        .expect("enough users have a role")
}

pub fn delivery(serial: &str, user: u64, game: &str, role: &Role) -> Value {
    json!({
        "serial": serial,
        "user": user,
        "game": game,
        "zone_id": role.zone_id,
        "role_id": role.role_id,
        "items": [{"item": "gold", "count": 500}, {"item": "starter-chest", "count": 1}],
    })
}

/// Sends one request through the router and returns the status and the JSON body (every answer
/// of the simulator is JSON: a body that is not fails the test).
pub async fn call_raw(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a well-formed request");
    let response = app.clone().oneshot(request).await.expect("the router never fails");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("a readable body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{method} {uri}: {status}: body is not JSON ({e}): {bytes:?}"));
    (status, value)
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    call_raw(app, method, uri, &text).await
}

pub async fn deliver(app: &Router, body: Value) -> (StatusCode, Value) {
    call(app, "POST", "/idip/v1/deliver", Some(body)).await
}

pub async fn stats(app: &Router) -> Value {
    let (status, body) = call(app, "GET", "/idip/v1/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    body
}

/// Asserts an error answer: the status and `error.code`, and a non-empty message.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}
