//! Embedded-adapter specifics of claims and queues: restart recovery, group commit, idempotency
//! key purging, repair of a hand-deleted queue entry, binding checks.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::claims::{
    self, A, B, DELIVERED, G1, G2, HOT, NOW, accept, claim_req, finish, id, lease, lease_lost,
    oldest, retry,
};
use hongbao_clock::ManualClock;
use hongbao_queue::{DeliveryQueue, FinalState, QueueError};
use hongbao_store::{
    CampaignBinding, ClaimLedger, ClaimOutcome, EmbeddedConfig, EmbeddedStore, GiftIndex,
    HighValueUsage, IdempotencyKey, LedgerRepair, LedgerScan, Order, QueuedRef, RequeueOutcome,
    SentRecord, StoreError, day_ends_at_ms, hour_ends_at_ms,
};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open_with(dir, EmbeddedConfig::default(), claims::binding()).expect("open store")
}

/// Everything a restart must reproduce exactly.
#[derive(Debug, PartialEq)]
struct Snapshot {
    orders: Vec<Order>,
    sent: Vec<SentRecord>,
    queues: Vec<Vec<QueuedRef>>,
    depths: Vec<u64>,
    stock: Vec<u64>,
}

async fn snapshot(store: &EmbeddedStore) -> Snapshot {
    Snapshot {
        orders: claims::all_orders(store).await,
        sent: claims::all_sent(store).await,
        queues: vec![claims::all_queued(store, G1).await, claims::all_queued(store, G2).await],
        depths: vec![store.queue_depth(G1), store.queue_depth(G2)],
        stock: vec![store.stock_taken(HOT), store.stock_taken(A), store.stock_taken(B)],
    }
}

/// (c) Claims (concurrent and not), deliveries, retries and leases, then a restart: orders,
/// counters, queues and the send log are identical; leases are gone, so every unfinished entry
/// is leasable again (at-least-once) and a lease from before the restart ends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_recovers_orders_counters_and_queues_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(open(dir.path()));
    claims::concurrent_claims_take_exactly_the_stock(Arc::clone(&store)).await;
    for user in 0..10 {
        accept(&*store, claim_req(user, 1, B, 100, 1, NOW + user)).await;
    }
    let entries = lease(&*store, G2, 6, NOW + 100).await;
    assert_eq!(entries.len(), 6);
    for entry in &entries[..2] {
        finish(&*store, entry, DELIVERED, NOW + 101).await.expect("finish");
    }
    retry(&*store, &entries[2], NOW + 5_000, "busy", NOW + 101).await.expect("retry");
    let gone = FinalState::Dead { reason: "gone".into() };
    finish(&*store, &entries[3], gone, NOW + 101).await.expect("finish");
    // entries[4..6] stay leased: in flight at the "crash".
    let hot = lease(&*store, G1, 3, NOW + 100).await;
    let before = snapshot(&store).await;
    assert_eq!(before.depths, vec![1_000, 10 - 3]);
    assert_eq!(before.sent.len(), 2);
    let store = Arc::into_inner(store).expect("tasks are done");
    store.close().expect("clean close");

    let store = open(dir.path());
    assert_eq!(snapshot(&store).await, before);
    assert_eq!((store.leased(G1), store.leased(G2)), (0, 0));
    // Nothing is in flight after a restart: the oldest waiting entry is the oldest entry.
    let oldest_g2 = before.queues[1].iter().map(|q| q.ready_at_ms).min();
    assert_eq!(oldest(&store, G2).await, oldest_g2);
    // A lease from before the restart ends nothing, even for an entry leasable again.
    assert!(lease_lost(finish(&store, &entries[4], DELIVERED, NOW + 200).await));
    assert!(lease_lost(finish(&store, &hot[0], DELIVERED, NOW + 200).await));
    // In flight before the crash: delivered again (the serial makes it harmless).
    let again = lease(&store, G2, 10, NOW + 200).await;
    let ids: Vec<_> = again.iter().map(id).collect();
    assert!(ids.contains(&id(&entries[4])) && ids.contains(&id(&entries[5])), "{ids:?}");
    assert!(!ids.contains(&id(&entries[2])), "retrying, not due yet");
    // 10 orders - 2 delivered - 1 dead = 7 in the queue, one of them retrying later.
    assert_eq!(again.len(), 6);
    assert_eq!(lease(&store, G1, 2_000, NOW + 200).await.len(), 1_000);
    // Counters continue: the stock stays taken, a replay is still a replay.
    assert_eq!(
        store.claim(claim_req(5_000_000, 1, HOT, 1_000, 1, NOW)).await,
        Ok(ClaimOutcome::OutOfStock)
    );
    let replay = store.claim(claim_req(0, 1, B, 100, 1, NOW + 300)).await.expect("claim");
    assert!(matches!(replay, ClaimOutcome::Replayed(_)), "{replay:?}");
    assert_eq!(
        store.claim(claim_req(0, 2, B, 100, 1, NOW + 300)).await,
        Ok(ClaimOutcome::LimitReached),
        "the per-user count survived"
    );
}

