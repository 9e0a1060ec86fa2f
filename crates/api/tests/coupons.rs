//! Grab and gift list through the real router: tickets, coupons, limits, eligibility, ranking,
//! degraded lists, and bad input that must change nothing.

#![allow(clippy::unwrap_used)] // test bodies outside #[test] fns

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use hongbao_domain::eligibility::{RoleContext, Subject, check};
use hongbao_domain::ranking::rank_key;
use hongbao_domain::sign_ticket;
use hongbao_domain::synth::FIRST_USER_ID;

on_both_backends!(
    grab_grants_up_to_the_per_user_limit,
    channel_budget_holds_exactly,
    a_user_whose_wave_has_not_come_is_told_when_it_does,
    the_list_is_eligible_ranked_and_ids_only,
    an_unknown_user_is_a_new_user,
    foreign_tampered_and_expired_coupons_are_refused,
);

async fn grab_grants_up_to_the_per_user_limit(backend: Backend) {
    let h = harness_of(backend).await;
    let user = FIRST_USER_ID + 5;
    for serial in 1..=3 {
        let (status, body) = h.grab(user, "swipe").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["serial"], serial);
        assert_eq!(body["channel"], "swipe");
        assert_eq!(body["expires_at"], h.now() + 24 * 3600);
        assert!(body["coupon"].as_str().unwrap().starts_with("c1."));
    }
    let (status, body) = h.grab(user, "swipe").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "coupon_limit_reached");
    // Another channel has its own limit.
    assert_eq!(h.grab(user, "scan").await.0, StatusCode::CREATED);
    assert_eq!(h.granted(), 4);
}

async fn channel_budget_holds_exactly(backend: Backend) {
    let text = EXAMPLE.replacen("budget = 20000000", "budget = 3", 1); // ar_map
    let h = harness_on(backend, &text, false).await;
    let mut created = 0;
    for user in FIRST_USER_ID..FIRST_USER_ID + 5 {
        let (status, body) = h.grab(user, "ar_map").await;
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(code(&body), "channel_budget_exhausted"),
            other => panic!("{other} {body}"),
        }
    }
    assert_eq!(created, 3);
}

#[tokio::test]
async fn bad_tickets_get_distinct_401s_and_change_nothing() {
    let h = harness();
    let body = r#"{"channel":"swipe"}"#;
    let (status, b) = h.grab_as(None, body).await;
    assert_eq!((status, code(&b)), (StatusCode::UNAUTHORIZED, "missing_ticket"));
    let (status, b) = h.grab_as(Some("not-a-ticket"), body).await;
    assert_eq!((status, code(&b)), (StatusCode::UNAUTHORIZED, "malformed_ticket"));
    let good = h.ticket(FIRST_USER_ID);
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, b) = h.grab_as(Some(&forged), body).await;
    assert_eq!((status, code(&b)), (StatusCode::UNAUTHORIZED, "forged_ticket"));
    let expired = sign_ticket(&h.campaign.auth.ticket_keys[0], FIRST_USER_ID, h.now() - 7200, 3600);
    let (status, b) = h.grab_as(Some(&expired), body).await;
    assert_eq!((status, code(&b)), (StatusCode::UNAUTHORIZED, "expired_ticket"));
    let other_key = hongbao_domain::campaign::TicketKey {
        id: "rogue".into(),
        secret: b"0123456789abcdef0123".to_vec(),
    };
    let rogue = sign_ticket(&other_key, FIRST_USER_ID, h.now(), 3600);
    let (status, b) = h.grab_as(Some(&rogue), body).await;
    assert_eq!((status, code(&b)), (StatusCode::UNAUTHORIZED, "unknown_ticket_key"));
    assert_eq!(h.granted(), 0);
}

