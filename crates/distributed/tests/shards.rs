//! Claim shards end to end over Redis and JetStream: claims from users of every shard are
//! published with their shard in the message, leased and delivered once, found by
//! reconciliation's scan in id order, and a claim whose publish never happened is published by
//! the sweeper from its shard.

mod common;

use std::collections::HashSet;

use common::{Env, NOW_MS, binding, claim_req, services_answer};
use hongbao_distributed::{
    DistributedClaims, DistributedLedger, JetStreamQueue, SweeperConfig, sweep_once,
};
use hongbao_domain::{GameIndex, OrderStatus};
use hongbao_jetstream::JetStreamConfig;
use hongbao_queue::{DeliveryQueue, FinalState, Finish};
use hongbao_store::{ClaimLedger, ClaimOutcome, LedgerScan, SCAN_PAGE_MAX};

const SHARDS: u16 = 4;
const G1: GameIndex = GameIndex(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_claims_are_delivered_once_and_reconciled() {
    if !services_answer() {
        return;
    }
    let env = Env::with_shards(binding(), JetStreamConfig::default(), Some(SHARDS)).await;
    assert_eq!(env.ledger.shards(), SHARDS);
    let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
    let mut ids = HashSet::new();
    for user in 1..=40u64 {
        match claims.claim(claim_req(user, 0, NOW_MS)).await.expect("claim") {
            ClaimOutcome::Accepted(o) => assert!(ids.insert(o.id.to_string())),
            other => panic!("{other:?}"),
        }
    }
    claims.shutdown().await;
    let shards: HashSet<u16> = (1..=40u64).map(|u| env.ledger.shard_of(u)).collect();
    assert_eq!(shards.len(), usize::from(SHARDS), "the users cover every shard");

    // One more, recorded by the script and never published (its node died): the sweeper
    // publishes it from its shard's should-send set.
    let orphan = match env.ledger.claim(claim_req(41, 0, NOW_MS)).await.expect("claim") {
        ClaimOutcome::Accepted(o) => o.id.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(env.ledger.unpublished_count().await.expect("count"), 1);
    let config = SweeperConfig { grace_ms: 1_000, ..SweeperConfig::default() };
    let pass = sweep_once(&env.ledger, &env.stream, &config, NOW_MS + 5_000).await.expect("sweep");
    assert_eq!(pass.published, 1);
    assert_eq!(env.ledger.unpublished_count().await.expect("count"), 0);
    ids.insert(orphan);

    // Every message names its order's shard: each is leased with its order and delivered.
    let queue = JetStreamQueue::new(env.ledger.clone(), env.stream.clone());
    let mut delivered = HashSet::new();
    for _ in 0..common::LIVENESS_POLLS {
        for lease in queue.lease(G1, 16, NOW_MS + 60_000).await.expect("lease") {
            assert!(delivered.insert(lease.order.order_id.clone()), "leased once");
            let finish =
                Finish { state: FinalState::Delivered { duplicate: false }, at_ms: NOW_MS + 10 };
            queue.finish(lease, finish).await.expect("finish");
        }
        if delivered.len() == ids.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, ids);

    // Reconciliation reads the campaign's orders and send log across shards, in id order.
    let ledger = DistributedLedger::new(env.ledger.clone(), env.stream.clone());
    let orders = ledger.scan_orders(None, SCAN_PAGE_MAX).await.expect("scan");
    let scanned: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
    let mut sorted = scanned.clone();
    sorted.sort();
    assert_eq!(scanned, sorted, "in id order");
    assert_eq!(scanned.iter().cloned().collect::<HashSet<_>>(), ids);
    assert!(orders.iter().all(|o| o.status == OrderStatus::Delivered));
    let sent = ledger.scan_sent(None, SCAN_PAGE_MAX).await.expect("scan sent");
    assert_eq!(sent.len(), ids.len());
    // Paging by `after` walks the same ids.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ledger.scan_orders(after, 7).await.expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page.iter().map(|o| o.id.to_string()));
    }
    assert_eq!(paged, scanned);
    // Each order is found by id alone too (reconciliation's repairs know only the id).
    for order in &orders {
        let found = env.ledger.stored_order(&order.id).await.expect("read").expect("found");
        assert_eq!(found.order, *order);
    }
}

/// A node learns what other nodes took: its view of a gift's units taken (what its gift lists
/// hide sold-out gifts by) catches up with another node's claims over every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sees_the_units_other_nodes_took() {
    if !services_answer() {
        return;
    }
    let env = Env::with_shards(binding(), JetStreamConfig::default(), Some(SHARDS)).await;
    let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
    // The other node: its own ledger over the same namespace, layout taken from Redis.
    let conn = hongbao_redis::connect(common::REDIS_URL).await.expect("redis");
    let other = std::sync::Arc::new(
        hongbao_redis::RedisLedger::over(conn, &env.namespace, binding(), None)
            .await
            .expect("the other node's ledger"),
    );
    let watcher = DistributedClaims::start(other, env.stream.clone());
    let gift = hongbao_domain::GiftIndex(0);
    assert_eq!(watcher.stock_taken(gift), 0);
    for user in 1..=12u64 {
        let outcome = claims.claim(claim_req(user, 0, NOW_MS)).await.expect("claim");
        assert!(matches!(outcome, ClaimOutcome::Accepted(_)), "{outcome:?}");
    }
    common::eventually("the other node sees 12 units taken", || async {
        watcher.stock_taken(gift) == 12
    })
    .await;
    claims.shutdown().await;
    watcher.shutdown().await;
}
