//! Claims and orders through the real router: accepted, replayed, conflicts, idempotency keys,
//! every refusal — and that a refusal changes nothing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use hongbao_domain::synth::FIRST_USER_ID;
use hongbao_domain::{GiftIndex, Role};
use serde_json::{Value, json};

on_both_backends!(
    a_claim_is_accepted_queued_and_visible_to_its_owner_only,
    the_same_claim_again_is_the_same_order_and_another_gift_conflicts,
    idempotency_keys_replay_the_first_answer_and_refuse_another_body,
    stock_runs_out_exactly_and_the_list_stops_offering_it,
    the_per_user_limit_of_a_gift_holds,
    refusals_are_typed_and_change_nothing,
    the_list_of_a_redeemed_coupon_is_its_order,
    the_list_leaves_out_a_gift_whose_per_user_limit_is_reached,
    a_claim_before_the_campaign_opens_says_when_it_does,
);

/// A user with a role in `game_id` (from the synthetic model), and that role.
fn user_with_role(h: &Harness, game_id: &str, skip: usize) -> (u64, Role) {
    let game = h.campaign.game_by_id(game_id).unwrap().index;
    (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .filter_map(|u| h.model.roles(u, game).first().cloned().map(|r| (u, r)))
        .nth(skip)
        .unwrap()
}

async fn coupon(h: &Harness, user: u64) -> String {
    let (status, body) = h.grab(user, "swipe").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["coupon"].as_str().unwrap().to_string()
}

async fn claim(h: &Harness, user: u64, body: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::post("/v1/claims")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.ticket(user)));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    h.call(request.body(Body::from(body.to_string())).unwrap()).await
}

fn body(coupon: &str, gift: &str, role: &Role) -> Value {
    json!({ "coupon": coupon, "gift_id": gift, "zone_id": role.zone_id, "role_id": role.role_id })
}

async fn get(h: &Harness, user: u64, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {}", h.ticket(user)))
        .body(Body::empty())
        .unwrap();
    h.call(request).await
}

fn taken(h: &Harness, gift: &str) -> u64 {
    h.claims.stock_taken(h.campaign.gift_by_id(gift).unwrap().index)
}

async fn a_claim_is_accepted_queued_and_visible_to_its_owner_only(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 0);
    let c = coupon(&h, user).await;
    let (status, answer) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "queued");
    let order_id = answer["order_id"].as_str().unwrap();
    assert_eq!(order_id.len(), 32);
    assert_eq!(answer["deliver_by"], (h.now() as u64) * 1000 + 48 * 3600 * 1000);
    assert_eq!(taken(&h, "ck-lucky"), 1);

    let (status, order) = get(&h, user, &format!("/v1/orders/{order_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["status"], "queued");
    assert_eq!(order["gift_id"], "ck-lucky");
    assert_eq!(order["game_id"], "cloud-kingdom");
    assert_eq!(order["zone_id"], role.zone_id.to_string());
    let (status, list) = get(&h, user, "/v1/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["orders"][0]["order_id"], order_id);

    let (status, other) = get(&h, user + 1, &format!("/v1/orders/{order_id}")).await;
    assert_eq!((status, code(&other)), (StatusCode::NOT_FOUND, "order_not_found"));
    let (status, bad) = get(&h, user, "/v1/orders/not-an-order").await;
    assert_eq!((status, code(&bad)), (StatusCode::NOT_FOUND, "order_not_found"));
}

async fn the_same_claim_again_is_the_same_order_and_another_gift_conflicts(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 1);
    let c = coupon(&h, user).await;
    let (first, a) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
    assert_eq!(first, StatusCode::ACCEPTED);
    let (again, b) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
    assert_eq!(again, StatusCode::OK);
    assert_eq!(a["order_id"], b["order_id"]);
    let (status, conflict) = claim(&h, user, body(&c, "ck-festival", &role), None).await;
    assert_eq!((status, code(&conflict)), (StatusCode::CONFLICT, "coupon_already_redeemed"));
    assert_eq!(taken(&h, "ck-lucky"), 1);
    assert_eq!(taken(&h, "ck-festival"), 0);
}

async fn idempotency_keys_replay_the_first_answer_and_refuse_another_body(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 2);
    let c1 = coupon(&h, user).await;
    let c2 = coupon(&h, user).await;
    let (s1, a) = claim(&h, user, body(&c1, "ck-lucky", &role), Some("key-1")).await;
    let (s2, b) = claim(&h, user, body(&c1, "ck-lucky", &role), Some("key-1")).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED), "{a} {b}");
    assert_eq!(a, b);
    let (status, reused) = claim(&h, user, body(&c2, "ck-lucky", &role), Some("key-1")).await;
    assert_eq!((status.as_u16(), code(&reused)), (422, "idempotency_key_reused"));
    assert_eq!(taken(&h, "ck-lucky"), 1);
    let (status, bad) = claim(&h, user, body(&c2, "ck-lucky", &role), Some("")).await;
    assert_eq!((status, code(&bad)), (StatusCode::BAD_REQUEST, "invalid_idempotency_key"));
}