#[tokio::test]
async fn bad_grab_bodies_get_clear_4xx_and_change_nothing() {
    let h = harness();
    let ticket = h.ticket(FIRST_USER_ID);
    let (status, b) = h.grab_as(Some(&ticket), r#"{"channel":"shake"}"#).await;
    assert_eq!((status, code(&b)), (StatusCode::BAD_REQUEST, "unknown_channel"));
    let (status, b) = h.grab_as(Some(&ticket), r#"{"channel":"swipe","extra":1}"#).await;
    assert_eq!((status.as_u16(), code(&b)), (422, "invalid_body"));
    let (status, b) = h.grab_as(Some(&ticket), r#"{"channel":"#).await;
    assert_eq!((status, code(&b)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let huge = format!(r#"{{"channel":"{}"}}"#, "x".repeat(64 * 1024));
    let (status, b) = h.grab_as(Some(&ticket), &huge).await;
    assert_eq!((status, code(&b)), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    let request = Request::post("/v1/coupons")
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {ticket}"))
        .body(Body::from(r#"{"channel":"swipe"}"#))
        .unwrap();
    let (status, b) = h.call(request).await;
    assert_eq!((status, code(&b)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    assert_eq!(h.granted(), 0);
}

#[tokio::test]
async fn outside_the_campaign_window_grab_is_refused_with_when_it_opens() {
    let h = harness();
    let starts = h.campaign.starts_at_unix_s;
    h.set_now(starts - 10);
    let (status, headers, b) = h.grab_with_headers(FIRST_USER_ID, "swipe").await;
    assert_eq!((status, code(&b)), (StatusCode::FORBIDDEN, "campaign_not_open"));
    assert_eq!(b["error"]["opens_at"], starts, "{b}");
    assert_eq!(retry_after(&headers), 10);
    h.set_now(h.campaign.ends_at_unix_s);
    let (status, headers, b) = h.grab_with_headers(FIRST_USER_ID, "swipe").await;
    assert_eq!((status, code(&b)), (StatusCode::FORBIDDEN, "campaign_closed"));
    assert_eq!(b["error"]["ended_at"], h.campaign.ends_at_unix_s, "{b}");
    assert!(headers.get("retry-after").is_none(), "nothing to wait for: {headers:?}");
    assert_eq!(h.granted(), 0);
}

async fn a_user_whose_wave_has_not_come_is_told_when_it_does(backend: Backend) {
    let h = harness_of(backend).await;
    let starts = h.campaign.starts_at_unix_s;
    h.set_now(starts);
    let (user, opens_at) = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .map(|u| (u, hongbao_domain::release::opens_at(&h.campaign, u)))
        .find(|&(_, at)| at > starts + 1)
        .unwrap();
    let (status, headers, b) = h.grab_with_headers(user, "swipe").await;
    assert_eq!((status, code(&b)), (StatusCode::FORBIDDEN, "wave_not_open"));
    assert_eq!(b["error"]["opens_at"], opens_at, "{b}");
    assert_eq!(retry_after(&headers), u64::try_from(opens_at - starts).unwrap());
    // A moment before it opens, still at least a second to wait.
    h.set_now(opens_at - 1);
    let (_, headers, _) = h.grab_with_headers(user, "swipe").await;
    assert_eq!(retry_after(&headers), 1);
    h.set_now(opens_at);
    assert_eq!(h.grab(user, "swipe").await.0, StatusCode::CREATED);
}

async fn the_list_is_eligible_ranked_and_ids_only(backend: Backend) {
    let h = harness_of(backend).await;
    let user = user_in_games(&h, 3);
    let (_, grabbed) = h.grab(user, "swipe").await;
    let coupon = grabbed["coupon"].as_str().unwrap();
    let (status, body) = h.list(user, coupon).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["degraded"], false);
    assert_eq!(body["catalog_version"].as_str().unwrap().len(), 16);
    let gifts = body["gifts"].as_array().unwrap();
    assert!(!gifts.is_empty());
    let profile = h.profiles.get(user);
    let subject = Subject { user, profile: &profile, ticket_issued_at_unix_s: h.now() - 10 };
    let mut previous = None;
    for g in gifts {
        assert_eq!(g.as_object().unwrap().len(), 2, "ids only: {g}");
        let gift = h.campaign.gift_by_id(g["gift_id"].as_str().unwrap()).unwrap();
        assert_eq!(g["game_id"], h.campaign.game(gift.game).id);
        let roles = h.model.roles(user, gift.game);
        check(&h.campaign, gift, &subject, RoleContext::AnyOf(&roles), false, h.now()).unwrap();
        let key = rank_key(&h.campaign, &profile, gift.index);
        if let Some(prev) = previous.replace(key) {
            assert!(prev < key, "not in rank order");
        }
    }
    // Every eligible gift is listed.
    let eligible = h
        .campaign
        .gifts
        .iter()
        .filter(|gift| {
            let roles = h.model.roles(user, gift.game);
            check(&h.campaign, gift, &subject, RoleContext::AnyOf(&roles), false, h.now()).is_ok()
        })
        .count();
    assert_eq!(gifts.len(), eligible);
}

async fn an_unknown_user_is_a_new_user(backend: Backend) {
    let h = harness_of(backend).await;
    let stranger = 9_999_999_999;
    let (_, grabbed) = h.grab(stranger, "scan").await;
    let (status, body) = h.list(stranger, grabbed["coupon"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let gifts = body["gifts"].as_array().unwrap();
    assert!(!gifts.is_empty());
    for g in gifts {
        let gift = h.campaign.gift_by_id(g["gift_id"].as_str().unwrap()).unwrap();
        assert_ne!(gift.audience, hongbao_domain::Audience::Active, "{}", gift.id);
    }
}

#[tokio::test]
async fn a_down_game_side_degrades_the_list_instead_of_failing_it() {
    let h = harness_with(EXAMPLE, true);
    let user = user_in_games(&h, 3);
    let (_, grabbed) = h.grab(user, "swipe").await;
    let (status, body) = h.list(user, grabbed["coupon"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["degraded"], true);
    for g in body["gifts"].as_array().unwrap() {
        let gift = h.campaign.gift_by_id(g["gift_id"].as_str().unwrap()).unwrap();
        assert!(
            gift.min_role_level.is_none() && gift.regions.is_empty(),
            "{} needs a role",
            gift.id
        );
    }
}

async fn foreign_tampered_and_expired_coupons_are_refused(backend: Backend) {
    let h = harness_of(backend).await;
    let owner = FIRST_USER_ID + 1;
    let (_, grabbed) = h.grab(owner, "swipe").await;
    let coupon = grabbed["coupon"].as_str().unwrap().to_string();
    let (status, b) = h.list(FIRST_USER_ID + 2, &coupon).await;
    assert_eq!((status, code(&b)), (StatusCode::NOT_FOUND, "coupon_not_found"));
    let mut tampered = coupon.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let (status, b) = h.list(owner, std::str::from_utf8(&tampered).unwrap()).await;
    assert_eq!((status, code(&b)), (StatusCode::FORBIDDEN, "forged_coupon"));
    let (status, b) = h.list(owner, "garbage").await;
    assert_eq!((status, code(&b)), (StatusCode::BAD_REQUEST, "malformed_coupon"));
    let (status, b) = h.list(owner, &"c".repeat(5000)).await;
    assert_eq!((status, code(&b)), (StatusCode::BAD_REQUEST, "malformed_coupon"));
    h.set_now(h.now() + 24 * 3600 + 1);
    let (status, b) = h.list(owner, &coupon).await;
    assert_eq!((status, code(&b)), (StatusCode::GONE, "expired_coupon"));
    assert_eq!(h.granted(), 1);
}

async fn readyz(h: &Harness) -> serde_json::Value {
    h.call(Request::get("/readyz").body(Body::empty()).expect("request")).await.1
}

#[tokio::test]
async fn readiness_reports_the_game_side_from_the_role_lookups_it_saw() {
    for (down, verdict) in [(false, "reachable"), (true, "unreachable")] {
        let h = harness_with(EXAMPLE, down);
        let body = readyz(&h).await;
        assert_eq!(body["game_side"], "unknown", "no look-up yet: {body}");
        assert_eq!(body["profiles"], "loaded");
        let user = user_in_games(&h, 3);
        let (_, grabbed) = h.grab(user, "swipe").await;
        h.list(user, grabbed["coupon"].as_str().unwrap()).await;
        let body = readyz(&h).await;
        assert_eq!(body["game_side"], verdict, "{body}");
        // The game side does not decide readiness: lists degrade instead of failing.
        assert_eq!(body["ready"], true, "{body}");
        // No look-up since: the last verdict stands.
        assert_eq!(readyz(&h).await["game_side"], verdict);
    }
}
