//! The client against tiny axum servers that answer each case of the contract (and break it).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hongbao_domain::campaign::Item;
use hongbao_domain::{Campaign, GameIndex, Role, RoleId, ZoneId};
use serde_json::{Value, json};

use super::*;

/// Long enough that a handler sleeping [`HANG_MS`] always trips it, short enough for a quick test.
const TIMEOUT_MS: u64 = 50;
/// A handler that "hangs" sleeps this long; the test never waits for it.
const HANG_MS: u64 = 10_000;

fn campaign(url: &str, timeout_ms: u64) -> Campaign {
    let text = include_str!("../../../../config/spring-festival.toml");
    let mut campaign = Campaign::parse(text, "spring-festival.toml", &|_| None).unwrap();
    for g in &mut campaign.games {
        g.idip_url = url.to_string();
        g.idip_timeout_ms = timeout_ms;
    }
    campaign
}

/// A test server on an ephemeral port, stopped when dropped.
struct TestServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(router: Router) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    TestServer { url, task }
}

async fn client_for(router: Router, timeout_ms: u64) -> (IdipClient, TestServer) {
    let server = serve(router).await;
    let client = IdipClient::new(&campaign(&server.url, timeout_ms)).unwrap();
    (client, server)
}

fn role(zone_id: u16, role_id: u64) -> Role {
    Role {
        zone_id: ZoneId(zone_id),
        region: "cn-north".to_string(),
        role_id: RoleId(role_id),
        level: 12,
    }
}

fn delivery(serial: &str) -> DeliveryRequest {
    DeliveryRequest {
        serial: serial.to_string(),
        user: 10_001,
        game: GameIndex(1),
        zone_id: ZoneId(3),
        role_id: RoleId(77),
        items: vec![Item { item: "gold".to_string(), count: 100 }],
    }
}

