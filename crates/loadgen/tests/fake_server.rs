//! The generator against an in-process fake of the API and the game side: real HTTP on
//! loopback, small rates, about a second each. Nothing here asserts an upper bound on time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hongbao_domain::Campaign;
use hongbao_loadgen::{
    LoadConfig, Profile, ReplayError, ReplayRequests, Report, Scenario, UserDist, run,
};
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    campaign: Option<Arc<Campaign>>,
    /// Each request sleeps this long before answering.
    delay: Duration,
    /// Every n-th grab (1-based) answers 409 `coupon_limit_reached`; 0 = never.
    grab_conflict_every: u64,
    /// Every n-th grab answers 503 with a plain-text body; 0 = never.
    grab_busy_every: u64,
    requests: AtomicU64,
    grabs: AtomicU64,
    concurrent: AtomicUsize,
    concurrent_max: AtomicUsize,
    coupons: Mutex<HashMap<String, u64>>,
    roles: Mutex<HashMap<(u64, String), u64>>,
    orders: Mutex<HashMap<String, u32>>,
    /// Every request as it arrived, before its handler ran.
    seen: Mutex<Vec<Seen>>,
}

/// A request as the fake received it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// Records the request in `seen`, then hands it on unchanged.
async fn record(State(f): Shared, request: Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let header =
        |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    f.seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or("", |p| p.as_str()).to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    next.run(Request::from_parts(parts, axum::body::Body::from(body))).await
}

type Shared = State<Arc<Fake>>;

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": code}}))).into_response()
}

impl Fake {
    /// Counts the request, tracks concurrency, sleeps the delay, checks the ticket.
    async fn enter(&self, headers: Option<&HeaderMap>) -> (Guard<'_>, Result<u64, Response>) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        self.concurrent_max.fetch_max(now, Ordering::SeqCst);
        let guard = Guard(self);
        tokio::time::sleep(self.delay).await;
        let user = match headers {
            None => Ok(0),
            Some(h) => self.user(h).map_err(|code| error(StatusCode::UNAUTHORIZED, code)),
        };
        (guard, user)
    }

    fn user(&self, headers: &HeaderMap) -> Result<u64, &'static str> {
        let campaign = self.campaign.as_ref().expect("campaign set");
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("missing_ticket")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        hongbao_domain::verify_ticket(&campaign.auth.ticket_keys, token, now, 86_400)
            .map(|t| t.user)
            .map_err(|e| e.code())
    }
}

struct Guard<'a>(&'a Fake);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.concurrent.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn grab(
    State(f): Shared,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let (_g, user) = f.enter(Some(&headers)).await;
    let user = match user {
        Ok(u) => u,
        Err(r) => return r,
    };
    let n = f.grabs.fetch_add(1, Ordering::SeqCst) + 1;
    if f.grab_conflict_every > 0 && n % f.grab_conflict_every == 0 {
        return error(StatusCode::CONFLICT, "coupon_limit_reached");
    }
    if f.grab_busy_every > 0 && n % f.grab_busy_every == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    let coupon = format!("c{n}.u{user}");
    f.coupons.lock().expect("lock").insert(coupon.clone(), user);
    let channel = body["channel"].as_str().unwrap_or("").to_string();
    (
        StatusCode::CREATED,
        axum::Json(json!({"coupon": coupon, "channel": channel, "serial": n, "expires_at": 0})),
    )
        .into_response()
}

async fn list(State(f): Shared, headers: HeaderMap, Path(coupon): Path<String>) -> Response {
    let (_g, user) = f.enter(Some(&headers)).await;
    let user = match user {
        Ok(u) => u,
        Err(r) => return r,
    };
    if f.coupons.lock().expect("lock").get(&coupon) != Some(&user) {
        return error(StatusCode::NOT_FOUND, "coupon_not_found");
    }
    let campaign = f.campaign.as_ref().expect("campaign set");
    let gift = &campaign.gifts[0];
    let game = &campaign.game(gift.game).id;
    axum::Json(json!({
        "catalog_version": "v-test",
        "gifts": [{"gift_id": gift.id, "game_id": game}],
        "degraded": false
    }))
    .into_response()
}