/// Dropping the store (no clean close) loses nothing answered either.
#[tokio::test]
async fn drop_then_reopen_keeps_every_accepted_claim() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut accepted = Vec::new();
    {
        let store = open(dir.path());
        for user in 0..20 {
            accepted.push(accept(&store, claim_req(user, 1, A, 20, 1, NOW + user)).await);
        }
        for user in 20..25 {
            let refused = store.claim(claim_req(user, 1, A, 20, 1, NOW)).await;
            assert_eq!(refused, Ok(ClaimOutcome::OutOfStock));
        }
    }
    let store = open(dir.path());
    assert_eq!(store.stock_taken(A), 20);
    assert_eq!(store.queue_depth(G1), 20);
    for order in &accepted {
        assert_eq!(store.order(&order.id).await.expect("read").as_ref(), Some(order));
    }
}

/// Group commit under concurrency: far fewer fsyncs than claims. Counts, no clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_share_fsyncs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(open(dir.path()));
    let accepted = claims::concurrent_claims_take_exactly_the_stock(Arc::clone(&store)).await;
    let stats = store.stats();
    assert_eq!(stats.commit_failures, 0);
    assert!(stats.fsyncs < accepted.len() as u64, "{stats:?} for {} claims", accepted.len());
    assert!(stats.batch_len_max > 1, "{stats:?}");
    // Every synced commit is timed into exactly one bucket, and a real fsync takes some time.
    assert_eq!(stats.synced_commits_by_ms.iter().sum::<u64>(), stats.fsyncs, "{stats:?}");
    assert!(stats.synced_commit_max_us > 0, "{stats:?}");
}

/// Expired idempotency keys are dropped by compaction; live ones stay and still conflict.
#[tokio::test]
async fn expired_idempotency_keys_are_purged_by_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The compaction filter reads the injected clock, here a manual one standing at NOW.
    let wall_ms = NOW;
    let config = EmbeddedConfig { clock: ManualClock::new(wall_ms), ..EmbeddedConfig::default() };
    let store = EmbeddedStore::open_with(dir.path(), config, claims::binding()).expect("open");
    let key = |k: u64, fp: u8| IdempotencyKey::new(format!("key-{k}"), [fp; 32]).expect("key");
    // Keys written "in 1970": long expired by the clock the filter uses.
    for user in 0..30 {
        let req = claim_req(user, 1, A, 1_000, 1, 1_000 + user).with_idempotency(key(user, 1));
        accept(&store, req).await;
    }
    for user in 100..105 {
        let req = claim_req(user, 1, A, 1_000, 1, wall_ms).with_idempotency(key(user, 1));
        accept(&store, req).await;
    }
    assert_eq!(store.compact_idempotency_keys().expect("compact"), 5);
    let conflict = claim_req(100, 2, A, 1_000, 2, wall_ms + 1).with_idempotency(key(100, 2));
    assert_eq!(store.claim(conflict).await, Ok(ClaimOutcome::IdempotencyConflict));
    // The orders behind purged keys are untouched.
    assert_eq!(store.stock_taken(A), 35);
}

