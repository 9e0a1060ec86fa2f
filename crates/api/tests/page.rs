//! The campaign page's routes and the demo-only endpoints, in-process: the page and its hashed
//! assets with their cache headers, and `/demo/v1/…` present only when the demo turns it on.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use hongbao_api::{ApiState, RouterOptions, router, router_with};
use hongbao_clock::SystemClock;
use hongbao_domain::{Campaign, GameIndex, Role, RoleId, ZoneId};
use hongbao_gateway::{MemoryRoleSource, RoleCache, RoleCacheConfig};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const SPRING: &str = include_str!("../../../config/spring-festival.toml");

fn state_with(source: Arc<MemoryRoleSource>) -> ApiState {
    let campaign = Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("campaign");
    let roles = Arc::new(RoleCache::new(source, None, RoleCacheConfig::default()));
    ApiState::new(Arc::new(campaign), roles, SystemClock::shared())
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn call(app: &Router, method: Method, uri: &str, ticket: Option<&str>, body: &str) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = ticket {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let response =
        app.clone().oneshot(request.body(Body::from(body.to_owned())).expect("request")).await;
    let response = response.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    Reply { status, headers, body }
}

fn demo_router(state: ApiState) -> Router {
    router_with(state, RouterOptions { demo: true, ..RouterOptions::default() })
}

#[tokio::test]
async fn the_page_and_its_hashed_assets_are_served_with_fitting_cache_headers() {
    let app = router(state_with(Arc::new(MemoryRoleSource::new())));
    let page = call(&app, Method::GET, "/", None, "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(page.header(header::CACHE_CONTROL), "no-cache");
    assert!(page.header(header::CONTENT_SECURITY_POLICY).contains("default-src 'self'"));
    let html = String::from_utf8(page.body.clone()).expect("utf-8");
    for name in hongbao_api::routes::page::asset_names() {
        assert!(html.contains(&format!("/page/{name}")), "the page names {name}");
        let asset = call(&app, Method::GET, &format!("/page/{name}"), None, "").await;
        assert_eq!(asset.status, StatusCode::OK, "{name}");
        assert!(asset.header(header::CACHE_CONTROL).contains("immutable"), "{name}");
        assert!(!asset.body.is_empty());
    }
    let missing = call(&app, Method::GET, "/page/app.0000000000000000.js", None, "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_router_without_the_demo_option_has_no_demo_endpoints() {
    // `serve` builds its router with `demo: false` (apps/hongbao/src/node.rs).
    let app = router_with(
        state_with(Arc::new(MemoryRoleSource::new())),
        RouterOptions { demo: false, ..RouterOptions::default() },
    );
    for (method, uri, body) in [
        (Method::POST, "/demo/v1/ticket", r#"{"user":10000}"#),
        (Method::GET, "/demo/v1/roles?game=x", ""),
        (Method::POST, "/demo/v1/roles", r#"{"game":"x","zone_id":1}"#),
    ] {
        let reply = call(&app, method, uri, None, body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.json()["error"]["code"], "not_found", "{uri}");
    }
}

#[tokio::test]
async fn a_demo_ticket_signs_in_and_shows_only_the_callers_roles() {
    let source = Arc::new(MemoryRoleSource::new());
    let state = state_with(source.clone());
    let game = state.campaign.games[0].id.clone();
    let role =
        |id| Role { zone_id: ZoneId(3), region: "cn-east".into(), role_id: RoleId(id), level: 7 };
    source.set_roles(10_001, GameIndex(0), vec![role(77)]);
    source.set_roles(10_002, GameIndex(0), vec![role(88)]);
    let app = demo_router(state);

    let issued = call(&app, Method::POST, "/demo/v1/ticket", None, r#"{"user":10001}"#).await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let issued = issued.json();
    assert_eq!(issued["user"], "10001");
    let ticket = issued["ticket"].as_str().expect("a ticket");

    let orders = call(&app, Method::GET, "/v1/orders", Some(ticket), "").await;
    assert_eq!(orders.status, StatusCode::OK, "the demo ticket is accepted by the API");

    let uri = format!("/demo/v1/roles?game={game}");
    let roles = call(&app, Method::GET, &uri, Some(ticket), "").await;
    assert_eq!(roles.status, StatusCode::OK);
    let roles = roles.json();
    assert_eq!(roles["roles"].as_array().expect("roles").len(), 1);
    assert_eq!(roles["roles"][0]["role_id"], 77);
    assert_eq!(roles["zones"].as_array().expect("zones").len(), 8);

    let anonymous = call(&app, Method::GET, &uri, None, "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let unknown = call(&app, Method::GET, "/demo/v1/roles?game=nope", Some(ticket), "").await;
    assert_eq!(unknown.json()["error"]["code"], "game_not_found");
    let bad = call(&app, Method::POST, "/demo/v1/ticket", None, r#"{"user":-1}"#).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.json()["error"]["code"].is_string());
}

/// Every refusal a player can meet on the page's path (grab, list, roles, claim, order, sign-in)
/// has its own sentence in the page's script; anything else falls back to a generic one. The
/// codes are the ones `src/error.rs`, the routes and the domain's `code()` functions give.
#[test]
fn the_page_words_every_refusal_a_player_can_meet() {
    const SCRIPT: &str = include_str!("../assets/page/app.js");
    let codes = [
        // tickets (401)
        "missing_ticket",
        "malformed_ticket",
        "unknown_ticket_key",
        "forged_ticket",
        "expired_ticket",
        "ticket_not_yet_valid",
        // grab
        "unknown_channel",
        "coupon_limit_reached",
        "channel_budget_exhausted",
        // the campaign's window and waves (with opens_at), eligibility reasons
        "campaign_not_open",
        "wave_not_open",
        "campaign_closed",
        "not_eligible",
        "audience_mismatch",
        "login_not_fresh",
        "role_level_too_low",
        "region_not_allowed",
        "no_qualifying_role",
        "roles_unavailable",
        // coupons
        "malformed_coupon",
        "forged_coupon",
        "expired_coupon",
        "coupon_not_found",
        // claim
        "gift_not_found",
        "role_not_found",
        "game_side_unavailable",
        "coupon_already_redeemed",
        "out_of_stock",
        "limit_reached",
        "invalid_request",
        "store_unavailable",
        // orders, demo roles, the stack
        "order_not_found",
        "game_not_found",
        "role_not_created",
        "too_many_requests",
        "request_timeout",
        "unavailable",
        "internal",
    ];
    for code in codes {
        assert!(SCRIPT.contains(code), "app.js has no words for `{code}`");
    }
}
