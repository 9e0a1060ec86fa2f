//! The adapter's own promises beyond the rules: configuration refused before any I/O, rejections
//! write nothing, and a test's keys are gone after it.

mod common;

use common::{NOW_MS, REDIS_URL, binding, claim_req, connect, keys_in, namespace, redis_answers};
use hongbao_domain::Channel;
use hongbao_redis::RedisLedger;
use hongbao_store::{CampaignBinding, ClaimLedger, ClaimOutcome, StoreError};

#[tokio::test]
async fn a_bad_namespace_or_url_is_refused_before_connecting() {
    let bad = RedisLedger::connect(REDIS_URL, "a{b}", binding()).await;
    assert!(matches!(bad, Err(StoreError::InvalidConfig(_))));
    let bad = RedisLedger::connect("not a url", "ok", binding()).await;
    assert!(matches!(bad, Err(StoreError::InvalidConfig(_))));
}

#[tokio::test]
async fn rejections_write_nothing_and_cleanup_removes_everything() {
    if !redis_answers() {
        return;
    }
    let (ns, cleanup) = namespace();
    let redis = connect(&ns).await;
    let out = redis.claim(claim_req(1, Channel::Swipe, 1, 0, 0, 1, NOW_MS)).await;
    assert_eq!(out, Ok(ClaimOutcome::OutOfStock));
    let limit = redis.claim(claim_req(1, Channel::Swipe, 1, 0, 5, 0, NOW_MS)).await;
    assert_eq!(limit, Ok(ClaimOutcome::LimitReached));
    assert_eq!(keys_in(&ns), 0, "a rejection wrote keys");
    // A claim for another campaign or an unbound gift never reaches Redis.
    let mut other = claim_req(1, Channel::Swipe, 1, 0, 5, 1, NOW_MS);
    other.coupon.campaign_id = "autumn".into();
    assert!(matches!(redis.claim(other).await, Err(StoreError::InvalidConfig(_))));
    let unbound = claim_req(1, Channel::Swipe, 1, 9, 5, 1, NOW_MS);
    assert!(matches!(redis.claim(unbound).await, Err(StoreError::InvalidConfig(_))));

    let accepted = redis.claim(claim_req(1, Channel::Swipe, 1, 0, 5, 1, NOW_MS)).await;
    assert!(matches!(accepted, Ok(ClaimOutcome::Accepted(_))));
    assert!(keys_in(&ns) > 0);
    drop(cleanup);
    assert_eq!(keys_in(&ns), 0, "the namespace's keys outlived the test");
}

/// A store for grants only (no campaign) grants and refuses every claim.
#[tokio::test]
async fn a_grants_only_store_refuses_claims() {
    use hongbao_store::{GrantLedger, GrantOutcome, GrantRequest};
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let redis =
        RedisLedger::connect(REDIS_URL, &ns, CampaignBinding::none()).await.expect("connect");
    let req = GrantRequest { user: 5, channel: Channel::Scan, per_user_limit: 1, budget: 1 };
    assert_eq!(redis.grant(req).await, Ok(GrantOutcome::Granted { serial: 1 }));
    assert_eq!(redis.grant(req).await, Ok(GrantOutcome::BudgetExhausted));
    let claim = claim_req(5, Channel::Scan, 1, 0, 5, 1, NOW_MS);
    assert!(matches!(redis.claim(claim).await, Err(StoreError::InvalidConfig(_))));
}