/// An entry deleted by hand (store closed) is found and repaired by requeue.
#[tokio::test]
async fn requeue_repairs_an_entry_deleted_by_hand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lost, kept) = {
        let store = open(dir.path());
        let lost = accept(&store, claim_req(1, 1, A, 10, 1, NOW)).await;
        let kept = accept(&store, claim_req(2, 1, A, 10, 1, NOW + 1)).await;
        store.close().expect("close");
        (lost, kept)
    };
    assert!(EmbeddedStore::remove_queue_entry_by_hand(dir.path(), &lost).expect("surgery"));
    assert!(!EmbeddedStore::remove_queue_entry_by_hand(dir.path(), &lost).expect("surgery"));
    let store = open(dir.path());
    assert_eq!(store.queue_depth(G1), 1, "the depth is the keys, recounted at open");
    assert!(!store.in_queue(&lost).await.expect("read"));
    assert!(store.in_queue(&kept).await.expect("read"));
    assert!(matches!(
        store.requeue(&lost.id, NOW + 2, NOW + 9).await,
        Ok(RequeueOutcome::Repaired(_))
    ));
    assert!(matches!(
        store.requeue(&kept.id, NOW + 2, NOW + 9).await,
        Ok(RequeueOutcome::Unchanged(_))
    ));
    assert_eq!(store.queue_depth(G1), 2);
    let leased: Vec<_> =
        store.lease(G1, 10, NOW + 3).await.expect("lease").iter().map(id).collect();
    assert_eq!(leased, vec![lost.id, kept.id]);
}

#[tokio::test]
async fn claims_need_a_matching_binding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open");
    assert!(matches!(
        store.claim(claim_req(1, 1, A, 10, 1, NOW)).await,
        Err(StoreError::InvalidConfig(_))
    ));
    assert!(matches!(
        store.lease(G1, 1, NOW).await,
        Err(QueueError::Unavailable(reason)) if reason.contains("not bound")
    ));
    assert_eq!(store.stock_taken(A), 0);
    store.close().expect("close");
    // Reopened with the binding, gifts are addressed by index but persisted by id: a binding
    // with the gifts reordered sees each gift's own count.
    {
        let store = open(dir.path());
        accept(&store, claim_req(1, 1, A, 10, 1, NOW)).await;
    }
    let reordered = CampaignBinding::new(
        claims::CAMPAIGN,
        vec!["g2".into(), "g1".into()],
        vec![
            ("a".into(), hongbao_store::GameIndex(1)),
            ("hot".into(), hongbao_store::GameIndex(1)),
        ],
    )
    .expect("binding");
    let store =
        EmbeddedStore::open_with(dir.path(), EmbeddedConfig::default(), reordered).expect("open");
    assert_eq!((store.stock_taken(GiftIndex(0)), store.stock_taken(GiftIndex(1))), (1, 0));
    assert_eq!(
        (
            store.queue_depth(hongbao_store::GameIndex(0)),
            store.queue_depth(hongbao_store::GameIndex(1))
        ),
        (0, 1)
    );
}

/// The high-value counts are on disk: after a restart the day's allowance and the hour's budget
/// are as spent as before it, so a restart cannot hand them out twice.
#[tokio::test]
async fn high_value_counts_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 2 a day per user, a budget of 3 gifts of 100 cents an hour.
    let req = |user, serial| claims::high_value_req(user, serial, NOW, 100, 2, 300);
    {
        let store = open(dir.path());
        accept(&store, req(1, 1)).await;
        accept(&store, req(1, 2)).await;
        accept(&store, req(2, 1)).await;
    }
    let store = open(dir.path());
    let usage = store.high_value_usage(1, NOW).await.expect("read");
    assert_eq!(usage, HighValueUsage { claimed_today: 2, spent_this_hour_cents: 300 });
    let day_over = ClaimOutcome::HighValueDailyLimit { resets_at_ms: day_ends_at_ms(NOW) };
    assert_eq!(store.claim(req(1, 3)).await, Ok(day_over));
    let budget_over = ClaimOutcome::HighValueBudgetExhausted { resets_at_ms: hour_ends_at_ms(NOW) };
    assert_eq!(store.claim(req(3, 1)).await, Ok(budget_over));
}