async fn claim(
    State(f): Shared,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let (_g, user) = f.enter(Some(&headers)).await;
    let user = match user {
        Ok(u) => u,
        Err(r) => return r,
    };
    let coupon = body["coupon"].as_str().unwrap_or("");
    if f.coupons.lock().expect("lock").get(coupon) != Some(&user) {
        return error(StatusCode::FORBIDDEN, "foreign_coupon");
    }
    let campaign = f.campaign.as_ref().expect("campaign set");
    let gift = &campaign.gifts[0];
    if body["gift_id"].as_str() != Some(gift.id.as_str()) {
        return error(StatusCode::FORBIDDEN, "not_eligible");
    }
    let game = campaign.game(gift.game).id.clone();
    let role = f.roles.lock().expect("lock").get(&(user, game)).copied();
    if role.is_none() || body["role_id"].as_u64() != role {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "role_not_found");
    }
    let order_id = format!("o-{coupon}");
    f.orders.lock().expect("lock").insert(order_id.clone(), 0);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"order_id": order_id, "status": "queued", "deliver_by": 0})),
    )
        .into_response()
}

/// An order is `queued` at its first poll and `delivered` from the second on.
async fn order(State(f): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_g, user) = f.enter(Some(&headers)).await;
    if let Err(r) = user {
        return r;
    }
    let mut orders = f.orders.lock().expect("lock");
    let Some(polls) = orders.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "order_not_found");
    };
    *polls += 1;
    let status = if *polls >= 2 { "delivered" } else { "queued" };
    axum::Json(json!({"order_id": id, "status": status})).into_response()
}

async fn roles(State(f): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let (_g, _) = f.enter(None).await;
    let user: u64 = q.get("user").and_then(|u| u.parse().ok()).unwrap_or(0);
    let game = q.get("game").cloned().unwrap_or_default();
    let roles: Vec<Value> = f
        .roles
        .lock()
        .expect("lock")
        .get(&(user, game))
        .map(|&id| json!({"zone_id": 1, "region": "cn-north", "role_id": id, "level": 1}))
        .into_iter()
        .collect();
    axum::Json(json!({ "roles": roles })).into_response()
}

async fn create_role(State(f): Shared, axum::Json(body): axum::Json<Value>) -> Response {
    let (_g, _) = f.enter(None).await;
    let user = body["user"].as_u64().unwrap_or(0);
    let game = body["game"].as_str().unwrap_or("").to_string();
    let zone = body["zone_id"].as_u64().unwrap_or(0);
    let role_id = user * 100 + zone;
    f.roles.lock().expect("lock").insert((user, game), role_id);
    (
        StatusCode::CREATED,
        axum::Json(json!({"zone_id": zone, "region": "cn-north", "role_id": role_id, "level": 1})),
    )
        .into_response()
}

/// Starts the fake on a free loopback port; the campaign's games point their IDIP at it.
async fn start(mut fake: Fake) -> (String, Arc<Fake>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/spring-festival.toml");
    let text = std::fs::read_to_string(path)
        .expect("read campaign")
        .replace("http://127.0.0.1:9100", &url);
    let campaign = Campaign::parse(&text, path, &|_| None).expect("parse campaign");
    fake.campaign = Some(Arc::new(campaign));
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/v1/coupons", post(grab))
        .route("/v1/coupons/{coupon}/gifts", get(list))
        .route("/v1/claims", post(claim))
        .route("/v1/orders/{id}", get(order))
        .route("/idip/v1/roles", get(roles).post(create_role))
        .layer(axum::middleware::from_fn_with_state(fake.clone(), record))
        .with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, fake)
}

fn config(url: &str, fake: &Fake, scenario: Scenario, rate: f64, duration_ms: u64) -> LoadConfig {
    let mut c = LoadConfig::new(
        url,
        fake.campaign.clone().expect("campaign set"),
        scenario,
        rate,
        Duration::from_millis(duration_ms),
    );
    c.users = 50;
    c.connections = 8;
    c.drain_timeout = Duration::from_secs(20);
    c
}

