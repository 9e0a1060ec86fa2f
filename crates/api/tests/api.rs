//! The router, driven in-process with `oneshot`, plus one test over a real socket for `serve`.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::routing::{get, post};
use hongbao_api::{
    ApiJson, ApiQuery, ApiState, BODY_LIMIT_BYTES, RouterOptions, router, router_with,
    with_common_layers, with_layers,
};
use hongbao_clock::{ManualClock, SystemClock};
use hongbao_domain::{Campaign, sign_ticket};
use hongbao_gateway::{MemoryRoleSource, RoleCache, RoleCacheConfig};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const SPRING: &str = include_str!("../../../config/spring-festival.toml");

/// A node's state over the shipped campaign, with a game side that knows no roles.
fn new_state() -> ApiState {
    let campaign = Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("campaign");
    let source = Arc::new(MemoryRoleSource::new());
    let roles = Arc::new(RoleCache::new(source, None, RoleCacheConfig::default()));
    ApiState::new(Arc::new(campaign), roles, SystemClock::shared())
}

fn state() -> ApiState {
    let state = new_state();
    state.set_ready(true);
    state
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(&name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header(header::CONTENT_TYPE), "application/json");
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Reply { status: parts.status, headers: parts.headers, body }
}

async fn get_with(app: &Router, uri: &str, headers: &[(header::HeaderName, &str)]) -> Reply {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    send(app, req.body(Body::empty()).expect("request")).await
}

