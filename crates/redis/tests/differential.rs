//! The differential property test: Redis decides as the ledger core.
//!
//! `MemoryStore` runs the ledger's rules (`hongbao_store`'s `ledger/`) themselves; `RedisLedger`
//! runs them as Lua scripts. Random sequences of grants and claims — a few users (one with the
//! largest id), gifts with small stock and per-user limits, coupons used again for the same and
//! for other gifts, idempotency keys reused with the same and other fingerprints, time jumping
//! past the keys' 24 h and into later hours, gift `c` sometimes high value with a small daily
//! allowance and hourly budget — go to both, one command at a time. Every answer must be the same
//! (orders compared field by field), and at the end so must the state: units taken per gift,
//! each user's orders, coupons granted per channel, also as a freshly connected node reads them.

mod common;

use common::{NOW_MS, claim_req, connect, connect_sharded, namespace, redis_answers};
use hongbao_domain::{Channel, GiftIndex};
use hongbao_store::{
    ClaimLedger, ClaimOutcome, GrantLedger, GrantRequest, HOUR_MS, HighValueRule,
    IDEMPOTENCY_TTL_MS, IdempotencyKey, MemoryStore, ORDERS_OF_MAX, OrderId,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

/// Users of the test; the last one checks that ids beyond 2^53 survive JSON and Lua.
const USERS: [u64; 4] = [1, 2, 3, u64::MAX];
const CHANNELS: [Channel; 3] = [Channel::Swipe, Channel::ArMap, Channel::Scan];
const GIFTS: u16 = 3;
/// Cases: each connects to Redis and runs ~40 commands twice.
const CASES: u32 = 32;

#[derive(Clone, Debug)]
enum Op {
    Grant {
        user: usize,
        channel: usize,
    },
    Claim {
        user: usize,
        channel: usize,
        serial: u32,
        gift: u16,
        key: Option<(u8, u8)>,
    },
    /// The clock moves on: mostly seconds, sometimes around the idempotency keys' lifetime.
    Advance {
        ms: u64,
    },
}

/// The limits of one case: the same for every command, as a campaign's are.
#[derive(Clone, Debug)]
struct Limits {
    stock: [u64; 3],
    per_user: [u32; 3],
    coupons_per_user: [u32; 3],
    budget: [u64; 3],
    /// Gift `c` is high value when set: (value in cents, per user per day, budget per hour).
    high_value: Option<(u64, u32, u64)>,
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::array::uniform3(1u64..6),
        prop::array::uniform3(1u32..3),
        prop::array::uniform3(1u32..4),
        prop::array::uniform3(1u64..10),
        prop::option::of((0u64..4, 1u32..3, 0u64..8)),
    )
        .prop_map(|(stock, per_user, coupons_per_user, budget, high_value)| Limits {
            stock,
            per_user,
            coupons_per_user,
            budget,
            high_value,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS.len();
    let channel = 0..CHANNELS.len();
    prop_oneof![
        3 => (user.clone(), channel.clone()).prop_map(|(user, channel)| Op::Grant { user, channel }),
        6 => (user, channel, 1u32..4, 0..GIFTS, prop::option::of((0u8..3, 0u8..2)))
            .prop_map(|(user, channel, serial, gift, key)| Op::Claim { user, channel, serial, gift, key }),
        1 => prop_oneof![
            4 => 0u64..60_000,
            1 => (IDEMPOTENCY_TTL_MS - 2)..(IDEMPOTENCY_TTL_MS + 2),
            // Into the next hours: a fresh high-value budget.
            1 => HOUR_MS..(3 * HOUR_MS),
        ].prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Runs one case against a fresh namespace; its keys are deleted afterwards.
/// `shards`: the claim layout of the Redis side (`None`: one shard, the layout of old).
fn run_case(limits: &Limits, ops: &[Op], shards: Option<u16>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        let (ns, _cleanup) = namespace();
        let redis = match shards {
            Some(shards) => connect_sharded(&ns, shards).await,
            None => connect(&ns).await,
        };
        let model = MemoryStore::with_campaign(common::binding());
        let mut now_ms = NOW_MS;
        let mut accepted: Vec<OrderId> = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Grant { user, channel } => {
                    let req = GrantRequest {
                        user: USERS[user],
                        channel: CHANNELS[channel],
                        per_user_limit: limits.coupons_per_user[channel],
                        budget: limits.budget[channel],
                    };
                    let ours = redis.grant(req).await.expect("redis grants");
                    let theirs = model.grant(req).await.expect("the model grants");
                    prop_assert_eq!(ours, theirs, "step {}: {:?}", step, op);
                }
                Op::Claim { user, channel, serial, gift, key } => {
                    let g = usize::from(gift);
                    let mut req = claim_req(
                        USERS[user],
                        CHANNELS[channel],
                        serial,
                        gift,
                        limits.stock[g],
                        limits.per_user[g],
                        now_ms,
                    );
                    if g == 2
                        && let Some((value_cents, per_user_per_day, budget_cents_per_hour)) =
                            limits.high_value
                    {
                        req.high_value = Some(HighValueRule {
                            value_cents,
                            per_user_per_day,
                            budget_cents_per_hour,
                        });
                    }
                    // Keys with braces and colons: nothing in them may change a key's slot.
                    req.idempotency = key.map(|(k, f)| {
                        IdempotencyKey::new(format!("k:{{{k}}}"), [f; 32]).expect("a valid key")
                    });
                    let ours = redis.claim(req.clone()).await.expect("redis claims");
                    let theirs = model.claim(req).await.expect("the model claims");
                    prop_assert_eq!(&ours, &theirs, "step {}: {:?}", step, op);
                    if let ClaimOutcome::Accepted(order) = &ours
                        && !accepted.contains(&order.id)
                    {
                        accepted.push(order.id);
                    }
                }
                Op::Advance { ms } => now_ms += ms,
            }
        }
        // A node that connects now reads the same counters the commands left.
        let fresh = connect(&ns).await;
        for gift in (0..GIFTS).map(GiftIndex) {
            let expected = model.stock_taken(gift);
            prop_assert_eq!(redis.stock_taken(gift), expected, "taken of {:?}", gift);
            prop_assert_eq!(fresh.stock_taken(gift), expected, "taken of {:?}, fresh", gift);
        }
        for channel in CHANNELS {
            let expected = model.granted(channel);
            prop_assert_eq!(redis.granted(channel), expected, "granted on {:?}", channel);
            prop_assert_eq!(fresh.granted(channel), expected, "granted on {:?}, fresh", channel);
        }
        for user in USERS {
            let ours = redis.orders_of(user, ORDERS_OF_MAX).await.expect("orders");
            let theirs = model.orders_of(user, ORDERS_OF_MAX).await.expect("orders");
            prop_assert_eq!(ours, theirs, "orders of {}", user);
        }
        for user in USERS {
            let ours = redis.high_value_usage(user, now_ms).await.expect("usage");
            let theirs = model.high_value_usage(user, now_ms).await.expect("usage");
            prop_assert_eq!(ours, theirs, "high-value usage of {}", user);
        }
        for id in &accepted {
            let ours = redis.order(id).await.expect("read");
            prop_assert_eq!(ours, model.order(id).await.expect("read"));
        }
        // Every accepted order, and nothing else, waits to be published.
        let mut should_send = Vec::new();
        for shard in 0..redis.shards() {
            let waiting = redis.unpublished(shard, u64::MAX, 1_000).await.expect("unpublished");
            should_send.extend(waiting.into_iter().map(|o| o.id.to_string()));
        }
        let mut should_send: Vec<OrderId> =
            should_send.iter().map(|id| OrderId::parse(id).expect("an order id")).collect();
        should_send.sort_unstable();
        accepted.sort_unstable();
        prop_assert_eq!(should_send, accepted);
        Ok(())
    })
}

#[test]
fn redis_decides_as_the_memory_store() {
    if !redis_answers() {
        return;
    }
    let config = Config { cases: CASES, source_file: Some(file!()), ..Config::default() };
    proptest!(config, |(limits in limits(), ops in prop::collection::vec(op(), 30..50))| {
        run_case(&limits, &ops, None)?;
    });
}

/// The same over three claim shards: quotas moved between the shards and the pool must give
/// every answer the one stock and the one hour's budget would (commands run one at a time, so
/// a refill always finds what the other shards hold unused).
#[test]
fn redis_with_claim_shards_decides_as_the_memory_store() {
    if !redis_answers() {
        return;
    }
    let config = Config { cases: CASES, source_file: Some(file!()), ..Config::default() };
    proptest!(config, |(limits in limits(), ops in prop::collection::vec(op(), 30..50))| {
        run_case(&limits, &ops, Some(3))?;
    });
}
