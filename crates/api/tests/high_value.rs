//! High-value gifts through the real router: the daily allowance per user and the hourly budget
//! over everyone, each accepted below its limit and refused at it with its own code and when it
//! renews; the gift list stops offering what the claim would refuse.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::*;
use hongbao_domain::synth::FIRST_USER_ID;
use hongbao_domain::{Role, eligibility::role_qualifies};
use serde_json::{Value, json};

on_both_backends!(
    the_daily_allowance_is_refused_at_its_limit_and_hidden_from_the_list,
    the_hourly_budget_is_refused_when_spent_and_says_when_it_frees_up,
);

const LEGEND: &str = "lh-legend";

/// Users who may have the legend (registered in its game, a qualifying role), with that role.
fn legend_users(h: &Harness) -> Vec<(u64, Role)> {
    let gift = h.campaign.gift_by_id(LEGEND).unwrap();
    (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .filter(|&u| h.profiles.get(u).registered.contains(gift.game))
        .filter_map(|u| {
            h.model
                .roles(u, gift.game)
                .into_iter()
                .find(|r| role_qualifies(gift, r))
                .map(|r| (u, r))
        })
        .collect()
}

async fn coupon(h: &Harness, user: u64) -> String {
    let (status, body) = h.grab(user, "swipe").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["coupon"].as_str().unwrap().to_string()
}

async fn claim_legend(
    h: &Harness,
    user: u64,
    coupon: &str,
    role: &Role,
) -> (StatusCode, HeaderMap, Value) {
    let body = json!({
        "coupon": coupon, "gift_id": LEGEND, "zone_id": role.zone_id, "role_id": role.role_id
    });
    let request = Request::post("/v1/claims")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.ticket(user)))
        .body(Body::from(body.to_string()))
        .unwrap();
    h.call_with_headers(request).await
}

/// Whether `coupon`'s gift list offers the legend to `user`.
async fn lists_legend(h: &Harness, user: u64, coupon: &str) -> bool {
    let (status, body) = h.list(user, coupon).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["gifts"].as_array().unwrap().iter().any(|g| g["gift_id"] == LEGEND)
}

async fn the_daily_allowance_is_refused_at_its_limit_and_hidden_from_the_list(backend: Backend) {
    // The legend's own per-user limit above the daily allowance, so the allowance is what binds.
    let text = EXAMPLE.replace(
        "stock = 2000\nper_user = 1\nhigh_value = true",
        "stock = 2000\nper_user = 3\nhigh_value = true",
    );
    let h = harness_on(backend, &text, false).await;
    assert_eq!(h.campaign.gift_by_id(LEGEND).unwrap().per_user, 3);
    assert_eq!(h.campaign.limits.high_value_per_user_per_day, 1);
    let (user, role) = legend_users(&h).into_iter().next().unwrap();
    // Below the limit: listed and accepted.
    let first = coupon(&h, user).await;
    assert!(lists_legend(&h, user, &first).await);
    let (status, _, body) = claim_legend(&h, user, &first, &role).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // At the limit: no longer listed; a claim with another coupon is refused until midnight UTC.
    let second = coupon(&h, user).await;
    assert!(!lists_legend(&h, user, &second).await);
    let (status, headers, body) = claim_legend(&h, user, &second, &role).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "high_value_daily_limit");
    let midnight = (h.now() / 86_400 + 1) * 86_400;
    assert_eq!(body["error"]["opens_at"], midnight);
    assert_eq!(retry_after(&headers), u64::try_from(midnight - h.now()).unwrap());
}

async fn the_hourly_budget_is_refused_when_spent_and_says_when_it_frees_up(backend: Backend) {
    // A budget of exactly two legends per hour.
    let text = EXAMPLE.replace(
        "high_value_budget_cents_per_hour = 5000000",
        "high_value_budget_cents_per_hour = 137600",
    );
    let h = harness_on(backend, &text, false).await;
    let users = legend_users(&h);
    assert!(users.len() >= 3, "the model has enough legend users");
    for (user, role) in &users[..2] {
        let coupon = coupon(&h, *user).await;
        let (status, _, body) = claim_legend(&h, *user, &coupon, role).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (user, role) = &users[2];
    let refused = coupon(&h, *user).await;
    assert!(!lists_legend(&h, *user, &refused).await, "a spent budget hides the legend");
    let (status, headers, body) = claim_legend(&h, *user, &refused, role).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "high_value_budget_exhausted");
    let next_hour = (h.now() / 3600 + 1) * 3600;
    assert_eq!(body["error"]["opens_at"], next_hour);
    assert_eq!(retry_after(&headers), u64::try_from(next_hour - h.now()).unwrap());
    // The next hour has a fresh budget.
    h.clock.advance_ms(u64::try_from(next_hour - h.now()).unwrap() * 1000);
    let later = coupon(&h, *user).await;
    assert!(lists_legend(&h, *user, &later).await);
    let (status, _, body) = claim_legend(&h, *user, &later, role).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