async fn stock_runs_out_exactly_and_the_list_stops_offering_it(backend: Backend) {
    let text = EXAMPLE.replacen("stock = 5000000\nper_user = 2", "stock = 2\nper_user = 2", 1); // ck-lucky
    let h = harness_on(backend, &text, false).await;
    let mut accepted = 0;
    for skip in 0..4 {
        let (user, role) = user_with_role(&h, "cloud-kingdom", skip);
        let c = coupon(&h, user).await;
        let (status, answer) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::CONFLICT => assert_eq!(code(&answer), "out_of_stock"),
            other => panic!("{other} {answer}"),
        }
    }
    assert_eq!(accepted, 2);
    assert_eq!(taken(&h, "ck-lucky"), 2);
    let (user, _) = user_with_role(&h, "cloud-kingdom", 5);
    let c = coupon(&h, user).await;
    let (_, list) = h.list(user, &c).await;
    assert!(list["gifts"].as_array().unwrap().iter().all(|g| g["gift_id"] != "ck-lucky"), "{list}");
}

async fn the_per_user_limit_of_a_gift_holds(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 3);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let c = coupon(&h, user).await;
        let (status, answer) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
        statuses.push((status, answer["error"]["code"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(statuses[0].0, StatusCode::ACCEPTED);
    assert_eq!(statuses[1].0, StatusCode::ACCEPTED);
    assert_eq!(statuses[2], (StatusCode::CONFLICT, "limit_reached".to_string()));
    assert_eq!(taken(&h, "ck-lucky"), 2);
}

async fn refusals_are_typed_and_change_nothing(backend: Backend) {
    // Coupons that outlive the campaign, so "closed" and "expired" can both be seen.
    let text = EXAMPLE.replacen("coupon_ttl_hours = 24", "coupon_ttl_hours = 240", 1);
    let h = harness_on(backend, &text, false).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 4);
    let c = coupon(&h, user).await;

    let wrong_role = Role { role_id: hongbao_domain::RoleId(role.role_id.0 ^ 1), ..role.clone() };
    let (status, e) = claim(&h, user, body(&c, "ck-lucky", &wrong_role), None).await;
    assert_eq!((status.as_u16(), code(&e)), (422, "role_not_found"));

    // A new-user pack for a user who plays that game.
    let (status, e) = claim(&h, user, body(&c, "ck-starter", &role), None).await;
    assert_eq!((status, code(&e)), (StatusCode::FORBIDDEN, "not_eligible"));
    assert_eq!(e["error"]["reason"], "audience_mismatch");

    let (status, e) = claim(&h, user, body(&c, "no-such-gift", &role), None).await;
    assert_eq!((status, code(&e)), (StatusCode::NOT_FOUND, "gift_not_found"));

    let (status, e) = claim(&h, user + 1, body(&c, "ck-lucky", &role), None).await;
    assert_eq!((status, code(&e)), (StatusCode::NOT_FOUND, "coupon_not_found"));

    let (status, e) = claim(
        &h,
        user,
        json!({ "coupon": c, "gift_id": "ck-lucky", "zone_id": "x", "role_id": 1 }),
        None,
    )
    .await;
    assert_eq!((status.as_u16(), code(&e)), (422, "invalid_body"));

    h.set_now(h.campaign.ends_at_unix_s);
    let (status, e) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
    assert_eq!((status, code(&e)), (StatusCode::FORBIDDEN, "campaign_closed"));
    h.set_now(h.campaign.starts_at_unix_s + 11 * 86_400);
    let (status, e) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
    assert_eq!((status, code(&e)), (StatusCode::GONE, "expired_coupon"));

    for gift in &h.campaign.gifts {
        assert_eq!(h.claims.stock_taken(GiftIndex(gift.index.0)), 0, "{}", gift.id);
    }
    assert!(h.claims.orders_of(user, 10).await.unwrap().is_empty());
}

async fn the_list_of_a_redeemed_coupon_is_its_order(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 6);
    let c = coupon(&h, user).await;
    let (_, before) = h.list(user, &c).await;
    assert!(before.get("redeemed").is_none(), "{before}");
    assert!(!before["gifts"].as_array().unwrap().is_empty(), "{before}");
    let (status, answer) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    let (status, list) = h.list(user, &c).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["gifts"], json!([]), "{list}");
    assert_eq!(list["redeemed"]["order_id"], answer["order_id"], "{list}");
    assert_eq!(list["redeemed"]["gift_id"], "ck-lucky");
    assert_eq!(list["redeemed"]["status"], "queued");
}

