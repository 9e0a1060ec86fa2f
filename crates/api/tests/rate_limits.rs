//! The campaign's request rates through the real router, on the harness's hand-set clock (it
//! does not move unless told, so the counts are exact): one noisy user is capped at their burst
//! while a quiet user's requests all succeed; `X-Forwarded-For` counts only from trusted
//! proxies.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use hongbao_api::limits::parse_trusted_proxies;
use hongbao_api::{RateLimits, with_rate_limits};
use hongbao_domain::synth::FIRST_USER_ID;
use tower::ServiceExt;

fn limited(h: &Harness, trusted: &str) -> Router {
    let trusted = parse_trusted_proxies(trusted).unwrap();
    let limits = RateLimits::new(&h.campaign.limits, trusted, h.clock.clone());
    with_rate_limits(h.router.clone(), Arc::new(limits))
}

/// `GET /v1/orders` as `user`, optionally through a proxy naming `forwarded_for`.
async fn orders(
    router: &Router,
    h: &Harness,
    user: u64,
    forwarded_for: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut request =
        Request::get("/v1/orders").header("authorization", format!("Bearer {}", h.ticket(user)));
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (response.status(), retry)
}

#[tokio::test]
async fn a_noisy_user_is_capped_while_a_quiet_user_is_not() {
    let h = harness();
    let limits = &h.campaign.limits;
    assert_eq!((limits.user_rate_per_s, limits.user_burst), (10, 20));
    let router = limited(&h, "");
    let (noisy, quiet) = (FIRST_USER_ID, FIRST_USER_ID + 1);
    let mut answered = Vec::new();
    for _ in 0..100 {
        answered.push(orders(&router, &h, noisy, None).await);
    }
    let ok = answered.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 20, "the burst, no more, while the clock stands still");
    for (status, retry) in answered.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("1"));
    }
    for _ in 0..15 {
        assert_eq!(orders(&router, &h, quiet, None).await.0, StatusCode::OK);
    }
    // The refusal is the typed JSON error.
    let request = Request::get("/v1/orders")
        .header("authorization", format!("Bearer {}", h.ticket(noisy)))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(code(&body), "rate_limited");
    // A second later the noisy user has ten more.
    h.clock.advance_ms(1_000);
    let mut ok = 0;
    for _ in 0..30 {
        ok += usize::from(orders(&router, &h, noisy, None).await.0 == StatusCode::OK);
    }
    assert_eq!(ok, 10);
}

/// An address burst of 40 (above the user burst, as the campaign requires), many users behind
/// one address.
fn small_address_burst() -> Harness {
    let text = EXAMPLE.replace("ip_burst = 10000", "ip_burst = 40");
    let h = harness_with(&text, false);
    assert_eq!(h.campaign.limits.ip_burst, 40);
    h
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let h = small_address_burst();
    let router = limited(&h, "10.0.0.0/8");
    // The peer (loopback) is not trusted: every request counts against it, whatever it claims.
    let mut ok = 0;
    for i in 0..60u64 {
        let claimed = format!("198.51.100.{}", i % 200);
        ok += usize::from(
            orders(&router, &h, FIRST_USER_ID + i, Some(&claimed)).await.0 == StatusCode::OK,
        );
    }
    assert_eq!(ok, 40);
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let h = small_address_burst();
    let router = limited(&h, "127.0.0.1");
    // Behind the trusted proxy, each client address has its own burst.
    for client in ["198.51.100.1", "198.51.100.2"] {
        let mut ok = 0;
        for i in 0..50u64 {
            ok += usize::from(
                orders(&router, &h, FIRST_USER_ID + i, Some(client)).await.0 == StatusCode::OK,
            );
        }
        assert_eq!(ok, 40, "{client}");
    }
}
