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
    // Connecting writes one key: the campaign's claim layout.
    assert_eq!(keys_in(&ns), 1);
    let out = redis.claim(claim_req(1, Channel::Swipe, 1, 0, 0, 1, NOW_MS)).await;
    assert_eq!(out, Ok(ClaimOutcome::OutOfStock));
    let limit = redis.claim(claim_req(1, Channel::Swipe, 1, 0, 5, 0, NOW_MS)).await;
    assert_eq!(limit, Ok(ClaimOutcome::LimitReached));
    assert_eq!(keys_in(&ns), 1, "a rejection wrote keys");
    // A claim for another campaign or an unbound gift never reaches Redis.
    let mut other = claim_req(1, Channel::Swipe, 1, 0, 5, 1, NOW_MS);
    other.coupon.campaign_id = "autumn".into();
    assert!(matches!(redis.claim(other).await, Err(StoreError::InvalidConfig(_))));
    let unbound = claim_req(1, Channel::Swipe, 1, 9, 5, 1, NOW_MS);
    assert!(matches!(redis.claim(unbound).await, Err(StoreError::InvalidConfig(_))));

    let accepted = redis.claim(claim_req(1, Channel::Swipe, 1, 0, 5, 1, NOW_MS)).await;
    assert!(matches!(accepted, Ok(ClaimOutcome::Accepted(_))));
    assert!(keys_in(&ns) > 1);
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

/// An idempotency record answers by its stored expiry on the request's clock; Redis's own TTL,
/// a margin longer, only collects it afterwards.
#[tokio::test]
async fn idempotency_records_outlive_their_decisions_in_redis() {
    use hongbao_redis::IDEMPOTENCY_GC_MARGIN_MS;
    use hongbao_store::{IDEMPOTENCY_TTL_MS, IdempotencyKey};
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let redis = connect(&ns).await;
    let key = IdempotencyKey::new("retry-1", [7; 32]).expect("a key");
    let req = claim_req(4, Channel::Swipe, 1, 1, 5, 1, NOW_MS).with_idempotency(key);
    assert!(matches!(redis.claim(req).await, Ok(ClaimOutcome::Accepted(_))));
    let mut conn = redis::Client::open(REDIS_URL).expect("url").get_connection().expect("conn");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(format!("{ns}:{{spring}}:idem:4:retry-1"))
        .query(&mut conn)
        .expect("PTTL");
    let ttl_ms = u64::try_from(ttl_ms).expect("a record with a TTL");
    assert!(ttl_ms > IDEMPOTENCY_TTL_MS, "{ttl_ms}");
    assert!(ttl_ms <= IDEMPOTENCY_TTL_MS + IDEMPOTENCY_GC_MARGIN_MS, "{ttl_ms}");
}

/// Values the layout did not write are reported as corrupt, never taken for an answer.
#[tokio::test]
async fn foreign_values_are_corrupt() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let redis = connect(&ns).await;
    let req = claim_req(4, Channel::Swipe, 1, 1, 5, 1, NOW_MS);
    let id = req.order_id();
    let mut conn = redis::Client::open(REDIS_URL).expect("url").get_connection().expect("conn");
    redis::cmd("HSET")
        .arg(format!("{ns}:{{spring}}:orders"))
        .arg(id.as_str())
        .arg("{\"not\":\"an order\"}")
        .query::<i64>(&mut conn)
        .expect("HSET");
    assert!(matches!(redis.order(&id).await, Err(StoreError::Corrupt(_))));
    // A huge stock (beyond Lua's exact integers) still takes one unit.
    let other = claim_req(5, Channel::Swipe, 1, 1, u64::MAX, 1, NOW_MS);
    assert!(matches!(redis.claim(other).await, Ok(ClaimOutcome::Accepted(_))));
    assert_eq!(redis.stock_taken(hongbao_domain::GiftIndex(1)), 1);
}