fn count(map: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

fn statuses_sum(r: &Report) -> u64 {
    r.statuses.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grab_counts_add_up_error_codes_are_tallied_and_json_has_the_fields() {
    let (url, fake) =
        start(Fake { grab_conflict_every: 4, grab_busy_every: 10, ..Fake::default() }).await;
    let mut c = config(&url, &fake, Scenario::Grab, 100.0, 1000);
    c.user_dist = UserDist::Zipf { s: 1.0 };
    let report = run(c).await.expect("run");

    assert_eq!(report.scheduled, 100);
    assert_eq!(report.started + report.dropped, report.scheduled);
    assert_eq!(report.abandoned, 0);
    // Every request the server saw is in exactly one status bucket, and vice versa.
    let seen = fake.requests.load(Ordering::SeqCst);
    assert_eq!(report.requests, seen);
    assert_eq!(statuses_sum(&report), seen);
    assert_eq!(report.requests, report.started);
    let (created, conflict, busy) = (
        count(&report.statuses, "201"),
        count(&report.statuses, "409"),
        count(&report.statuses, "503"),
    );
    assert_eq!(created + conflict + busy, report.requests);
    // Grabs 4, 8, 12, … conflict; 10, 30, 50, … are busy (20, 40, … conflicted first).
    assert_eq!(conflict, seen / 4);
    assert!(busy > 0);
    assert_eq!(count(&report.error_codes, "coupon_limit_reached"), conflict);
    assert_eq!(count(&report.error_codes, "none"), busy);
    assert_eq!(count(&report.outcomes, "ok"), created);
    assert_eq!(count(&report.outcomes, "grab_failed"), conflict + busy);
    let grab = &report.endpoints["grab"];
    assert_eq!(grab.requests, seen);
    assert_eq!(grab.latency.count, seen);
    assert!(report.p99_ms >= report.p50_ms);
    assert!(report.achieved_rps > 0.0);

    let json = serde_json::to_value(&report).expect("serialize");
    for field in [
        "achieved_rps",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "offered_rps",
        "rate_per_s",
        "duration_s",
        "dropped",
    ] {
        assert!(json[field].is_number(), "`{field}` missing in {json}");
    }
    assert_eq!(json["scenario"], "grab");
    assert_eq!(json["statuses"]["409"], conflict);
    assert_eq!(json["error_codes"]["coupon_limit_reached"], conflict);
    assert_eq!(json["duration_s"], 1.0);
    let table = report.table();
    assert!(table.contains("coupon_limit_reached"), "{table}");
    assert!(table.contains("p99.9"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_claims_with_a_created_role_and_measures_time_to_delivered() {
    let (url, fake) = start(Fake::default()).await;
    let mut c = config(&url, &fake, Scenario::Journey, 20.0, 1000);
    c.users = 5;
    c.user_dist = UserDist::Sequential;
    c.poll_interval = Duration::from_millis(50);
    let report = run(c).await.expect("run");

    assert_eq!(report.scheduled, 20);
    assert_eq!(report.dropped, 0);
    assert_eq!(report.abandoned, 0);
    assert_eq!(statuses_sum(&report), fake.requests.load(Ordering::SeqCst));
    for endpoint in ["grab", "list", "claim"] {
        assert_eq!(report.endpoints[endpoint].requests, 20, "{endpoint}");
    }
    // The fake accepts a claim only with the role it created for that user in that game.
    assert_eq!(count(&report.endpoints["claim"].statuses, "202"), 20);
    let created = report.endpoints["idip_create_role"].requests;
    assert!((5..=20).contains(&created), "created {created} roles");
    // Each order is delivered at its second poll.
    assert_eq!(count(&report.outcomes, "delivered"), 20);
    assert_eq!(report.endpoints["order"].requests, 40);
    let delivered = report.time_to_delivered.as_ref().expect("journey reports delivery");
    assert_eq!(delivered.count, 20);
    assert!(delivered.p50_ms >= 100.0, "two polls 50 ms apart: {delivered:?}");
    assert_eq!(report.primary_endpoint, "claim");
    assert_eq!(report.iteration.count, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_grabs_once_per_user_then_lists() {
    let (url, fake) = start(Fake::default()).await;
    let mut c = config(&url, &fake, Scenario::List, 20.0, 1000);
    c.users = 2;
    c.user_dist = UserDist::Sequential;
    // One iteration at a time: a user's later iteration always sees its first grab's coupon.
    c.max_in_flight = 1;
    c.profile = Profile::Spike;
    let report = run(c).await.expect("run");

    let lists = report.endpoints["list"].requests;
    let grabs = report.endpoints["grab"].requests;
    assert_eq!(lists, report.started);
    assert!((1..=2).contains(&grabs), "{grabs} grabs for two users");
    assert_eq!(count(&report.endpoints["list"].statuses, "200"), lists);
    assert_eq!(report.primary_endpoint, "list");
    assert_eq!(report.profile, "spike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_latency_counts_from_the_intended_send_time() {
    let delay = Duration::from_millis(100);
    let (url, fake) = start(Fake { delay, ..Fake::default() }).await;
    let mut c = config(&url, &fake, Scenario::Grab, 20.0, 1000);
    c.connections = 1;
    let report = run(c).await.expect("run");

    assert_eq!(report.requests, 20);
    assert!(report.p50_ms >= 100.0, "{report:?}");
    // One connection, 100 ms each: the 20 requests need at least 2 s, so the last answered was
    // due by 0.95 s and waited at least 1.05 s. A closed-loop client would report ~100 ms.
    assert!(report.max_ms >= 1000.0, "max {} ms", report.max_ms);
    assert!(fake.concurrent_max.load(Ordering::SeqCst) <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_drops_instead_of_queueing() {
    let (url, fake) = start(Fake { delay: Duration::from_millis(300), ..Fake::default() }).await;
    let mut c = config(&url, &fake, Scenario::Grab, 50.0, 1000);
    c.max_in_flight = 3;
    let report = run(c).await.expect("run");

    assert_eq!(report.scheduled, 50);
    assert_eq!(report.started + report.dropped, 50);
    // 15 iterations come due in the first 300 ms, while at most 3 can run.
    assert!(report.dropped >= 12, "dropped {}", report.dropped);
    assert_eq!(report.requests, report.started);
    assert!(fake.concurrent_max.load(Ordering::SeqCst) <= 3);
    assert_eq!(json_dropped(&report), report.dropped);
}

fn json_dropped(r: &Report) -> u64 {
    serde_json::to_value(r).expect("serialize")["dropped"].as_u64().expect("dropped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_not_lost() {
    let (_, fake) = start(Fake::default()).await;
    // A port that was free a moment ago and has no listener now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let mut c = config(&url, &fake, Scenario::Grab, 10.0, 500);
    c.warmup = Duration::from_millis(200);
    let report = run(c).await.expect("run");

    assert_eq!(report.scheduled, 5, "warm-up iterations are not counted");
    assert_eq!(count(&report.statuses, "connect_error"), 5);
    assert_eq!(statuses_sum(&report), 5);
    assert_eq!(count(&report.outcomes, "grab_failed"), 5);
    assert_eq!(report.achieved_rps, 0.0);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 0);
}

/// A ticket for `user` signed with the campaign's first key, as the login service would issue.
fn ticket(fake: &Fake, user: u64) -> String {
    let campaign = fake.campaign.as_ref().expect("campaign set");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    hongbao_domain::sign_ticket(&campaign.auth.ticket_keys[0], user, now, 3600)
}

/// A file in the temp directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("hongbao-loadgen-{}-{name}.tsv", std::process::id()));
        std::fs::write(&path, text).expect("write the requests file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn replay_config(
    url: &str,
    fake: &Fake,
    requests: ReplayRequests,
    rate: f64,
    ms: u64,
) -> LoadConfig {
    let mut c = config(url, fake, Scenario::Replay, rate, ms);
    c.requests = Some(Arc::new(requests));
    // One request at a time on the wire, so they arrive in the order they were due.
    c.connections = 1;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_every_line_once_in_file_order() {
    let (url, fake) = start(Fake::default()).await;
    let user = |i: u64| hongbao_domain::synth::FIRST_USER_ID + i;
    let claim_body = |i: u64| {
        format!(r#"{{"coupon":"never-granted-{i}","gift_id":"g","zone_id":1,"role_id":{i}}}"#)
    };
    // (line, what the fake must see): claim lines (the `bench claims` form), a grab, a list of
    // the coupon that grab gets, an order poll without a ticket, a blank and a CRLF line.
    let mut lines = Vec::new();
    let mut want = Vec::new();
    let seen = |method: &str, path: &str, auth: Option<&str>, body: &str| Seen {
        method: method.into(),
        path: path.into(),
        authorization: auth.map(|t| format!("Bearer {t}")),
        content_type: (!body.is_empty()).then(|| "application/json".into()),
        body: body.into(),
    };
    let grabber = ticket(&fake, user(0));
    lines.push(format!("POST\t/v1/coupons\t{grabber}\t{{\"channel\":\"swipe\"}}"));
    want.push(seen("POST", "/v1/coupons", Some(&grabber), r#"{"channel":"swipe"}"#));
    let list = format!("/v1/coupons/c1.u{}/gifts", user(0));
    lines.push(format!("GET\t{list}\t{grabber}\t"));
    want.push(seen("GET", &list, Some(&grabber), ""));
    lines.push("GET\t/v1/orders/o-1?x=1\t-\t".to_string());
    want.push(seen("GET", "/v1/orders/o-1?x=1", None, ""));
    lines.push(String::new());
    for i in 1..=7 {
        let t = ticket(&fake, user(i));
        let body = claim_body(i);
        lines.push(format!("{t}\t{body}{}", if i == 3 { "\r" } else { "" }));
        want.push(seen("POST", "/v1/claims", Some(&t), &body));
    }
    let file = TempFile::new("in-order", &(lines.join("\n") + "\n"));
    let requests = ReplayRequests::load(&file.0).expect("load the requests");
    assert_eq!(requests.len(), 10);

    // 10 requests due at 20/s over 0.5 s: exactly the file.
    let report = run(replay_config(&url, &fake, requests, 20.0, 500)).await.expect("run");

    assert_eq!(*fake.seen.lock().expect("lock"), want);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 10);
    assert_eq!(report.scenario, "replay");
    assert_eq!((report.scheduled, report.started, report.dropped), (10, 10, 0));
    assert_eq!(report.requests, 10);
    assert_eq!(report.primary_endpoint, "replay");
    assert_eq!(report.endpoints.keys().collect::<Vec<_>>(), ["replay"]);
    assert_eq!(report.endpoints["replay"].latency.count, 10);
    // Grab 201, list 200, order without ticket 401, claims of coupons never granted 403.
    for (status, n) in [("201", 1), ("200", 1), ("401", 1), ("403", 7)] {
        assert_eq!(count(&report.statuses, status), n, "{status}: {:?}", report.statuses);
    }
    assert_eq!(count(&report.error_codes, "missing_ticket"), 1);
    assert_eq!(count(&report.error_codes, "foreign_coupon"), 7);
    assert_eq!(count(&report.outcomes, "ok"), 2);
    assert_eq!(count(&report.outcomes, "replay_failed"), 8);
    assert!(report.p99_ms >= report.p50_ms);
    let replay = report.replay.as_ref().expect("replay section");
    assert_eq!((replay.lines, replay.lines_used, replay.not_sent), (10, 10, 0));
    assert_eq!(replay.ran_out_at_s, None);
    let json = serde_json::to_value(&report).expect("serialize");
    assert_eq!(json["replay"]["not_sent"], 0);
    assert_eq!(json["endpoints"]["replay"]["statuses"]["403"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_short_file_stops_scheduling_and_reports_what_was_not_sent() {
    let (url, fake) = start(Fake::default()).await;
    let text: String =
        (0..5).map(|i| format!("{}\t{{\"coupon\":\"c{i}\"}}\n", ticket(&fake, 1000 + i))).collect();
    let requests = ReplayRequests::parse("short.tsv", text).expect("parse");
    let mut c = replay_config(&url, &fake, requests, 20.0, 1000);
    c.warmup = Duration::from_millis(100);
    assert_eq!(c.planned_iterations().expect("valid"), 22);
    let report = run(c).await.expect("run");

    // 2 lines went to the warm-up, 3 to the measured window; 17 of the 22 due were not sent.
    assert_eq!(fake.requests.load(Ordering::SeqCst), 5);
    assert_eq!(fake.seen.lock().expect("lock").len(), 5);
    assert_eq!(report.scheduled, 3);
    assert_eq!(report.requests, 3);
    let replay = report.replay.as_ref().expect("replay section");
    assert_eq!((replay.lines, replay.lines_used, replay.not_sent), (5, 5, 17));
    assert!(replay.ran_out_at_s.is_some());
    assert_eq!(serde_json::to_value(&report).expect("serialize")["replay"]["not_sent"], 17);
    let table = report.table();
    assert!(table.contains("17 scheduled requests not sent"), "{table}");
    assert!(table.contains("requests from short.tsv"), "{table}");
}

#[test]
fn replay_files_with_malformed_lines_are_refused_with_the_line_number() {
    let good = "tk\t{\"coupon\":\"c\"}\n";
    let file = TempFile::new("malformed", &format!("{good}{good}\nPOST\t/v1/coupons\ttk\n{good}"));
    let err = ReplayRequests::load(&file.0).expect_err("refused");
    assert!(matches!(err, ReplayError::Malformed { line: 4, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("{} line 4", file.0.display())), "{message}");

    let err = ReplayRequests::parse("x", "tk\tnot json\n").expect_err("refused");
    assert!(err.to_string().contains("x line 1: body is not JSON"), "{err}");
    let missing = std::env::temp_dir().join("hongbao-loadgen-no-such-file.tsv");
    assert!(matches!(ReplayRequests::load(&missing), Err(ReplayError::Read { .. })));
}

#[tokio::test]
async fn replay_needs_its_requests_and_other_scenarios_refuse_them() {
    let (url, fake) = start(Fake::default()).await;
    let c = config(&url, &fake, Scenario::Replay, 10.0, 100);
    assert!(run(c).await.is_err(), "replay without requests");
    let mut c = config(&url, &fake, Scenario::Grab, 10.0, 100);
    c.requests = Some(Arc::new(ReplayRequests::parse("x", "tk\t{}\n").expect("parse")));
    assert!(run(c).await.is_err(), "grab with requests");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 0);
}

/// Against a running node: `HONGBAO_LOAD_TARGET=http://127.0.0.1:8080 cargo test -p
/// hongbao-loadgen -- --ignored live` (scenario from `HONGBAO_LOAD_SCENARIO`, default grab;
/// rate from `HONGBAO_LOAD_RATE`, default 200/s; the campaign file's games must point at the node's game side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running hongbao node"]
async fn live_target_smoke() {
    let Ok(target) = std::env::var("HONGBAO_LOAD_TARGET") else { return };
    let scenario = match std::env::var("HONGBAO_LOAD_SCENARIO").as_deref() {
        Ok("list") => Scenario::List,
        Ok("claim") => Scenario::Claim,
        Ok("journey") => Scenario::Journey,
        _ => Scenario::Grab,
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/spring-festival.toml");
    let text = std::fs::read_to_string(path).expect("campaign file");
    let campaign = Campaign::parse(&text, path, &|_| None).expect("campaign");
    let rate =
        std::env::var("HONGBAO_LOAD_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(200.0);
    let mut c = LoadConfig::new(target, Arc::new(campaign), scenario, rate, Duration::from_secs(2));
    c.users = 10_000;
    c.drain_timeout = Duration::from_secs(5);
    let report = run(c).await.expect("run");
    eprintln!("{}", report.table());
    assert_eq!(statuses_sum(&report), report.requests);
}

/// Replays to a plain `http://` target go over the generator's own connections (not reqwest's):
/// a refused connection and an answer later than the request timeout are still counted, each
/// request once, and the run still ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_failures_on_its_own_connections_are_counted() {
    let (url, fake) = start(Fake { delay: Duration::from_millis(400), ..Fake::default() }).await;
    let text: String =
        (0..4).map(|i| format!("{}\t{{\"coupon\":\"c{i}\"}}\n", ticket(&fake, 1000 + i))).collect();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let requests = ReplayRequests::parse("refused.tsv", text.clone()).expect("parse");
    let report = run(replay_config(&closed, &fake, requests, 20.0, 200)).await.expect("run");
    assert_eq!(count(&report.statuses, "connect_error"), 4, "{:?}", report.statuses);
    assert_eq!(statuses_sum(&report), 4);
    assert_eq!(count(&report.outcomes, "replay_failed"), 4);

    let requests = ReplayRequests::parse("slow.tsv", text).expect("parse");
    let mut c = replay_config(&url, &fake, requests, 20.0, 200);
    c.connections = 4;
    c.request_timeout = Duration::from_millis(100);
    let report = run(c).await.expect("run");
    assert_eq!(count(&report.statuses, "timeout"), 4, "{:?}", report.statuses);
    assert_eq!(statuses_sum(&report), 4);
    assert_eq!(report.endpoints["replay"].latency.count, 4, "timeouts are timed");
    assert_eq!(count(&report.outcomes, "replay_failed"), 4);
}

/// A server that closes every connection after its answer, without saying so (no
/// `Connection: close`): each replayed line still gets exactly one answer, on a new connection
/// when the old one is gone, and none reaches the server twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_over_connections_the_server_closes_sends_each_line_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let server_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = server_seen.clone();
            tokio::spawn(async move {
                // One request (head and a Content-Length body), one answer, then close.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    seen.lock().expect("lock").push(text[end + 4..end + 4 + length].to_string());
                    break;
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    let (_, fake) = start(Fake::default()).await;
    let bodies: Vec<String> = (0..20).map(|i| format!("{{\"coupon\":\"c{i}\"}}")).collect();
    let text: String = bodies.iter().map(|b| format!("{}\t{b}\n", ticket(&fake, 1000))).collect();
    let requests = ReplayRequests::parse("closing.tsv", text).expect("parse");
    let report = run(replay_config(&url, &fake, requests, 200.0, 100)).await.expect("run");

    assert_eq!(count(&report.statuses, "200"), 20, "{:?}", report.statuses);
    assert_eq!(count(&report.outcomes, "ok"), 20);
    assert_eq!(*seen.lock().expect("lock"), bodies, "each line once, in order");
}
