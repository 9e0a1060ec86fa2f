//! Claim shards on a real Redis: a gift's stock split into quotas is never oversold under
//! concurrent claims from every shard, sells out completely, a dead mover's transfer is
//! finished by the sweeper, and a campaign's layout never changes.

mod common;

use std::sync::Arc;

use common::{NOW_MS, claim_req, connect, connect_sharded, namespace, redis_answers};
use hongbao_domain::{Channel, GiftIndex};
use hongbao_redis::testing::{quota_accounts, strand_transfer};
use hongbao_redis::{RedisLedger, shard_of};
use hongbao_store::{ClaimLedger, ClaimOutcome, StoreError};

const SHARDS: u16 = 8;

/// One claim of gift `a` (stock `stock`) by `user`, with their first swipe coupon.
async fn claim(ledger: &RedisLedger, user: u64, stock: u64) -> ClaimOutcome {
    let req = claim_req(user, Channel::Swipe, 1, 0, stock, 1, NOW_MS);
    ledger.claim(req).await.expect("redis answers")
}

/// Users `from..` that live in shard `k`.
fn users_of_shard(k: u16, from: u64, count: usize) -> Vec<u64> {
    (from..).filter(|u| shard_of(*u, SHARDS) == k).take(count).collect()
}

/// The units of gift `a` are where the design says, and nowhere twice: nothing pending, the
/// pool's count of units given out is the shards' quotas, no shard took more than its quota,
/// and `sold` units are taken in all.
async fn assert_units_accounted(ledger: &RedisLedger, stock: u64, sold: u64) {
    let accounts = quota_accounts(ledger, GiftIndex(0)).await.expect("redis answers");
    assert_eq!(accounts.pending_moves, 0, "{accounts:?}");
    assert_eq!(accounts.allotted, accounts.quotas.iter().sum::<u64>(), "{accounts:?}");
    assert!(accounts.allotted <= stock, "{accounts:?}");
    assert!(accounts.taken.iter().zip(&accounts.quotas).all(|(t, q)| t <= q), "{accounts:?}");
    assert_eq!(accounts.taken.iter().sum::<u64>(), sold, "{accounts:?}");
}

/// Claims by new users, one at a time, until one is refused for stock: the units still to be
/// had anywhere.
async fn sell_out(ledger: &RedisLedger, stock: u64, first_user: u64) -> u64 {
    let mut sold = 0;
    for user in first_user.. {
        match claim(ledger, user, stock).await {
            ClaimOutcome::Accepted(_) => sold += 1,
            ClaimOutcome::OutOfStock => return sold,
            other => panic!("user {user}: {other:?}"),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_on_every_shard_never_oversells_and_the_gift_sells_out() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let ledger = Arc::new(connect_sharded(&ns, SHARDS).await);
    assert_eq!(ledger.shards(), SHARDS);
    let stock = 100;
    // 400 users over all shards, 32 claims in flight at a time.
    let mut accepted = 0u64;
    let users: Vec<u64> = (1..=400).collect();
    for wave in users.chunks(32) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&user| {
                let ledger = ledger.clone();
                tokio::spawn(async move { claim(&ledger, user, stock).await })
            })
            .collect();
        for task in tasks {
            match task.await.expect("the claim task") {
                ClaimOutcome::Accepted(_) => accepted += 1,
                ClaimOutcome::OutOfStock => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(accepted <= stock, "oversold: {accepted} of {stock}");
    assert_units_accounted(&ledger, stock, accepted).await;
    // Whatever the storm left in the shards' quotas, later claims find: the gift sells out.
    let later = sell_out(&ledger, stock, 10_000).await;
    assert_eq!(accepted + later, stock, "storm {accepted}, later {later}");
    assert_units_accounted(&ledger, stock, stock).await;
    let fresh = connect(&ns).await;
    assert_eq!(fresh.shards(), SHARDS, "a node asking for no layout takes the stored one");
    assert_eq!(fresh.stock_taken(GiftIndex(0)), stock);
}

#[tokio::test]
async fn quota_left_in_idle_shards_comes_back_for_a_busy_one() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let ledger = connect_sharded(&ns, SHARDS).await;
    let stock = 40;
    // One claim in every shard: each takes a share of the pool and keeps the rest idle.
    for k in 0..SHARDS {
        let user = users_of_shard(k, 1, 1)[0];
        assert!(matches!(claim(&ledger, user, stock).await, ClaimOutcome::Accepted(_)));
    }
    // Then only shard 3's users claim: they get every remaining unit, from the pool and back
    // from the idle shards.
    let mut sold = u64::from(SHARDS);
    for user in users_of_shard(3, 1_000, 100) {
        match claim(&ledger, user, stock).await {
            ClaimOutcome::Accepted(_) => sold += 1,
            ClaimOutcome::OutOfStock => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sold, stock);
    assert_eq!(ledger.stock_taken(GiftIndex(0)), stock);
    assert_units_accounted(&ledger, stock, stock).await;
}

#[tokio::test]
async fn a_transfer_whose_mover_died_is_finished_by_the_sweeper() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let ledger = connect_sharded(&ns, SHARDS).await;
    let stock = 10;
    // A node took the whole pool for shard 5 and died before shard 5 received it.
    let k = 5;
    let mut stranded = 0;
    while stranded < stock {
        let units = strand_transfer(&ledger, k, GiftIndex(0), stock, NOW_MS).await.expect("allot");
        assert!(units > 0, "the pool still held units");
        stranded += units;
    }
    // Nothing can be sold meanwhile: the units are in flight, counted by neither side.
    let user = users_of_shard(k, 1, 1)[0];
    assert_eq!(claim(&ledger, user, stock).await, ClaimOutcome::OutOfStock);
    // Within the grace period the sweeper leaves the transfer alone (its mover may be alive).
    let early = ledger.sweep_quota_transfers(NOW_MS + 1_000, 5_000).await.expect("sweep");
    assert_eq!(early.transfers, 0);
    let late = ledger.sweep_quota_transfers(NOW_MS + 10_000, 5_000).await.expect("sweep");
    assert!(late.transfers > 0);
    let again = ledger.sweep_quota_transfers(NOW_MS + 10_000, 5_000).await.expect("sweep");
    assert_eq!(again.transfers, 0, "a finished transfer is no longer pending");
    // Every unit is sellable again, exactly once.
    assert_eq!(sell_out(&ledger, stock, 50_000).await, stock);
    assert_units_accounted(&ledger, stock, stock).await;
}

#[tokio::test]
async fn a_campaigns_claim_layout_never_changes() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let sharded = connect_sharded(&ns, 4).await;
    assert!(matches!(claim(&sharded, 1, 5).await, ClaimOutcome::Accepted(_)));
    let conn = hongbao_redis::connect(common::REDIS_URL).await.expect("connect");
    let other = RedisLedger::over(conn.clone(), &ns, common::binding(), Some(2)).await;
    assert!(matches!(other, Err(StoreError::InvalidConfig(_))), "{:?}", other.map(|_| ()));
    let same = RedisLedger::over(conn.clone(), &ns, common::binding(), Some(4)).await;
    assert_eq!(same.expect("the same layout").shards(), 4);
    // A campaign written with one shard stays so: asking it for shards is refused.
    let (old, _cleanup_old) = namespace();
    let single = connect(&old).await;
    assert!(matches!(claim(&single, 1, 5).await, ClaimOutcome::Accepted(_)));
    let split = RedisLedger::over(conn, &old, common::binding(), Some(4)).await;
    assert!(matches!(split, Err(StoreError::InvalidConfig(_))));
}
