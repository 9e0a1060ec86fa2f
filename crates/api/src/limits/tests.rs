use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use hongbao_clock::ManualClock;
use hongbao_domain::campaign::Limits;

use super::*;

fn limits(user_rate: u32, user_burst: u32, ip_rate: u32, ip_burst: u32) -> Limits {
    Limits {
        high_value_per_user_per_day: 1,
        high_value_budget_cents_per_hour: 1,
        user_rate_per_s: user_rate,
        user_burst,
        ip_rate_per_s: ip_rate,
        ip_burst,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn forwarded(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
    headers
}

#[test]
fn a_noisy_user_is_capped_at_its_burst_while_a_quiet_one_is_not() {
    let clock = ManualClock::new(1_800_000_000_000);
    let rl = RateLimits::new(&limits(10, 20, 5000, 10_000), Vec::new(), clock.clone());
    let noisy = (0..100).filter(|_| rl.check_user(1).is_ok()).count();
    assert_eq!(noisy, 20, "the burst, on a clock that does not move");
    assert!((0..10).all(|_| rl.check_user(2).is_ok()), "a quiet user is not affected");
    let refused = rl.check_user(1).unwrap_err();
    assert_eq!((refused.status.as_u16(), refused.code), (429, "rate_limited"));
    assert_eq!(refused.retry_after_s, Some(1), "one request's worth at 10/s, rounded up");
    // A second later the rate has refilled 10 requests, no more.
    clock.advance_ms(1_000);
    assert_eq!((0..100).filter(|_| rl.check_user(1).is_ok()).count(), 10);
}

#[test]
fn addresses_have_their_own_rate() {
    let clock = ManualClock::new(1_800_000_000_000);
    let rl = RateLimits::new(&limits(10, 20, 50, 100), Vec::new(), clock);
    assert_eq!((0..500).filter(|_| rl.check_addr(ip("10.0.0.1")).is_ok()).count(), 100);
    assert!(rl.check_addr(ip("10.0.0.2")).is_ok());
}

#[test]
fn idle_keys_are_forgotten() {
    let clock = ManualClock::new(1_800_000_000_000);
    let rl = RateLimits::new(&limits(10, 20, 50, 100), Vec::new(), clock.clone());
    for user in 0..100 {
        rl.check_user(user).unwrap();
    }
    assert_eq!(rl.keys().0, 100);
    clock.advance_ms(60_000);
    rl.retain_recent();
    assert_eq!(rl.keys().0, 0);
}

#[test]
fn forwarded_for_is_read_only_from_trusted_proxies() {
    let trusted = parse_trusted_proxies("10.0.0.0/8, 192.168.1.1").unwrap();
    let chain = forwarded("203.0.113.9, 198.51.100.7, 10.1.1.1");
    // An untrusted peer's header is ignored: the peer is the client.
    assert_eq!(client_addr(ip("198.51.100.50"), &chain, &trusted), ip("198.51.100.50"));
    // A trusted peer: from the right, the first address that is not a trusted proxy.
    assert_eq!(client_addr(ip("10.2.2.2"), &chain, &trusted), ip("198.51.100.7"));
    assert_eq!(client_addr(ip("192.168.1.1"), &chain, &trusted), ip("198.51.100.7"));
    // Several headers are one list, the last header the nearest hop.
    let mut two = forwarded("203.0.113.9");
    two.append("x-forwarded-for", HeaderValue::from_static("10.3.3.3"));
    assert_eq!(client_addr(ip("10.2.2.2"), &two, &trusted), ip("203.0.113.9"));
    // No header, garbage, or only proxies: the last trusted hop, never the client's claim.
    assert_eq!(client_addr(ip("10.2.2.2"), &HeaderMap::new(), &trusted), ip("10.2.2.2"));
    let garbage = forwarded("203.0.113.9, not-an-address");
    assert_eq!(client_addr(ip("10.2.2.2"), &garbage, &trusted), ip("10.2.2.2"));
    assert_eq!(client_addr(ip("10.2.2.2"), &forwarded("10.9.9.9"), &trusted), ip("10.9.9.9"));
    // Without trusted proxies the header never counts.
    assert_eq!(client_addr(ip("10.2.2.2"), &chain, &[]), ip("10.2.2.2"));
}

#[test]
fn trusted_proxy_lists_are_checked() {
    assert_eq!(parse_trusted_proxies("").unwrap(), Vec::<IpNet>::new());
    assert_eq!(parse_trusted_proxies("::1,127.0.0.1/32").unwrap().len(), 2);
    assert!(parse_trusted_proxies("10.0.0.0/33").is_err());
    assert!(parse_trusted_proxies("proxy.example").is_err());
    let many = vec!["10.0.0.1"; TRUSTED_PROXIES_MAX + 1].join(",");
    assert!(parse_trusted_proxies(&many).is_err());
}

#[tokio::test]
async fn maintenance_stops_with_its_signal() {
    let clock = ManualClock::new(1_800_000_000_000);
    let rl = Arc::new(RateLimits::new(&limits(10, 20, 50, 100), Vec::new(), clock));
    // Stopped at once: the task returns (the test would hang otherwise).
    rl.maintain(std::future::ready(())).await;
}