async fn the_list_leaves_out_a_gift_whose_per_user_limit_is_reached(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 7);
    let listed = |list: &Value, gift: &str| {
        list["gifts"].as_array().unwrap().iter().any(|g| g["gift_id"] == gift)
    };
    // ck-lucky: two per user.
    for _ in 0..2 {
        let c = coupon(&h, user).await;
        let (_, list) = h.list(user, &c).await;
        assert!(listed(&list, "ck-lucky"), "{list}");
        let (status, answer) = claim(&h, user, body(&c, "ck-lucky", &role), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let c = coupon(&h, user).await;
    let (status, list) = h.list(user, &c).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(!listed(&list, "ck-lucky"), "{list}");
    assert!(!list["gifts"].as_array().unwrap().is_empty(), "other gifts stay: {list}");
    // Another user is not affected.
    let (other, _) = user_with_role(&h, "cloud-kingdom", 8);
    let oc = coupon(&h, other).await;
    assert!(listed(&h.list(other, &oc).await.1, "ck-lucky"));
}

async fn a_claim_before_the_campaign_opens_says_when_it_does(backend: Backend) {
    let h = harness_of(backend).await;
    let (user, role) = user_with_role(&h, "cloud-kingdom", 9);
    let c = coupon(&h, user).await;
    let starts = h.campaign.starts_at_unix_s;
    // The coupon was granted earlier; the clock now reads before the opening (a coupon does
    // not record when it was granted, only when it expires).
    h.set_now(starts - 30);
    let request = axum::http::Request::post("/v1/claims")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.ticket(user)))
        .body(Body::from(body(&c, "ck-lucky", &role).to_string()))
        .unwrap();
    let (status, headers, e) = h.call_with_headers(request).await;
    assert_eq!((status, code(&e)), (StatusCode::FORBIDDEN, "campaign_not_open"));
    assert_eq!(e["error"]["opens_at"], starts, "{e}");
    assert_eq!(retry_after(&headers), 30);

    // A user whose wave opens later.
    h.set_now(starts + 3600);
    let (late, late_opens) = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .filter(|&u| {
            let game = h.campaign.game_by_id("cloud-kingdom").unwrap().index;
            !h.model.roles(u, game).is_empty()
        })
        .map(|u| (u, hongbao_domain::release::opens_at(&h.campaign, u)))
        .find(|&(_, at)| at > starts + 1)
        .unwrap();
    let game = h.campaign.game_by_id("cloud-kingdom").unwrap().index;
    let late_role = h.model.roles(late, game)[0].clone();
    let lc = coupon(&h, late).await;
    h.set_now(starts);
    let request = axum::http::Request::post("/v1/claims")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.ticket(late)))
        .body(Body::from(body(&lc, "ck-lucky", &late_role).to_string()))
        .unwrap();
    let (status, headers, e) = h.call_with_headers(request).await;
    assert_eq!((status, code(&e)), (StatusCode::FORBIDDEN, "wave_not_open"));
    assert_eq!(e["error"]["opens_at"], late_opens, "{e}");
    assert_eq!(retry_after(&headers), u64::try_from(late_opens - starts).unwrap());
}