async fn manifest(app: &Router) -> Value {
    let r = get_with(app, "/static/catalog/manifest.json", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

#[tokio::test]
async fn healthz_is_ok() {
    let app = router(state());
    let r = get_with(&app, "/healthz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(r.json(), json!({"status": "ok"}));
}

#[tokio::test]
async fn readiness_follows_the_flag() {
    let state = state();
    let app = router(state.clone());
    let r = get_with(&app, "/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["ready"], true);

    state.set_ready(false);
    get_with(&app, "/readyz", &[]).await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    // Liveness does not depend on readiness.
    assert_eq!(get_with(&app, "/healthz", &[]).await.status, StatusCode::OK);

    state.set_ready(true);
    assert_eq!(get_with(&app, "/readyz", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn new_state_starts_not_ready() {
    let app = router(new_state());
    get_with(&app, "/readyz", &[]).await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
}

#[tokio::test]
async fn manifest_names_the_served_version_with_cache_headers() {
    let state = state();
    let app = router(state.clone());
    let m = get_with(&app, "/static/catalog/manifest.json", &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.header(header::CACHE_CONTROL), "public, max-age=5");
    assert_eq!(m.header(header::CONTENT_TYPE), "application/json");
    let etag = m.header(header::ETAG);
    assert!(etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let m = m.json();
    assert_eq!(m["campaign_id"], "spring-2027");
    assert_eq!(m["version"], state.catalog.version());

    let name = m["files"]["json"].as_str().expect("json name");
    let r = get_with(&app, &format!("/static/catalog/{name}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CACHE_CONTROL), "public, max-age=31536000, immutable");
    assert_eq!(r.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(r.header(header::VARY), "accept-encoding");
    assert!(r.headers.get(header::CONTENT_ENCODING).is_none());
    assert!(r.header(header::ETAG).starts_with('"'));
    let catalog = r.json();
    assert_eq!(catalog["campaign_id"], "spring-2027");
    assert_eq!(catalog["gifts"][0]["id"], "lh-starter");
}

#[tokio::test]
async fn if_none_match_gives_304_without_a_body() {
    let app = router(state());
    let name = manifest(&app).await["files"]["json"].as_str().expect("name").to_string();
    let uri = format!("/static/catalog/{name}");
    let first = get_with(&app, &uri, &[]).await;
    let etag = first.header(header::ETAG).to_string();

    let again = get_with(&app, &uri, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header(header::ETAG), etag);
    assert_eq!(again.header(header::CACHE_CONTROL), "public, max-age=31536000, immutable");

    let other = get_with(&app, &uri, &[(header::IF_NONE_MATCH, "\"something-else\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, first.body);

    // The manifest revalidates the same way.
    let m = get_with(&app, "/static/catalog/manifest.json", &[]).await;
    let m_tag = m.header(header::ETAG).to_string();
    let m2 =
        get_with(&app, "/static/catalog/manifest.json", &[(header::IF_NONE_MATCH, &m_tag)]).await;
    assert_eq!(m2.status, StatusCode::NOT_MODIFIED);
    assert!(m2.body.is_empty());
}

#[tokio::test]
async fn accept_encoding_selects_precompressed_variants() {
    let app = router(state());
    let name = manifest(&app).await["files"]["json"].as_str().expect("name").to_string();
    let uri = format!("/static/catalog/{name}");
    let plain = get_with(&app, &uri, &[]).await;

    let br = get_with(&app, &uri, &[(header::ACCEPT_ENCODING, "gzip, deflate, br")]).await;
    assert_eq!(br.status, StatusCode::OK);
    assert_eq!(br.header(header::CONTENT_ENCODING), "br");
    assert_eq!(br.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(br.header(header::VARY), "accept-encoding");
    assert_ne!(br.header(header::ETAG), plain.header(header::ETAG), "one tag per variant");
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096).read_to_end(&mut decoded).expect("brotli");
    assert_eq!(decoded, plain.body);

    let gz = get_with(&app, &uri, &[(header::ACCEPT_ENCODING, "gzip")]).await;
    assert_eq!(gz.header(header::CONTENT_ENCODING), "gzip");
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_end(&mut decoded).expect("gzip");
    assert_eq!(decoded, plain.body);

    // A 304 for the br variant needs the br variant's tag.
    let br_tag = br.header(header::ETAG).to_string();
    let cached = get_with(
        &app,
        &uri,
        &[(header::ACCEPT_ENCODING, "br"), (header::IF_NONE_MATCH, br_tag.as_str())],
    )
    .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.header(header::VARY), "accept-encoding");
}

#[tokio::test]
async fn compressed_files_asked_for_directly_are_json_with_content_encoding() {
    let app = router(state());
    let m = manifest(&app).await;
    for (key, encoding) in [("br", "br"), ("gzip", "gzip")] {
        let name = m["files"][key].as_str().expect("name");
        // No Accept-Encoding: the client named the encoded file itself.
        let r = get_with(&app, &format!("/static/catalog/{name}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.header(header::CONTENT_TYPE), "application/json");
        assert_eq!(r.header(header::CONTENT_ENCODING), encoding);
        assert_eq!(r.header(header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        assert!(r.headers.get(header::VARY).is_none());
    }
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let app = router(state());
    for uri in [
        "/nope",
        // `/` is the campaign page (tests/page.rs); an empty page-file name is nothing.
        "/page/",
        "/static/catalog/",
        "/static/catalog",
        "/static/catalog/catalog.0000000000000000.json",
        "/static/catalog/manifest.json/extra",
    ] {
        get_with(&app, uri, &[]).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn traversal_attempts_are_404() {
    let app = router(state());
    for uri in [
        "/static/catalog/..",
        "/static/catalog/%2e%2e",
        "/static/catalog/%2E%2E",
        "/static/catalog/../../Cargo.toml",
        "/static/catalog/..%2f..%2fCargo.toml",
        "/static/catalog/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/static/catalog/.%2e/.%2e/etc/passwd",
        "/static/catalog/%2fetc%2fpasswd",
        "/static/catalog/..%5c..%5cCargo.toml",
        "/static/catalog/%ff%fe",
        "/static/catalog/manifest.json%00",
    ] {
        get_with(&app, uri, &[]).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let app = router(state());
    for (method, uri) in [
        (Method::POST, "/healthz"),
        (Method::DELETE, "/readyz"),
        (Method::PUT, "/static/catalog/manifest.json"),
    ] {
        let r = send(
            &app,
            Request::builder().method(method).uri(uri).body(Body::empty()).expect("request"),
        )
        .await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(r.header(header::ALLOW).contains("GET"), "{:?}", r.headers);
    }
}

#[tokio::test]
async fn head_is_answered_without_a_body() {
    let app = router(state());
    let r = send(
        &app,
        Request::head("/static/catalog/manifest.json").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert!(r.headers.contains_key(header::ETAG));
}

// --- ApiJson / ApiQuery on a tiny router with the same common layers ------------------------

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    name: String,
    count: u32,
}

fn probe_app() -> Router {
    let routes = Router::new()
        .route("/probe", post(|ApiJson(p): ApiJson<Probe>| async move { ApiJson(p) }))
        .route("/query", get(|ApiQuery(p): ApiQuery<Probe>| async move { ApiJson(p) }));
    with_common_layers(routes)
}

async fn post_json(app: &Router, content_type: Option<&str>, body: impl Into<Body>) -> Reply {
    let mut req = Request::post("/probe");
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    send(app, req.body(body.into()).expect("request")).await
}

#[tokio::test]
async fn api_json_accepts_a_good_body() {
    let app = probe_app();
    let r = post_json(&app, Some("application/json"), r#"{"name":"a","count":2}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"name": "a", "count": 2}));
}

#[tokio::test]
async fn api_json_maps_rejections_to_json_errors() {
    let app = probe_app();
    post_json(&app, Some("application/json"), r#"{"name":"a","count":"#)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    post_json(&app, Some("text/plain"), r#"{"name":"a","count":2}"#)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    post_json(&app, None, r#"{"name":"a","count":2}"#)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    post_json(&app, Some("application/json"), r#"{"name":"a","count":2,"extra":1}"#)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    post_json(&app, Some("application/json"), r#"{"name":"a","count":-1}"#)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    post_json(&app, Some("application/json"), r#"{"name":"a"}"#)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

/// Found by fuzzing (`fuzz/`, api_json): serde's derived structs also read a list of field
/// values by position; a body must be an object with named fields.
#[tokio::test]
async fn api_json_refuses_anything_but_an_object() {
    let app = probe_app();
    for body in [r#"["a",2]"#, "[]", r#""a""#, "2", "null"] {
        post_json(&app, Some("application/json"), body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
}

#[tokio::test]
async fn api_json_refuses_oversized_bodies() {
    let app = probe_app();
    // Valid JSON, just too big: the limit is checked before parsing.
    let big = format!(r#"{{"name":"{}","count":1}}"#, "x".repeat(BODY_LIMIT_BYTES));
    post_json(&app, Some("application/json"), big)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // Just under the limit still parses.
    let fits = format!(r#"{{"name":"{}","count":1}}"#, "x".repeat(BODY_LIMIT_BYTES - 100));
    assert_eq!(post_json(&app, Some("application/json"), fits).await.status, StatusCode::OK);
}

#[tokio::test]
async fn api_query_maps_rejections() {
    let app = probe_app();
    let ok = get_with(&app, "/query?name=a&count=3", &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json(), json!({"name": "a", "count": 3}));
    get_with(&app, "/query?name=a&count=lots", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    get_with(&app, "/query?name=a", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    // The common layers apply to any router built with them.
    get_with(&app, "/elsewhere", &[]).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = send(&app, Request::delete("/probe").body(Body::empty()).expect("request")).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

// --- serve -------------------------------------------------------------------------------------

#[tokio::test]
async fn serve_answers_over_tcp_and_shuts_down_gracefully() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hongbao_api::serve(listener, router(state()), async move {
        let _ = stop_rx.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

    stop_tx.send(()).expect("server still running");
    server.await.expect("server task").expect("serve result");
}

// --- readiness -----------------------------------------------------------------------------------

fn state_at(now_unix_s: i64) -> ApiState {
    let campaign = Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("campaign");
    let source = Arc::new(MemoryRoleSource::new());
    let roles = Arc::new(RoleCache::new(source, None, RoleCacheConfig::default()));
    let clock = ManualClock::new(u64::try_from(now_unix_s).expect("after 1970") * 1000);
    ApiState::new(Arc::new(campaign), roles, clock)
}

fn spring() -> Campaign {
    Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("campaign")
}

#[tokio::test]
async fn readiness_reports_each_part_and_waits_for_the_store() {
    let c = spring();
    let state = state_at(c.starts_at_unix_s - 60);
    let app = router(state.clone());
    let r = get_with(&app, "/readyz", &[]).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    let body = r.json();
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["campaign"], "not_open");
    assert_eq!(body["opens_at"], c.starts_at_unix_s);
    assert_eq!(body["ends_at"], c.ends_at_unix_s);
    assert_eq!(body["store"], "not_open");
    assert_eq!(body["profiles"], "none");
    assert_eq!(body["game_side"], "unknown");

    // Serving is not enough while the store is not open (as the app marks it).
    state.ready.store(true, std::sync::atomic::Ordering::Release);
    get_with(&app, "/readyz", &[]).await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    state.mark_store_open();
    let r = get_with(&app, "/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!((body["ready"].clone(), body["store"].clone()), (json!(true), json!("open")));
    assert!(body.get("error").is_none(), "{body}");

    // Loaded profiles are reported; the campaign's window follows the clock.
    let table = hongbao_domain::ProfileTable::empty(c.games.iter().map(|g| g.id.clone()).collect());
    let state = state_at(c.ends_at_unix_s).with_profiles(Arc::new(table));
    state.set_ready(true);
    let body = get_with(&router(state), "/readyz", &[]).await.json();
    assert_eq!(
        (body["profiles"].clone(), body["campaign"].clone()),
        (json!("loaded"), json!("closed"))
    );
}

// --- errors the HTTP stack produces, over a real connection -------------------------------------

/// An answer read off the wire: status, lower-cased headers and the body.
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"), "{:?}", self.headers);
        let body: Value = serde_json::from_str(&self.body).expect("a JSON body");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

/// Serves `app` on a free port; stops when the returned sender is dropped.
async fn serve_app(app: Router) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hongbao_api::serve(listener, app, async move {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx)
}

/// Writes `head` (request line and headers, without the blank line), `Connection: close` and
/// `body`, then reads the whole answer.
async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> Wire {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    conn.write_all(&request).await.expect("write");
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).await.expect("read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Wire { status: status.expect("a status line"), headers, body: body.to_string() }
}

fn ticket_for(user: u64) -> String {
    let c = spring();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    sign_ticket(&c.auth.ticket_keys[0], user, i64::try_from(now).expect("fits") - 10, 3600)
}

#[tokio::test]
async fn the_stacks_own_refusals_are_json_over_tcp() {
    let (addr, _stop) = serve_app(router(state())).await;
    let host = "Host: test";

    // 414: a request target over our limit, long before hyper's own.
    let long = format!("GET /healthz?pad={} HTTP/1.1\r\n{host}", "a".repeat(10 * 1024));
    raw(addr, &long, b"").await.assert_error(414, "uri_too_long");

    // 431: more header fields than we take (hyper alone refuses over 100, with no body).
    let many: String = (0..120).map(|i| format!("\r\nx-pad-{i}: {i}")).collect();
    raw(addr, &format!("GET /healthz HTTP/1.1\r\n{host}{many}"), b"")
        .await
        .assert_error(431, "headers_too_large");
    // … and a head too big in bytes.
    let big = format!("GET /healthz HTTP/1.1\r\n{host}\r\nx-big: {}", "b".repeat(20 * 1024));
    raw(addr, &big, b"").await.assert_error(431, "headers_too_large");

    // 400: a path segment whose percent-encoding is not UTF-8.
    let auth = format!("Authorization: Bearer {}", ticket_for(10_001));
    raw(addr, &format!("GET /v1/orders/%ff%fe HTTP/1.1\r\n{host}\r\n{auth}"), b"")
        .await
        .assert_error(400, "invalid_path");
    raw(addr, &format!("GET /v1/coupons/%c3%28/gifts HTTP/1.1\r\n{host}\r\n{auth}"), b"")
        .await
        .assert_error(400, "invalid_path");

    // 404, 405 (with Allow).
    raw(addr, &format!("GET /nope HTTP/1.1\r\n{host}"), b"").await.assert_error(404, "not_found");
    let r = raw(addr, &format!("DELETE /healthz HTTP/1.1\r\n{host}"), b"").await;
    r.assert_error(405, "method_not_allowed");
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")), "{:?}", r.headers);

    // 413: a body over the limit.
    let body = vec![b'x'; BODY_LIMIT_BYTES + 1];
    let head = format!(
        "POST /v1/coupons HTTP/1.1\r\n{host}\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    raw(addr, &head, &body).await.assert_error(413, "body_too_large");
}

#[tokio::test]
async fn heads_hyper_cannot_parse_are_refused_with_json_too() {
    let (addr, _stop) = serve_app(router(state())).await;

    // A request line that is not HTTP: hyper refuses it before any layer runs.
    raw(addr, "NOT A REQUEST LINE", b"").await.assert_error(400, "bad_request");
    raw(addr, "GET /healthz HTTP/9.9\r\nHost: test", b"").await.assert_error(400, "bad_request");
    // A header line without a colon.
    raw(addr, "GET /healthz HTTP/1.1\r\nHost: test\r\nno colon here", b"")
        .await
        .assert_error(400, "bad_request");

    // A head over hyper's whole buffer: hyper refuses it while still reading.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: test\r\nx-huge: {}",
        "h".repeat(hongbao_api::HYPER_BUF_MAX_BYTES + 1024)
    );
    raw(addr, &huge, b"").await.assert_error(431, "headers_too_large");

    // The connection-level wrapper leaves ordinary answers alone.
    let ok = raw(addr, "GET /healthz HTTP/1.1\r\nHost: test", b"").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn a_request_that_outlives_the_timeout_is_json_408_over_tcp() {
    // The handler never finishes, so the only possible answer is the timeout's.
    let routes = Router::new().route("/stuck", get(std::future::pending::<()>));
    let options = RouterOptions { request_timeout_ms: 50, ..RouterOptions::default() };
    let (addr, _stop) = serve_app(with_layers(routes, options)).await;
    raw(addr, "GET /stuck HTTP/1.1\r\nHost: test", b"").await.assert_error(408, "request_timeout");
}

#[tokio::test]
async fn a_plain_text_refusal_from_axum_is_rewritten_as_json() {
    // axum's own `Path` (not `ApiPath`) answers a bad segment in plain text.
    let routes = Router::new()
        .route(
            "/n/{n}",
            get(|axum::extract::Path(n): axum::extract::Path<u32>| async move { n.to_string() }),
        )
        .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }));
    let (addr, _stop) = serve_app(with_common_layers(routes)).await;
    raw(addr, "GET /n/seven HTTP/1.1\r\nHost: test", b"").await.assert_error(400, "bad_request");
    raw(addr, "GET /teapot HTTP/1.1\r\nHost: test", b"").await.assert_error(418, "request_refused");
    assert_eq!(raw(addr, "GET /n/7 HTTP/1.1\r\nHost: test", b"").await.body, "7");
}

// --- access log ----------------------------------------------------------------------------------

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn the_access_log_has_one_line_per_request_with_the_route_and_no_secrets() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let options = RouterOptions { access_log: true, ..RouterOptions::default() };
    let app = router_with(state(), options);
    let ticket = ticket_for(10_001);
    let secret_id = "0123456789abcdef0123456789abcdef";
    let r = get_with(
        &app,
        &format!("/v1/orders/{secret_id}"),
        &[(header::AUTHORIZATION, &format!("Bearer {ticket}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("UTF-8");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("hongbao::access")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains(" INFO "), "{line}");
    for field in ["method=GET", "route=/v1/orders/{order_id}", "status=404", "latency_ms="] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(!text.contains(&ticket) && !text.contains(secret_id), "{text}");

    // Off by default.
    let before = captured.0.lock().expect("lock").len();
    get_with(&router(state()), "/healthz", &[]).await;
    let after =
        String::from_utf8(captured.0.lock().expect("lock")[before..].to_vec()).expect("UTF-8");
    assert!(!after.contains("hongbao::access"), "{after}");
}
