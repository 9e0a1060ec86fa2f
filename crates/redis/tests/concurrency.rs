//! Concurrent commands over shared adapters ("nodes") of one namespace: the scripts serialise
//! them, so stock, per-user limits, coupons and budgets hold exactly.

mod common;

use std::sync::Arc;

use common::{NOW_MS, claim_req, connect, namespace, redis_answers};
use hongbao_domain::Channel;
use hongbao_redis::RedisLedger;
use hongbao_store::{
    ClaimLedger, ClaimOutcome, GrantLedger, GrantOutcome, GrantRequest, HighValueRule,
    HighValueUsage,
};
use tokio::task::JoinSet;

/// Two nodes: each claim goes to one of them, alternately.
async fn two_nodes(ns: &str) -> [Arc<RedisLedger>; 2] {
    [Arc::new(connect(ns).await), Arc::new(connect(ns).await)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_take_exactly_the_stock() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    common::claims_take_exactly_the_stock(&two_nodes(&ns).await).await;
}

/// One user claims one gift with many coupons at once: the per-user limit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_of_one_user_respect_the_limit() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let nodes = two_nodes(&ns).await;
    let mut tasks = JoinSet::new();
    for serial in 1..=20u32 {
        let node = Arc::clone(&nodes[(serial % 2) as usize]);
        tasks.spawn(async move {
            node.claim(claim_req(7, Channel::Scan, serial, 2, 1_000, 2, NOW_MS)).await
        });
    }
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("the task ran").expect("redis answers") {
            ClaimOutcome::Accepted(_) => accepted += 1,
            ClaimOutcome::LimitReached => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(accepted, 2);
    assert_eq!(nodes[0].orders_of(7, 100).await.expect("read").len(), 2);
}

/// One coupon claimed for every gift at once: exactly one order; the others hear of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_coupon_is_redeemed_once() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    common::one_coupon_is_redeemed_once(&two_nodes(&ns).await).await;
}

/// Many grants at once on one channel from a few users: exactly the budget is granted, and each
/// user's serials are 1..=n without gaps or repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grants_hold_budget_and_serials() {
    if !redis_answers() {
        return;
    }
    const BUDGET: u64 = 30;
    let (ns, _cleanup) = namespace();
    let nodes = two_nodes(&ns).await;
    let mut tasks = JoinSet::new();
    for i in 0..100u64 {
        let node = Arc::clone(&nodes[(i % 2) as usize]);
        let req = GrantRequest {
            user: i % 10,
            channel: Channel::Swipe,
            per_user_limit: 4,
            budget: BUDGET,
        };
        tasks.spawn(async move { (req.user, node.grant(req).await) });
    }
    let mut serials: Vec<Vec<u32>> = vec![Vec::new(); 10];
    while let Some(joined) = tasks.join_next().await {
        let (user, outcome) = joined.expect("the task ran");
        match outcome.expect("redis answers") {
            GrantOutcome::Granted { serial } => serials[user as usize].push(serial),
            GrantOutcome::BudgetExhausted | GrantOutcome::UserLimitReached => {}
        }
    }
    let granted: usize = serials.iter().map(Vec::len).sum();
    assert_eq!(granted as u64, BUDGET);
    for mut user_serials in serials {
        user_serials.sort_unstable();
        let expected: Vec<u32> = (1..=user_serials.len() as u32).collect();
        assert_eq!(user_serials, expected);
    }
    // Each node's count lags until it reads the others' effect, and never runs ahead.
    for node in &nodes {
        assert!(node.granted(Channel::Swipe) <= BUDGET);
        node.refresh_counters().await.expect("redis answers");
        assert_eq!(node.granted(Channel::Swipe), BUDGET);
        assert_eq!(node.granted(Channel::Scan), 0);
    }
}

/// A claim of high-value gift `c` worth `value` cents: stock and the gift's own per-user limit
/// ample, so only the high-value rules can refuse.
fn high_value_req(
    user: u64,
    serial: u32,
    value: u64,
    per_day: u32,
    budget: u64,
) -> hongbao_store::ClaimRequest {
    let mut req = claim_req(user, Channel::Swipe, serial, 2, 1_000_000, 1_000, NOW_MS);
    req.high_value = Some(HighValueRule {
        value_cents: value,
        per_user_per_day: per_day,
        budget_cents_per_hour: budget,
    });
    req
}

/// A budget of exactly 10 gifts' value per hour, 60 users over two nodes at once: exactly 10
/// accepted, the rest told when the hour's budget renews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_high_value_claims_spend_exactly_the_hours_budget() {
    if !redis_answers() {
        return;
    }
    const VALUE: u64 = 1_000;
    let (ns, _cleanup) = namespace();
    let nodes = two_nodes(&ns).await;
    let mut tasks = JoinSet::new();
    for user in 1..=60u64 {
        let node = Arc::clone(&nodes[(user % 2) as usize]);
        tasks.spawn(async move { node.claim(high_value_req(user, 1, VALUE, 1, 10 * VALUE)).await });
    }
    let renews = hongbao_store::hour_ends_at_ms(NOW_MS);
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("the task ran").expect("redis answers") {
            ClaimOutcome::Accepted(_) => accepted += 1,
            ClaimOutcome::HighValueBudgetExhausted { resets_at_ms } => {
                assert_eq!(resets_at_ms, renews);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(accepted, 10);
    let usage = nodes[1].high_value_usage(999, NOW_MS).await.expect("read");
    assert_eq!(usage, HighValueUsage { claimed_today: 0, spent_this_hour_cents: 10 * VALUE });
}

/// One user, 2 high-value claims a day, 20 coupons at once over two nodes: exactly 2 accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_high_value_claims_of_one_user_respect_the_day() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let nodes = two_nodes(&ns).await;
    let mut tasks = JoinSet::new();
    for serial in 1..=20u32 {
        let node = Arc::clone(&nodes[(serial % 2) as usize]);
        tasks.spawn(async move { node.claim(high_value_req(7, serial, 10, 2, u64::MAX)).await });
    }
    let renews = hongbao_store::day_ends_at_ms(NOW_MS);
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("the task ran").expect("redis answers") {
            ClaimOutcome::Accepted(_) => accepted += 1,
            ClaimOutcome::HighValueDailyLimit { resets_at_ms } => assert_eq!(resets_at_ms, renews),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(accepted, 2);
    assert_eq!(nodes[0].high_value_usage(7, NOW_MS).await.expect("read").claimed_today, 2);
    // Below the limit, another user is accepted.
    let other = nodes[0].claim(high_value_req(8, 1, 10, 2, u64::MAX)).await.expect("answers");
    assert!(matches!(other, ClaimOutcome::Accepted(_)), "{other:?}");
}