/// The (user, game) query parameters a test server received.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test]
async fn query_roles_sends_user_and_game_id_and_parses_the_list() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route(
            "/idip/v1/roles",
            get(
                |State(seen): State<Seen>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let user = q.get("user").cloned().unwrap_or_default();
                    let game = q.get("game").cloned().unwrap_or_default();
                    seen.lock().unwrap().push((user.clone(), game));
                    if user == "10001" {
                        Json(json!({"roles": [
                            {"zone_id": 1, "region": "cn-north", "role_id": 5, "level": 12},
                            {"zone_id": 2, "region": "cn-north", "role_id": 6, "level": 12,
                             "extra": "ignored"}
                        ]}))
                    } else {
                        Json(json!({"roles": []}))
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let (client, _server) = client_for(router, 1_000).await;

    let roles = client.query_roles(10_001, GameIndex(2)).await.unwrap();
    assert_eq!(roles, vec![role(1, 5), role(2, 6)]);
    assert_eq!(client.query_roles(10_002, GameIndex(0)).await.unwrap(), vec![]);

    let c = campaign("http://127.0.0.1:1", 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("10001".to_string(), c.games[2].id.clone()),
            ("10002".to_string(), c.games[0].id.clone())
        ]
    );
}

#[tokio::test]
async fn a_slow_game_side_is_a_timeout() {
    let hang = || async {
        tokio::time::sleep(Duration::from_millis(HANG_MS)).await;
        Json(json!({"roles": []}))
    };
    let router = Router::new()
        .route("/idip/v1/roles", get(hang).post(hang))
        .route("/idip/v1/deliver", post(hang));
    let (client, _server) = client_for(router, TIMEOUT_MS).await;

    let expected = |game: usize| GatewayError::Timeout {
        game: campaign("http://127.0.0.1:1", 1).games[game].id.clone(),
        timeout_ms: TIMEOUT_MS,
    };
    assert_eq!(client.query_roles(10_001, GameIndex(0)).await.unwrap_err(), expected(0));
    assert_eq!(client.create_role(10_001, GameIndex(0), ZoneId(1)).await.unwrap_err(), expected(0));
    assert_eq!(client.deliver(&delivery("s-1")).await.unwrap_err(), expected(1));
}

#[tokio::test]
async fn a_503_is_unavailable() {
    let down = || async {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"result": "error", "reason": "outage"})))
    };
    let router = Router::new()
        .route("/idip/v1/roles", get(down).post(down))
        .route("/idip/v1/deliver", post(down));
    let (client, _server) = client_for(router, 1_000).await;

    let err = client.query_roles(10_001, GameIndex(0)).await.unwrap_err();
    assert!(matches!(&err, GatewayError::Unavailable { reason, .. } if reason.contains("503")));
    assert!(err.is_transient());
    let err = client.create_role(10_001, GameIndex(0), ZoneId(1)).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable { .. }), "{err}");
    let err = client.deliver(&delivery("s-1")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = IdipClient::new(&campaign(&url, 1_000)).unwrap();

    let err = client.query_roles(10_001, GameIndex(0)).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable { .. }), "{err}");
    let err = client.deliver(&delivery("s-1")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn bodies_outside_the_contract_are_protocol_errors() {
    let router = Router::new()
        .route(
            "/idip/v1/roles",
            get(|| async { "{\"roles\": [ not json" })
                .post(|| async { (StatusCode::CREATED, Json(json!({"zone_id": "one"}))) }),
        )
        .route("/idip/v1/deliver", post(|| async { "<html>oops</html>" }));
    let (client, _server) = client_for(router, 1_000).await;

    let err = client.query_roles(10_001, GameIndex(0)).await.unwrap_err();
    assert!(matches!(err, GatewayError::Protocol { .. }), "{err}");
    assert!(!err.is_transient());
    let err = client.create_role(10_001, GameIndex(0), ZoneId(1)).await.unwrap_err();
    assert!(matches!(err, GatewayError::Protocol { .. }), "{err}");
    let err = client.deliver(&delivery("s-1")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Protocol { .. }), "{err}");
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read_whole() {
    let big = "x".repeat(RESPONSE_BYTES_MAX + 1);
    let router = Router::new().route("/idip/v1/roles", get(move || async move { big }));
    let (client, _server) = client_for(router, 1_000).await;

    let err = client.query_roles(10_001, GameIndex(0)).await.unwrap_err();
    assert!(
        matches!(&err, GatewayError::Protocol { reason, .. } if reason.contains("bytes")),
        "{err}"
    );
}

#[tokio::test]
async fn create_role_returns_the_role_or_the_games_reason() {
    let router = Router::new().route(
        "/idip/v1/roles",
        post(|Json(body): Json<Value>| async move {
            if body["zone_id"] == json!(9) {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": {"code": "invalid_zone", "message": "not in 1..=8"}})),
                )
                    .into_response();
            }
            let zone = body["zone_id"].as_u64().unwrap_or(0);
            let answer = json!({"zone_id": zone, "region": "cn-north", "role_id": 42, "level": 1,
                                "echo_user": body["user"], "echo_game": body["game"]});
            (StatusCode::CREATED, Json(answer)).into_response()
        }),
    );
    let (client, _server) = client_for(router, 1_000).await;

    let created = client.create_role(10_001, GameIndex(0), ZoneId(4)).await.unwrap();
    assert_eq!(
        created,
        Role { zone_id: ZoneId(4), region: "cn-north".into(), role_id: RoleId(42), level: 1 }
    );
    let err = client.create_role(10_001, GameIndex(0), ZoneId(9)).await.unwrap_err();
    assert_eq!(
        err,
        GatewayError::Rejected {
            game: campaign("http://127.0.0.1:1", 1).games[0].id.clone(),
            status: 400,
            reason: "invalid_zone: not in 1..=8".to_string(),
        }
    );
}

