//! The HTTP contract, through the router (no sockets). Tests that depend on the clock run on
//! tokio's paused clock, so capacity windows, outages and hangs are exact, not timed.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use hongbao_domain::campaign::GameIndex;
use hongbao_domain::synth::{FIRST_USER_ID, region_of_zone};
use hongbao_gamesim::{GameSim, LogRecord, Outage, SimConfig, SimError};
use serde_json::{Value, json};
use tokio::task::JoinSet;

#[tokio::test]
async fn roles_agree_with_the_synthetic_model_for_the_same_seed() {
    let sim = GameSim::new(&campaign(), config()).unwrap();
    let app = sim.router();
    let m = model();
    let games = campaign().games;
    let mut queries = 0u64;
    let mut non_empty = 0;
    for user in FIRST_USER_ID..FIRST_USER_ID + 200 {
        for g in &games {
            let uri = format!("/idip/v1/roles?user={user}&game={}", g.id);
            let (status, body) = call(&app, "GET", &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let expected = m.roles(user, g.index);
            non_empty += usize::from(!expected.is_empty());
            assert_eq!(body, json!({"roles": expected}), "user {user} game {}", g.id);
            queries += 1;
        }
    }
    assert!(non_empty > 100, "the sample should hold many registered users: {non_empty}");
    let s = stats(&app).await;
    assert_eq!(s["role_queries"], queries);
    assert_eq!(s["games"]["lantern-heroes"]["role_queries"], 200);
    assert_eq!(sim.stats().role_queries, queries);
}

#[tokio::test]
async fn a_user_registered_nowhere_gets_an_empty_list() {
    let app = GameSim::new(&campaign(), config()).unwrap().router();
    let m = model();
    let in_range_nowhere = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .find(|&u| m.profile(u).registered.is_empty())
        .unwrap();
    for user in [in_range_nowhere, FIRST_USER_ID + USERS, 1, u64::MAX] {
        for game in ["lantern-heroes", "silk-road-tycoon"] {
            let uri = format!("/idip/v1/roles?user={user}&game={game}");
            assert_eq!(call(&app, "GET", &uri, None).await, (StatusCode::OK, json!({"roles": []})));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn role_queries_take_the_configured_latency() {
    let config = SimConfig { role_latency_ms: 30, ..config() };
    let app = GameSim::new(&campaign(), config).unwrap().router();
    let started = tokio::time::Instant::now();
    let (status, _) = call(&app, "GET", "/idip/v1/roles?user=10000&game=sky-castle", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn a_created_role_shows_in_queries_and_receives_deliveries() {
    let sim = GameSim::new(&campaign(), config()).unwrap();
    let app = sim.router();
    let user = FIRST_USER_ID + USERS + 17; // outside the model: a brand-new player
    let create = json!({"user": user, "game": "cloud-kingdom", "zone_id": 3});
    let (status, role) = call(&app, "POST", "/idip/v1/roles", Some(create.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let expected_id = model().created_role_id(user, GameIndex(1), 3, 0);
    assert_eq!(
        role,
        json!({"zone_id": 3, "region": region_of_zone(3).unwrap(), "role_id": expected_id, "level": 1})
    );

    let (_, listed) =
        call(&app, "GET", &format!("/idip/v1/roles?user={user}&game=cloud-kingdom"), None).await;
    assert_eq!(listed, json!({"roles": [role.clone()]}));
    // Other games are untouched.
    let (_, other) =
        call(&app, "GET", &format!("/idip/v1/roles?user={user}&game=lantern-heroes"), None).await;
    assert_eq!(other, json!({"roles": []}));

    // A second role in the same zone gets a different id, and both are listed.
    let (status, second) = call(&app, "POST", "/idip/v1/roles", Some(create.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(second["role_id"], role["role_id"]);
    let (_, listed) =
        call(&app, "GET", &format!("/idip/v1/roles?user={user}&game=cloud-kingdom"), None).await;
    assert_eq!(listed["roles"].as_array().unwrap().len(), 2);

    let body = json!({
        "serial": "o-new-1", "user": user, "game": "cloud-kingdom", "zone_id": 3,
        "role_id": role["role_id"], "items": [{"item": "gold", "count": 600}],
    });
    assert_eq!(deliver(&app, body).await, (StatusCode::OK, json!({"result": "applied"})));

    // The per-user bound on created roles.
    for _ in 2..hongbao_gamesim::CREATED_ROLES_PER_USER_ZONE_MAX {
        let (status, _) = call(&app, "POST", "/idip/v1/roles", Some(create.clone())).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let refused = call(&app, "POST", "/idip/v1/roles", Some(create)).await;
    assert_error(&refused, StatusCode::CONFLICT, "too_many_roles");
}

#[tokio::test]
async fn bad_query_parameters_are_400_with_a_code() {
    let app = GameSim::new(&campaign(), config()).unwrap().router();
    let cases = [
        ("/idip/v1/roles", "invalid_user"),
        ("/idip/v1/roles?game=sky-castle", "invalid_user"),
        ("/idip/v1/roles?user=abc&game=sky-castle", "invalid_user"),
        ("/idip/v1/roles?user=-5&game=sky-castle", "invalid_user"),
        ("/idip/v1/roles?user=0&game=sky-castle", "invalid_user"),
        ("/idip/v1/roles?user=18446744073709551616&game=sky-castle", "invalid_user"),
        ("/idip/v1/roles?user=10000", "invalid_game"),
        ("/idip/v1/roles?user=10000&game=no-such-game", "unknown_game"),
        ("/idip/v1/roles?user=10000&game=sky-castle&zone=1", "invalid_query"),
    ];
    for (uri, code) in cases {
        let got = call(&app, "GET", uri, None).await;
        assert_error(&got, StatusCode::BAD_REQUEST, code);
    }
    // None of them reached the game.
    assert_eq!(stats(&app).await["role_queries"], 0);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json_errors() {
    let app = GameSim::new(&campaign(), config()).unwrap().router();
    assert_error(&call(&app, "GET", "/nope", None).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &call(&app, "POST", "/idip/v1/nope", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    for (method, uri) in
        [("GET", "/idip/v1/deliver"), ("DELETE", "/idip/v1/roles"), ("POST", "/idip/v1/stats")]
    {
        let got = call(&app, method, uri, None).await;
        assert_error(&got, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    assert_eq!(
        call(&app, "GET", "/healthz", None).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_with_distinct_codes() {
    let app = GameSim::new(&campaign(), config()).unwrap().router();
    let (user, role) = user_with_role(0, 0);
    let good = delivery("o-1", user, "lantern-heroes", &role);
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let role_cases = [
        ("not json", "invalid_body"),
        ("", "invalid_body"),
        (r#"{"user":10000,"game":"sky-castle"}"#, "invalid_body"),
        (r#"{"user":10000,"game":"sky-castle","zone_id":1,"extra":1}"#, "invalid_body"),
        (r#"{"user":"10000","game":"sky-castle","zone_id":1}"#, "invalid_body"),
        (r#"{"user":10000,"game":"sky-castle","zone_id":0}"#, "invalid_zone"),
        (r#"{"user":10000,"game":"sky-castle","zone_id":9}"#, "invalid_zone"),
        (r#"{"user":10000,"game":"sky-castle","zone_id":70000}"#, "invalid_zone"),
        (r#"{"user":0,"game":"sky-castle","zone_id":1}"#, "invalid_user"),
        (r#"{"user":10000,"game":"nope","zone_id":1}"#, "unknown_game"),
    ];
    for (body, code) in role_cases {
        let got = call_raw(&app, "POST", "/idip/v1/roles", body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, code);
    }
    let deliver_cases = [
        (with("extra", json!(1)), "invalid_body"),
        (with("items", json!([{"item": "gold", "count": 1, "x": 1}])), "invalid_body"),
        (with("role_id", json!(-1)), "invalid_body"),
        (with("serial", json!("")), "invalid_serial"),
        (with("serial", json!("a".repeat(129))), "invalid_serial"),
        (with("serial", json!("a\nb")), "invalid_serial"),
        (with("game", json!("nope")), "unknown_game"),
        (with("zone_id", json!(0)), "invalid_zone"),
        (with("user", json!(0)), "invalid_user"),
        (with("items", json!([])), "invalid_items"),
        (with("items", json!([{"item": "gold", "count": 0}])), "invalid_items"),
        (with("items", json!([{"item": "", "count": 1}])), "invalid_items"),
    ];
    for (body, code) in deliver_cases {
        let got = deliver(&app, body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, code);
    }
    let huge = format!(r#"{{"serial":"{}"}}"#, "x".repeat(100_000));
    let got = call_raw(&app, "POST", "/idip/v1/deliver", &huge).await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // None of them counted as a delivery, and the good one still applies.
    let s = stats(&app).await;
    assert_eq!(s["games"]["lantern-heroes"]["errors"], 0);
    assert_eq!(deliver(&app, good).await, (StatusCode::OK, json!({"result": "applied"})));
}

#[tokio::test]
async fn the_same_serial_applies_once_per_game() {
    let sim = GameSim::new(&campaign(), config()).unwrap();
    let app = sim.router();
    let (user, role) = user_with_role(0, 0);
    let body = delivery("order-1", user, "lantern-heroes", &role);
    assert_eq!(deliver(&app, body.clone()).await, (StatusCode::OK, json!({"result": "applied"})));
    assert_eq!(deliver(&app, body.clone()).await, (StatusCode::OK, json!({"result": "duplicate"})));
    assert_eq!(deliver(&app, body).await, (StatusCode::OK, json!({"result": "duplicate"})));
    // The key is (game, serial): the same serial in another game is another delivery.
    let (user2, role2) = user_with_role(1, 0);
    let other = delivery("order-1", user2, "cloud-kingdom", &role2);
    assert_eq!(deliver(&app, other).await, (StatusCode::OK, json!({"result": "applied"})));

    let s = sim.stats();
    let lh = &s.games["lantern-heroes"];
    assert_eq!((lh.applied, lh.duplicates, lh.busy, lh.errors, lh.lost), (1, 2, 0, 0, 0));
    assert_eq!(lh.max_applied_in_1s, 1);
    assert_eq!(s.games["cloud-kingdom"].applied, 1);
    assert_eq!(s.games["sky-castle"].applied, 0);
    assert_eq!(serde_json::to_value(&s).unwrap(), stats(&app).await);
}

#[tokio::test]
async fn a_role_that_does_not_exist_is_a_permanent_error() {
    let sim = GameSim::new(&campaign(), config()).unwrap();
    let app = sim.router();
    let (user, role) = user_with_role(2, 0);
    let mut wrong_id = role.clone();
    wrong_id.role_id.0 ^= 1;
    let mut wrong_zone = role.clone();
    wrong_zone.zone_id.0 = role.zone_id.0 % 8 + 1;
    let not_registered = FIRST_USER_ID + USERS + 1;
    for (serial, user, role) in
        [("a", user, &wrong_id), ("b", user, &wrong_zone), ("c", not_registered, &role)]
    {
        let got = deliver(&app, delivery(serial, user, "dragon-boat-rush", role)).await;
        assert_eq!(got, (StatusCode::OK, json!({"result": "error", "reason": "role_not_found"})));
    }
    let s = &sim.stats().games["dragon-boat-rush"];
    assert_eq!((s.applied, s.errors), (0, 3));
}

#[tokio::test(start_paused = true)]
async fn capacity_holds_in_every_one_second_window() {
    // silk-road-tycoon: 200/s × 0.025 = 5/s.
    let config = SimConfig { capacity_scale: 0.025, ..config() };
    let sim = GameSim::new(&campaign(), config).unwrap();
    let app = sim.router();
    let (user, role) = user_with_role(9, 0);
    let fire = |from: usize, count: usize| {
        let mut set = JoinSet::new();
        for i in from..from + count {
            let app = app.clone();
            let body = delivery(&format!("o-{i}"), user, "silk-road-tycoon", &role);
            set.spawn(async move { deliver(&app, body).await });
        }
        set
    };
    let count = |results: &[(StatusCode, Value)], what: &str| {
        results.iter().filter(|(s, b)| *s == StatusCode::OK && b["result"] == what).count()
    };

    let results = fire(0, 15).join_all().await;
    assert_eq!((count(&results, "applied"), count(&results, "busy")), (5, 10), "{results:?}");
    let s = &sim.stats().games["silk-road-tycoon"];
    assert_eq!((s.capacity_per_s, s.applied, s.busy, s.max_applied_in_1s), (5, 5, 10, 5));

    // 999 ms later the window is still full; at 1 s it frees.
    tokio::time::advance(Duration::from_millis(999)).await;
    let results = fire(100, 1).join_all().await;
    assert_eq!(count(&results, "busy"), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    let results = fire(200, 7).join_all().await;
    assert_eq!((count(&results, "applied"), count(&results, "busy")), (5, 2));
    let s = &sim.stats().games["silk-road-tycoon"];
    assert_eq!((s.applied, s.busy, s.max_applied_in_1s), (10, 13, 5));
    // Another game's window is its own.
    assert_eq!(sim.stats().games["lantern-heroes"].busy, 0);
}

#[tokio::test]
async fn error_rate_one_fails_every_delivery_and_applies_nothing() {
    let config = SimConfig { error_rate: 1.0, ..config() };
    let sim = GameSim::new(&campaign(), config).unwrap();
    let app = sim.router();
    let (user, role) = user_with_role(3, 0);
    let body = delivery("o-err", user, "starfall-arena", &role);
    for _ in 0..5 {
        let got = deliver(&app, body.clone()).await;
        assert_eq!(got, (StatusCode::OK, json!({"result": "error", "reason": "injected_error"})));
    }
    let s = &sim.stats().games["starfall-arena"];
    assert_eq!((s.applied, s.duplicates, s.errors), (0, 0, 5));

    // Faults change at runtime; the failed serial was never applied, so it applies now.
    let (status, settings) =
        call(&app, "POST", "/idip/v1/faults", Some(json!({"error_rate": 0.0}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["error_rate"], 0.0);
    assert_eq!(deliver(&app, body).await, (StatusCode::OK, json!({"result": "applied"})));
}

#[tokio::test]
async fn fault_settings_are_validated() {
    let sim = GameSim::new(&campaign(), config()).unwrap();
    let app = sim.router();
    let (status, before) = call(&app, "GET", "/idip/v1/faults", None).await;
    assert_eq!(status, StatusCode::OK);
    for body in [
        json!({"error_rate": 1.5}),
        json!({"timeout_rate": -0.1}),
        json!({"lose_rate": 2}),
        json!({"error_rate": 0.5, "role_latency_ms": 10_000_000}),
    ] {
        let got = call(&app, "POST", "/idip/v1/faults", Some(body)).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_faults");
    }
    for body in [r#"{"bogus":1}"#, r#"{"error_rate":"high"}"#, "[]"] {
        let got = call_raw(&app, "POST", "/idip/v1/faults", body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_body");
    }
    // All or nothing: the refused updates changed nothing.
    assert_eq!(call(&app, "GET", "/idip/v1/faults", None).await, (StatusCode::OK, before));
    let (_, after) = call(
        &app,
        "POST",
        "/idip/v1/faults",
        Some(json!({"timeout_rate": 0.25, "deliver_latency_ms": 5})),
    )
    .await;
    assert_eq!(
        (after["timeout_rate"].as_f64(), after["deliver_latency_ms"].as_u64()),
        (Some(0.25), Some(5))
    );
    assert_eq!(sim.faults().timeout_rate, 0.25);
}

#[tokio::test(start_paused = true)]
async fn outages_answer_503_inside_their_window_only() {
    let config = SimConfig {
        outages: vec![
            "silk-road-tycoon:0:60".parse().unwrap(),
            Outage { game: "cloud-kingdom".into(), start_s: 10, duration_s: 5 },
        ],
        ..config()
    };
    let sim = GameSim::new(&campaign(), config).unwrap();
    let app = sim.router();
    let (u9, r9) = user_with_role(9, 0);
    let (u1, r1) = user_with_role(1, 0);
    let down = (StatusCode::SERVICE_UNAVAILABLE, json!({"result": "error", "reason": "outage"}));
    let applied = (StatusCode::OK, json!({"result": "applied"}));

    assert_eq!(deliver(&app, delivery("s-1", u9, "silk-road-tycoon", &r9)).await, down);
    assert_eq!(deliver(&app, delivery("c-1", u1, "cloud-kingdom", &r1)).await, applied);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(deliver(&app, delivery("c-2", u1, "cloud-kingdom", &r1)).await, down);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(deliver(&app, delivery("c-2", u1, "cloud-kingdom", &r1)).await, applied);
    tokio::time::advance(Duration::from_secs(45)).await;
    assert_eq!(deliver(&app, delivery("s-1", u9, "silk-road-tycoon", &r9)).await, applied);

    let s = sim.stats();
    assert_eq!((s.games["cloud-kingdom"].applied, s.games["cloud-kingdom"].errors), (2, 1));
    assert_eq!((s.games["silk-road-tycoon"].applied, s.games["silk-road-tycoon"].errors), (1, 1));
}

#[tokio::test]
async fn a_lost_delivery_is_acknowledged_but_recorded_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("game.jsonl");
    let config = SimConfig { lose_rate: 1.0, log_path: Some(log_path.clone()), ..config() };
    let sim = GameSim::new(&campaign(), config).unwrap();
    let app = sim.router();
    let (user, role) = user_with_role(4, 0);
    let body = delivery("o-lost", user, "ink-warriors", &role);
    assert_eq!(deliver(&app, body.clone()).await, (StatusCode::OK, json!({"result": "applied"})));
    let s = &sim.stats().games["ink-warriors"];
    assert_eq!((s.applied, s.lost), (0, 1));
    assert_eq!(std::fs::read_to_string(&log_path).unwrap(), "");

    // The game forgot it: a resend (what reconciliation does) is applied, not a duplicate.
    call(&app, "POST", "/idip/v1/faults", Some(json!({"lose_rate": 0.0}))).await;
    assert_eq!(deliver(&app, body.clone()).await, (StatusCode::OK, json!({"result": "applied"})));
    assert_eq!(deliver(&app, body).await, (StatusCode::OK, json!({"result": "duplicate"})));
    let s = &sim.stats().games["ink-warriors"];
    assert_eq!((s.applied, s.lost, s.duplicates), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_hangs_and_then_may_or_may_not_have_applied() {
    let config = SimConfig { timeout_rate: 1.0, timeout_hang_ms: 2000, ..config() };
    let sim = GameSim::new(&campaign(), config).unwrap();
    let app = sim.router();
    let (user, role) = user_with_role(5, 0);
    let started = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for i in 0..20 {
        let app = app.clone();
        let body = delivery(&format!("t-{i}"), user, "mahjong-palace", &role);
        set.spawn(async move { (i, deliver(&app, body).await) });
    }
    let results = set.join_all().await;
    assert!(started.elapsed() >= Duration::from_millis(2000), "the hang is virtual, but real");

    let timed_out = json!({"result": "error", "reason": "timeout"});
    let applied: Vec<usize> =
        results.iter().filter(|(_, (_, b))| b["result"] == "applied").map(|(i, _)| *i).collect();
    let failed: Vec<usize> =
        results.iter().filter(|(_, (_, b))| *b == timed_out).map(|(i, _)| *i).collect();
    assert_eq!(applied.len() + failed.len(), 20, "{results:?}");
    assert!(!applied.is_empty() && !failed.is_empty(), "both halves of the coin: {results:?}");
    let s = &sim.stats().games["mahjong-palace"];
    assert_eq!((s.applied, s.errors), (applied.len() as u64, failed.len() as u64));

    // The caller's retry tells it which: applied ones are duplicates, the others apply now.
    call(&app, "POST", "/idip/v1/faults", Some(json!({"timeout_rate": 0.0}))).await;
    for (i, expected) in
        applied.iter().map(|i| (i, "duplicate")).chain(failed.iter().map(|i| (i, "applied")))
    {
        let got = deliver(&app, delivery(&format!("t-{i}"), user, "mahjong-palace", &role)).await;
        assert_eq!(got.1["result"], expected, "t-{i}");
    }
}

#[tokio::test]
async fn the_log_survives_a_restart_and_turns_repeats_into_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("game.jsonl");
    let config = SimConfig { log_path: Some(log_path.clone()), ..config() };
    let (user, role) = user_with_role(6, 0);
    let first = delivery("order-a", user, "sky-castle", &role);
    let second = delivery("order-b", user, "sky-castle", &role);
    {
        let sim = GameSim::new(&campaign(), config.clone()).unwrap();
        let app = sim.router();
        assert_eq!(deliver(&app, first.clone()).await.1, json!({"result": "applied"}));
        assert_eq!(deliver(&app, first.clone()).await.1, json!({"result": "duplicate"}));
    }

    let text = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<LogRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "{text}");
    let r = &records[0];
    assert_eq!(
        (r.serial.as_str(), r.game.as_str(), r.user, r.zone_id, r.role_id),
        ("order-a", "sky-castle", user, role.zone_id.0, role.role_id.0)
    );
    assert_eq!(serde_json::to_value(&r.items).unwrap(), first["items"]);
    assert!(r.applied_at_ms > 1_700_000_000_000, "{}", r.applied_at_ms);

    let sim = GameSim::new(&campaign(), config).unwrap();
    let app = sim.router();
    assert_eq!(sim.stats().games["sky-castle"].replayed, 1);
    assert_eq!(deliver(&app, first).await.1, json!({"result": "duplicate"}));
    assert_eq!(deliver(&app, second).await.1, json!({"result": "applied"}));
    assert_eq!(std::fs::read_to_string(&log_path).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn created_roles_survive_a_restart_with_a_role_log() {
    let dir = tempfile::tempdir().unwrap();
    let roles_log = dir.path().join("roles.jsonl");
    let config = SimConfig { roles_log_path: Some(roles_log.clone()), ..config() };
    let user = FIRST_USER_ID + USERS + 99; // a brand-new player
    let create = json!({"user": user, "game": "cloud-kingdom", "zone_id": 3});
    let list = format!("/idip/v1/roles?user={user}&game=cloud-kingdom");
    let first = {
        let sim = GameSim::new(&campaign(), config.clone()).unwrap();
        let (status, role) =
            call(&sim.router(), "POST", "/idip/v1/roles", Some(create.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{role}");
        role
    };

    let sim = GameSim::new(&campaign(), config.clone()).unwrap();
    let app = sim.router();
    let (_, listed) = call(&app, "GET", &list, None).await;
    assert_eq!(listed, json!({"roles": [first.clone()]}));
    // The restarted simulator delivers to it, and a second role continues the zone's numbering.
    let body = json!({
        "serial": "o-restart-1", "user": user, "game": "cloud-kingdom", "zone_id": 3,
        "role_id": first["role_id"], "items": [{"item": "gold", "count": 1}],
    });
    assert_eq!(deliver(&app, body).await, (StatusCode::OK, json!({"result": "applied"})));
    let (status, second) = call(&app, "POST", "/idip/v1/roles", Some(create)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["role_id"], json!(model().created_role_id(user, GameIndex(1), 3, 1)));
    assert_eq!(std::fs::read_to_string(&roles_log).unwrap().lines().count(), 2);

    // A line that names no game of the campaign is corruption, not a role.
    std::fs::write(&roles_log, "{\"game\":\"nope\",\"user\":1,\"zone_id\":3,\"role_id\":5}\n")
        .unwrap();
    let refused = GameSim::new(&campaign(), config).unwrap_err();
    assert!(matches!(refused, SimError::LogCorrupt { line: 1, .. }), "{refused}");
}

#[tokio::test]
async fn replay_drops_a_torn_last_line_and_refuses_a_corrupt_middle() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("game.jsonl");
    let (user, role) = user_with_role(7, 0);
    let good = LogRecord {
        serial: "kept".into(),
        game: "moon-rabbit-run".into(),
        user,
        zone_id: role.zone_id.0,
        role_id: role.role_id.0,
        items: vec![hongbao_gamesim::DeliveryItem { item: "gem".into(), count: 55 }],
        applied_at_ms: 1_800_000_000_000,
    };
    let line = serde_json::to_string(&good).unwrap();
    std::fs::write(&log_path, format!("{line}\n{{\"serial\":\"torn\",\"ga")).unwrap();

    let config = SimConfig { log_path: Some(log_path.clone()), ..config() };
    {
        let sim = GameSim::new(&campaign(), config.clone()).unwrap();
        let app = sim.router();
        assert_eq!(sim.stats().games["moon-rabbit-run"].replayed, 1);
        let kept = delivery("kept", user, "moon-rabbit-run", &role);
        assert_eq!(deliver(&app, kept).await.1, json!({"result": "duplicate"}));
        let torn = delivery("torn", user, "moon-rabbit-run", &role);
        assert_eq!(deliver(&app, torn).await.1, json!({"result": "applied"}));
    }
    // The torn bytes were cut off, so the new line starts cleanly and every line parses.
    let text = std::fs::read_to_string(&log_path).unwrap();
    let serials: Vec<String> =
        text.lines().map(|l| serde_json::from_str::<LogRecord>(l).unwrap().serial).collect();
    assert_eq!(serials, ["kept", "torn"]);
    assert_eq!(
        GameSim::new(&campaign(), config.clone()).unwrap().stats().games["moon-rabbit-run"]
            .replayed,
        2
    );

    // Garbage before the end is corruption, not a torn write: refuse to start.
    std::fs::write(&log_path, format!("not json\n{line}\n")).unwrap();
    let err = GameSim::new(&campaign(), config.clone()).unwrap_err();
    assert!(matches!(err, SimError::LogCorrupt { line: 1, .. }), "{err}");
    // So is a record for a game the campaign does not have.
    let stranger = line.replace("moon-rabbit-run", "no-such-game");
    std::fs::write(&log_path, format!("{line}\n{stranger}\n")).unwrap();
    let err = GameSim::new(&campaign(), config).unwrap_err();
    assert!(matches!(err, SimError::LogCorrupt { line: 2, .. }), "{err}");
}

#[test]
fn invalid_configurations_are_refused() {
    let campaign = campaign();
    let cases = [
        SimConfig { error_rate: 1.5, ..config() },
        SimConfig { timeout_rate: -0.1, ..config() },
        SimConfig { lose_rate: f64::NAN, ..config() },
        SimConfig { capacity_scale: 0.0, ..config() },
        SimConfig { capacity_scale: -1.0, ..config() },
        SimConfig { capacity_scale: f64::INFINITY, ..config() },
        SimConfig { role_latency_ms: 10_000_000, ..config() },
        SimConfig { outages: vec!["no-such-game:0:10".parse().unwrap()], ..config() },
    ];
    for config in cases {
        let err = GameSim::new(&campaign, config.clone()).unwrap_err();
        assert!(matches!(err, SimError::InvalidConfig { .. }), "{config:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing_dir =
        SimConfig { log_path: Some(dir.path().join("no/such/dir.jsonl")), ..config() };
    assert!(matches!(GameSim::new(&campaign, missing_dir), Err(SimError::LogIo { .. })));
}

#[tokio::test]
async fn stats_name_every_game_with_every_counter() {
    let config = SimConfig { capacity_scale: 0.5, ..config() };
    let app = GameSim::new(&campaign(), config).unwrap().router();
    let s = stats(&app).await;
    let games = s["games"].as_object().unwrap();
    let ids: Vec<String> = campaign().games.iter().map(|g| g.id.clone()).collect();
    assert_eq!(
        games.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
        ids.into_iter().collect()
    );
    for (id, g) in games {
        for field in
            ["applied", "duplicates", "busy", "errors", "lost", "max_applied_in_1s", "role_queries"]
        {
            assert_eq!(g[field], 0, "{id}.{field}");
        }
    }
    assert_eq!(games["lantern-heroes"]["capacity_per_s"], 450);
    assert_eq!(games["silk-road-tycoon"]["capacity_per_s"], 100);
    assert_eq!(s["role_queries"], 0);
}