/// The server answers according to the serial, so one server covers every outcome.
async fn deliver_by_serial(Json(body): Json<Value>) -> Response {
    let ok = |v: Value| (StatusCode::OK, Json(v)).into_response();
    match body["serial"].as_str().unwrap_or("") {
        "applied" => ok(json!({"result": "applied"})),
        "duplicate" => ok(json!({"result": "duplicate"})),
        "busy" => ok(json!({"result": "busy"})),
        "gone-role" => ok(json!({"result": "error", "reason": "role_not_found"})),
        "flaky" => ok(json!({"result": "error", "reason": "injected_error"})),
        "explicit" => {
            ok(json!({"result": "error", "reason": "role_not_found", "permanent": false}))
        }
        "no-reason" => ok(json!({"result": "error"})),
        "weird" => ok(json!({"result": "maybe"})),
        "bad-items" => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "invalid_items", "message": "empty"}})),
        )
            .into_response(),
        "throttled" => StatusCode::TOO_MANY_REQUESTS.into_response(),
        "store-full" => (
            StatusCode::INSUFFICIENT_STORAGE,
            Json(json!({"result": "error", "reason": "serial_store_full"})),
        )
            .into_response(),
        "echo" => {
            let expected = json!({"serial": "echo", "user": 10_001, "game": body["game"],
                "zone_id": 3, "role_id": 77, "items": [{"item": "gold", "count": 100}]});
            if body == expected && body["game"].is_string() {
                ok(json!({"result": "applied"}))
            } else {
                ok(json!({"result": "error", "reason": format!("unexpected body {body}")}))
            }
        }
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

#[tokio::test]
async fn delivery_answers_map_to_outcomes() {
    let router = Router::new().route("/idip/v1/deliver", post(deliver_by_serial));
    let (client, _server) = client_for(router, 1_000).await;

    let error = |reason: &str, permanent: bool| DeliveryOutcome::Error {
        reason: reason.to_string(),
        permanent,
    };
    let cases = [
        ("applied", DeliveryOutcome::Applied),
        ("duplicate", DeliveryOutcome::Duplicate),
        ("busy", DeliveryOutcome::Busy),
        ("gone-role", error("role_not_found", true)),
        ("flaky", error("injected_error", false)),
        ("explicit", error("role_not_found", false)),
        ("no-reason", error("unspecified", false)),
        ("bad-items", error("invalid_items: empty", true)),
        ("throttled", DeliveryOutcome::Busy),
        ("echo", DeliveryOutcome::Applied),
    ];
    for (serial, expected) in cases {
        assert_eq!(client.deliver(&delivery(serial)).await.unwrap(), expected, "serial {serial}");
    }

    let err = client.deliver(&delivery("weird")).await.unwrap_err();
    assert!(matches!(&err, GatewayError::Protocol { reason, .. } if reason.contains("maybe")));
    let err = client.deliver(&delivery("store-full")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable { .. }), "{err}");
    // Any other refusal of the delivery itself is permanent; the reason names the status.
    assert_eq!(client.deliver(&delivery("teapot")).await.unwrap(), error("status 418", true));
}

#[tokio::test]
async fn a_wrong_path_is_not_a_permanent_delivery_failure() {
    let router = Router::new();
    let (client, _server) = client_for(router, 1_000).await;
    let err = client.deliver(&delivery("s-1")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Rejected { status: 404, .. }), "{err}");
}

#[tokio::test]
async fn an_index_outside_the_campaign_is_an_error_not_a_panic() {
    let client = IdipClient::new(&campaign("http://127.0.0.1:1", 1_000)).unwrap();
    let outside = GameIndex(u8::try_from(client.games()).unwrap());
    assert_eq!(
        client.query_roles(1, outside).await.unwrap_err(),
        GatewayError::UnknownGame(outside)
    );
    let mut request = delivery("s-1");
    request.game = outside;
    assert_eq!(client.deliver(&request).await.unwrap_err(), GatewayError::UnknownGame(outside));
}
