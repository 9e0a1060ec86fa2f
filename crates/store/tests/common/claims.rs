//! The behavioural suite every claim store passes ([`ClaimLedger`], the delivery-queue port
//! [`DeliveryQueue`], [`LedgerScan`], [`LedgerRepair`]). Each function takes a fresh, empty store
//! bound to [`binding`].

use std::collections::HashSet;
use std::sync::Arc;

use hongbao_domain::{Coupon, RoleId, ZoneId};
use hongbao_queue::{DeliveryQueue, FinalState, Finish, Leased, QueueError, Retry};
use hongbao_store::{
    CampaignBinding, Channel, ClaimLedger, ClaimOutcome, ClaimRequest, GameIndex, GiftIndex,
    HighValueRule, HighValueUsage, IDEMPOTENCY_TTL_MS, IdempotencyKey, LedgerRepair, LedgerScan,
    Order, OrderId, OrderStatus, QueueEntry, RecordOutcome, RequeueOutcome, SentRecord, StoreError,
};

pub const CAMPAIGN: &str = "spring-2027";
pub const NOW: u64 = 1_800_000_000_000;
pub const G1: GameIndex = GameIndex(0);
pub const G2: GameIndex = GameIndex(1);
/// Gifts: HOT and A in game g1, B in game g2.
pub const HOT: GiftIndex = GiftIndex(0);
pub const A: GiftIndex = GiftIndex(1);
pub const B: GiftIndex = GiftIndex(2);

pub fn binding() -> CampaignBinding {
    CampaignBinding::new(
        CAMPAIGN,
        vec!["g1".into(), "g2".into()],
        vec![("hot".into(), G1), ("a".into(), G1), ("b".into(), G2)],
    )
    .expect("valid binding")
}

/// Claims traits together.
pub trait Store:
    ClaimLedger + DeliveryQueue<Lease = QueueEntry> + LedgerScan + LedgerRepair
{
}
impl<T> Store for T where
    T: ClaimLedger + DeliveryQueue<Lease = QueueEntry> + LedgerScan + LedgerRepair
{
}

/// A leased entry as the port hands it out; the store's own entry is its lease.
pub type Entry = Leased<QueueEntry>;

pub const DELIVERED: FinalState = FinalState::Delivered { duplicate: false };

pub fn claim_req(
    user: u64,
    serial: u32,
    gift: GiftIndex,
    stock: u64,
    per_user: u32,
    now_ms: u64,
) -> ClaimRequest {
    ClaimRequest {
        coupon: Coupon {
            campaign_id: CAMPAIGN.into(),
            user,
            channel: Channel::Swipe,
            serial,
            expires_at_unix_s: i64::MAX,
        },
        gift,
        zone_id: ZoneId(1),
        role_id: RoleId(user),
        stock,
        per_user_limit: per_user,
        now_ms,
        deliver_by_ms: now_ms + 48 * 3600 * 1000,
        idempotency: None,
        high_value: None,
    }
}

pub async fn claim_ok<S: Store>(store: &S, req: ClaimRequest) -> ClaimOutcome {
    store.claim(req).await.expect("the store answers")
}

pub async fn accept<S: Store>(store: &S, req: ClaimRequest) -> Order {
    match claim_ok(store, req).await {
        ClaimOutcome::Accepted(order) => *order,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

pub async fn all_orders<S: Store>(store: &S) -> Vec<Order> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_orders(after, 7).await.expect("scan");
        let Some(last) = page.last() else { return out };
        after = Some(last.id);
        out.extend(page);
    }
}

pub async fn all_sent<S: Store>(store: &S) -> Vec<SentRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_sent(after, 5).await.expect("scan");
        let Some(last) = page.last() else { return out };
        after = Some(*last);
        out.extend(page);
    }
}

pub async fn all_queued<S: Store>(store: &S, game: GameIndex) -> Vec<hongbao_store::QueuedRef> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_queue(game, after, 6).await.expect("scan");
        let Some(last) = page.last() else { return out };
        after = Some(*last);
        out.extend(page);
    }
}

/// (a) 64 tasks, 1,280 distinct claimants, stock 1,000: exactly 1,000 orders, all queued.
/// Returns the accepted orders.
pub async fn concurrent_claims_take_exactly_the_stock<S: Store>(store: Arc<S>) -> Vec<Order> {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 20;
    const STOCK: u64 = 1_000;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for attempt in 0..PER_TASK {
                let user = 1_000_000 + task * PER_TASK + attempt;
                let outcome = store.claim(claim_req(user, 1, HOT, STOCK, 1, NOW + attempt)).await;
                seen.push(outcome.expect("answered"));
            }
            seen
        }));
    }
    let mut accepted = Vec::new();
    let mut out_of_stock = 0;
    for task in tasks {
        for outcome in task.await.expect("task completes") {
            match outcome {
                ClaimOutcome::Accepted(order) => accepted.push(*order),
                ClaimOutcome::OutOfStock => out_of_stock += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(accepted.len() as u64, STOCK);
    assert_eq!(out_of_stock, TASKS * PER_TASK - STOCK);
    assert_eq!(store.stock_taken(HOT), STOCK);
    let ids: HashSet<OrderId> = accepted.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), accepted.len(), "no duplicate order id");
    for order in &accepted {
        let stored = store.order(&order.id).await.expect("read").expect("present");
        assert_eq!(&stored, order);
        assert_eq!(stored.status, OrderStatus::Queued);
        assert!(store.in_queue(&stored).await.expect("read"), "{} is queued", stored.id);
    }
    assert_eq!(store.queue_depth(G1), STOCK);
    assert_eq!(all_queued(&*store, G1).await.len() as u64, STOCK);
    assert_eq!(all_orders(&*store).await.len() as u64, STOCK);
    accepted
}

/// (b) replays, coupon conflicts, per-user limits, idempotency keys.
pub async fn replays_limits_and_idempotency<S: Store>(store: S) {
    let first = accept(&store, claim_req(1, 1, A, 10, 2, NOW)).await;
    assert_eq!(first.id, OrderId::derive(CAMPAIGN, 1, "swipe-1"));
    assert_eq!((first.gift_id.as_str(), first.game_id.as_str()), ("a", "g1"));
    assert_eq!((first.status, first.ready_at_ms), (OrderStatus::Queued, Some(NOW)));
    // The same claim again, later, with another role: the same order, unchanged.
    let mut again = claim_req(1, 1, A, 10, 2, NOW + 5);
    again.role_id = RoleId(u64::MAX);
    assert_eq!(claim_ok(&store, again).await, ClaimOutcome::Replayed(Box::new(first.clone())));
    // The same coupon for another gift: refused, naming the first order.
    assert_eq!(
        claim_ok(&store, claim_req(1, 1, B, 10, 2, NOW + 6)).await,
        ClaimOutcome::CouponAlreadyRedeemed(Box::new(first.clone()))
    );
    // Per-user limit of the gift: 2 with two coupons, the third coupon hears the limit.
    accept(&store, claim_req(1, 2, A, 10, 2, NOW + 7)).await;
    assert_eq!(
        claim_ok(&store, claim_req(1, 3, A, 10, 2, NOW + 8)).await,
        ClaimOutcome::LimitReached
    );
    // ... which does not redeem the coupon: it still claims another gift.
    accept(&store, claim_req(1, 3, B, 10, 2, NOW + 9)).await;
    assert_eq!(store.stock_taken(A), 2);
    assert_eq!(store.stock_taken(B), 1);

    // Idempotency keys.
    let key = |fp: u8| IdempotencyKey::new("key-1", [fp; 32]).expect("valid key");
    let with_key =
        |serial, gift, fp, now| claim_req(2, serial, gift, 10, 5, now).with_idempotency(key(fp));
    let keyed = accept(&store, with_key(1, A, 1, NOW)).await;
    // Same key, same request: the recorded answer again (Accepted, the same order).
    assert_eq!(
        claim_ok(&store, with_key(1, A, 1, NOW + 1)).await,
        ClaimOutcome::Accepted(Box::new(keyed.clone()))
    );
    // Same key, another request: a conflict, nothing changes.
    assert_eq!(
        claim_ok(&store, with_key(2, A, 2, NOW + 2)).await,
        ClaimOutcome::IdempotencyConflict
    );
    assert_eq!(store.stock_taken(A), 3);
    assert!(store.order(&OrderId::derive(CAMPAIGN, 2, "swipe-2")).await.expect("read").is_none());
    // Keys are per user: another user's same key is fresh.
    accept(&store, claim_req(3, 1, A, 10, 5, NOW + 3).with_idempotency(key(9))).await;
    // After 24 h the key is forgotten: a different request with it is decided afresh.
    let later = NOW + IDEMPOTENCY_TTL_MS;
    assert_eq!(
        claim_ok(&store, with_key(1, A, 2, later - 1)).await,
        ClaimOutcome::IdempotencyConflict
    );
    let fresh = accept(&store, with_key(2, A, 2, later)).await;
    assert_eq!(
        claim_ok(&store, with_key(2, A, 2, later + 1)).await,
        ClaimOutcome::Accepted(Box::new(fresh))
    );
    // A key first used on a replay records the replay.
    let replay_key = IdempotencyKey::new("key-2", [7; 32]).expect("valid key");
    let replayed = claim_req(2, 1, A, 10, 5, NOW + 10).with_idempotency(replay_key);
    assert_eq!(
        claim_ok(&store, replayed.clone()).await,
        ClaimOutcome::Replayed(Box::new(keyed.clone()))
    );
    assert_eq!(claim_ok(&store, replayed).await, ClaimOutcome::Replayed(Box::new(keyed)));
}

/// (e) Rejections and invalid requests change nothing.
pub async fn rejections_change_nothing<S: Store>(store: S) {
    accept(&store, claim_req(1, 1, B, 1, 1, NOW)).await;
    let before = all_orders(&store).await;
    assert_eq!(claim_ok(&store, claim_req(2, 1, B, 1, 1, NOW)).await, ClaimOutcome::OutOfStock);
    assert_eq!(claim_ok(&store, claim_req(1, 2, B, 5, 1, NOW)).await, ClaimOutcome::LimitReached);
    let mut bad = vec![
        (claim_req(2, 1, GiftIndex(3), 5, 1, NOW), "unbound gift"),
        (claim_req(2, 1, A, 5, 1, NOW), "other campaign"),
    ];
    bad[1].0.coupon.campaign_id = "autumn".into();
    for (req, case) in bad {
        let got = store.claim(req).await;
        assert!(
            matches!(got, Err(StoreError::InvalidConfig(_) | StoreError::InvalidRequest(_))),
            "{case}: {got:?}"
        );
    }
    assert_eq!(all_orders(&store).await, before);
    assert_eq!((store.stock_taken(A), store.stock_taken(B)), (0, 1));
    assert_eq!((store.queue_depth(G1), store.queue_depth(G2)), (0, 1));
    // The coupons refused above are still good.
    accept(&store, claim_req(2, 1, A, 5, 1, NOW)).await;
    accept(&store, claim_req(1, 2, A, 5, 1, NOW)).await;
}

pub async fn lease<S: Store>(store: &S, game: GameIndex, max: usize, now_ms: u64) -> Vec<Entry> {
    store.lease(game, max, now_ms).await.expect("lease")
}

/// The same lease again, to end it a second time (the port takes an entry by value).
pub fn same(entry: &Entry) -> Entry {
    Leased { order: entry.order.clone(), lease: entry.lease.clone() }
}

pub fn id(entry: &Entry) -> OrderId {
    entry.lease.order.id
}

pub async fn finish<S: Store>(
    store: &S,
    entry: &Entry,
    state: FinalState,
    at_ms: u64,
) -> Result<(), QueueError> {
    store.finish(same(entry), Finish { state, at_ms }).await
}

pub async fn retry<S: Store>(
    store: &S,
    entry: &Entry,
    ready_at_ms: u64,
    error: &str,
    at_ms: u64,
) -> Result<(), QueueError> {
    store.retry(same(entry), Retry { ready_at_ms, error: error.into(), at_ms }).await
}

pub async fn release<S: Store>(store: &S, entry: &Entry) -> Result<(), QueueError> {
    store.release(same(entry)).await
}

/// The lease ended as asked: the order as it is now.
pub async fn applied<S: Store>(store: &S, entry: &Entry, ended: Result<(), QueueError>) -> Order {
    assert_eq!(ended, Ok(()), "expected the lease of {} to end", id(entry));
    store.order(&id(entry)).await.expect("read").expect("a leased order exists")
}

/// The lease had already ended (or predates a restart): nothing changed.
pub fn lease_lost(ended: Result<(), QueueError>) -> bool {
    matches!(ended, Err(QueueError::LeaseLost(_)))
}

/// The due time of `game`'s oldest entry not in flight.
pub async fn oldest<S: Store>(store: &S, game: GameIndex) -> Option<u64> {
    store.depth(game).await.expect("read").oldest_ready_ms
}

/// (d) Leases, finish, retry, release: each lease ends once; finish is exactly-once.
pub async fn queue_leases_end_exactly_once<S: Store>(store: S) {
    let o1 = accept(&store, claim_req(1, 1, A, 10, 1, NOW)).await;
    let o2 = accept(&store, claim_req(2, 1, A, 10, 1, NOW + 10)).await;
    let o3 = accept(&store, claim_req(3, 1, A, 10, 1, NOW + 20)).await;
    let other_game = accept(&store, claim_req(4, 1, B, 10, 1, NOW)).await;
    assert_eq!(oldest(&store, G1).await, Some(NOW));
    assert!(lease(&store, G1, 10, NOW - 1).await.is_empty(), "nothing due yet");
    let first = lease(&store, G1, 2, NOW + 30).await;
    assert_eq!(first.iter().map(id).collect::<Vec<_>>(), vec![o1.id, o2.id], "due order");
    assert!(
        first.iter().all(|e| e.lease.order.status == OrderStatus::Delivering && e.lease.game == G1)
    );
    assert!(first.iter().all(|e| e.order.order_id == id(e).as_str() && e.order.game == G1));
    let second = lease(&store, G1, 10, NOW + 30).await;
    assert_eq!(second.iter().map(id).collect::<Vec<_>>(), vec![o3.id], "never leased twice");
    assert!(lease(&store, G1, 10, NOW + 30).await.is_empty());
    assert_eq!((store.queue_depth(G1), store.leased(G1)), (3, 3));
    assert_eq!((store.queue_depth(G2), store.leased(G2)), (1, 0));

    // Delivered: status, send log, entry gone — once.
    let delivered =
        applied(&store, &first[0], finish(&store, &first[0], DELIVERED, NOW + 40).await).await;
    assert_eq!(delivered.status, OrderStatus::Delivered);
    assert_eq!(
        (delivered.delivered_at_ms, delivered.ready_at_ms, delivered.attempts),
        (Some(NOW + 40), None, 1)
    );
    assert!(lease_lost(finish(&store, &first[0], DELIVERED, NOW + 41).await));
    assert!(lease_lost(retry(&store, &first[0], NOW, "x", NOW + 41).await));
    assert!(lease_lost(release(&store, &first[0]).await));
    assert_eq!(
        all_sent(&store).await,
        vec![SentRecord { order_id: o1.id, delivered_at_ms: NOW + 40 }]
    );
    assert_eq!(store.order(&o1.id).await.expect("read"), Some(delivered.clone()));
    assert!(!store.in_queue(&delivered).await.expect("read"));
    assert_eq!((store.queue_depth(G1), store.leased(G1)), (2, 2));

    // Retry: retrying, attempts, error, due later; leasable again only when due.
    let retried = retry(&store, &first[1], NOW + 500, "busy", NOW + 40).await;
    let retrying = applied(&store, &first[1], retried).await;
    assert_eq!((retrying.status, retrying.attempts), (OrderStatus::Retrying, 1));
    assert_eq!(
        (retrying.ready_at_ms, retrying.last_error.as_deref()),
        (Some(NOW + 500), Some("busy"))
    );
    assert!(store.in_queue(&retrying).await.expect("read"));
    assert!(lease_lost(finish(&store, &first[1], DELIVERED, NOW + 41).await));
    assert!(lease(&store, G1, 10, NOW + 499).await.is_empty());
    let again = lease(&store, G1, 10, NOW + 500).await;
    assert_eq!(again.len(), 1);
    assert_eq!((id(&again[0]), again[0].lease.order.status), (o2.id, OrderStatus::Delivering));
    let dead_state = FinalState::Dead { reason: "role deleted".into() };
    let dead =
        applied(&store, &again[0], finish(&store, &again[0], dead_state, NOW + 501).await).await;
    assert_eq!(
        (dead.status, dead.attempts, dead.last_error.as_deref()),
        (OrderStatus::Dead, 2, Some("role deleted"))
    );

    // Release: nothing written, leasable again.
    let released = applied(&store, &second[0], release(&store, &second[0]).await).await;
    assert_eq!(released, o3);
    assert!(lease_lost(release(&store, &second[0]).await));
    let third = lease(&store, G1, 10, NOW + 600).await;
    assert_eq!(third.iter().map(id).collect::<Vec<_>>(), vec![o3.id]);
    let expired_at = NOW + 601;
    let expired = applied(
        &store,
        &third[0],
        finish(&store, &third[0], FinalState::Expired, expired_at).await,
    )
    .await;
    assert_eq!((expired.status, expired.attempts), (OrderStatus::Expired, 0));
    assert_eq!((store.queue_depth(G1), store.leased(G1)), (0, 0));
    assert_eq!(oldest(&store, G1).await, None);
    assert_eq!(oldest(&store, G2).await, Some(NOW));
    assert_eq!(all_sent(&store).await.len(), 1, "only the delivery is in the send log");
    assert_eq!(
        all_queued(&store, G2).await.iter().map(|q| q.order_id).collect::<Vec<_>>(),
        vec![other_game.id]
    );
    // Unbound games are refused.
    assert!(matches!(
        store.lease(GameIndex(2), 1, NOW).await,
        Err(QueueError::Unavailable(reason)) if reason.contains("not bound")
    ));
}

/// Requeue: final orders come back once; queued ones are not queued twice.
pub async fn requeue_is_idempotent<S: Store>(store: S) {
    let order = accept(&store, claim_req(1, 1, A, 10, 1, NOW)).await;
    assert!(matches!(
        store.requeue(&order.id, NOW + 1, NOW + 9).await,
        Ok(RequeueOutcome::Unchanged(_))
    ));
    assert_eq!(store.queue_depth(G1), 1);
    let entry = lease(&store, G1, 1, NOW + 1).await.remove(0);
    // Leased: still in the queue, not queued twice.
    assert!(matches!(
        store.requeue(&order.id, NOW + 2, NOW + 9).await,
        Ok(RequeueOutcome::Unchanged(_))
    ));
    applied(&store, &entry, finish(&store, &entry, DELIVERED, NOW + 3).await).await;
    let deliver_by = NOW + 1_000;
    let requeued = match store.requeue(&order.id, NOW + 4, deliver_by).await {
        Ok(RequeueOutcome::Requeued(order)) => *order,
        other => panic!("{other:?}"),
    };
    assert_eq!((requeued.status, requeued.ready_at_ms), (OrderStatus::Queued, Some(NOW + 4)));
    assert_eq!((requeued.deliver_by_ms, requeued.delivered_at_ms), (deliver_by, None));
    assert!(matches!(
        store.requeue(&order.id, NOW + 5, deliver_by).await,
        Ok(RequeueOutcome::Unchanged(_))
    ));
    assert_eq!(store.queue_depth(G1), 1);
    let entry = lease(&store, G1, 10, NOW + 6).await.remove(0);
    assert_eq!(id(&entry), order.id);
    applied(&store, &entry, finish(&store, &entry, DELIVERED, NOW + 7).await).await;
    let sent = all_sent(&store).await;
    assert_eq!(sent.len(), 2, "one send-log row per delivery: {sent:?}");
    let unknown = OrderId::derive(CAMPAIGN, 99, "scan-1");
    assert_eq!(store.requeue(&unknown, NOW, NOW).await, Ok(RequeueOutcome::NotFound));
}

/// Recording a delivery the game logged: queued, dead and leased orders; idempotent.
pub async fn record_delivered_is_idempotent<S: Store>(store: S) {
    let queued = accept(&store, claim_req(1, 1, A, 10, 5, NOW)).await;
    let dead = accept(&store, claim_req(2, 1, A, 10, 5, NOW)).await;
    let leased = accept(&store, claim_req(3, 1, A, 10, 5, NOW)).await;
    // Leases come in queue order (ready_at, id): take all three, end `dead` as dead, give
    // `queued` back, keep `leased`.
    for entry in lease(&store, G1, 3, NOW + 1).await {
        if id(&entry) == dead.id {
            let reason = "refused".to_string();
            let ended = finish(&store, &entry, FinalState::Dead { reason }, NOW + 2).await;
            applied(&store, &entry, ended).await;
        } else if id(&entry) == queued.id {
            applied(&store, &entry, release(&store, &entry).await).await;
        }
    }
    let recorded = |outcome| match outcome {
        Ok(RecordOutcome::Recorded(order)) => *order,
        other => panic!("{other:?}"),
    };
    let q = recorded(store.record_delivered(&queued.id, NOW + 5, NOW + 10).await);
    assert_eq!(
        (q.status, q.delivered_at_ms, q.ready_at_ms),
        (OrderStatus::Delivered, Some(NOW + 5), None)
    );
    assert_eq!((q.attempts, q.deliver_by_ms), (queued.attempts, queued.deliver_by_ms));
    assert!(!store.in_queue(&queued).await.expect("read"), "its entry is gone");
    let d = recorded(store.record_delivered(&dead.id, NOW + 6, NOW + 10).await);
    assert_eq!((d.status, d.attempts), (OrderStatus::Delivered, 1));
    assert!(matches!(
        store.record_delivered(&leased.id, NOW + 7, NOW + 10).await,
        Ok(RecordOutcome::InFlight(_))
    ));
    assert!(matches!(
        store.record_delivered(&queued.id, NOW + 5, NOW + 11).await,
        Ok(RecordOutcome::Unchanged(_))
    ));
    let unknown = OrderId::derive(CAMPAIGN, 99, "scan-1");
    assert_eq!(store.record_delivered(&unknown, NOW, NOW).await, Ok(RecordOutcome::NotFound));
    let sent = all_sent(&store).await;
    let mut expected = vec![
        SentRecord { order_id: queued.id, delivered_at_ms: NOW + 5 },
        SentRecord { order_id: dead.id, delivered_at_ms: NOW + 6 },
    ];
    expected.sort();
    assert_eq!(sent, expected, "one row each, at the game's time");
    assert_eq!(
        (store.queue_depth(G1), store.leased(G1)),
        (1, 1),
        "only the leased order is queued"
    );
    // A delivered order is never requeued by a second record, and requeue still works on it.
    assert!(matches!(
        store.requeue(&queued.id, NOW + 12, NOW + 99).await,
        Ok(RequeueOutcome::Requeued(_))
    ));
}

/// "My orders" and paged scans.
pub async fn reads_and_scans<S: Store>(store: S) {
    let mut mine = Vec::new();
    for serial in 1..=3 {
        mine.push(
            accept(&store, claim_req(7, serial, B, 100, 5, NOW + 100 - u64::from(serial))).await,
        );
    }
    for user in 0..20 {
        accept(&store, claim_req(100 + user, 1, A, 100, 5, NOW)).await;
    }
    mine.reverse();
    assert_eq!(store.orders_of(7, 10).await.expect("read"), mine, "oldest first");
    assert_eq!(store.orders_of(7, 2).await.expect("read").len(), 2);
    assert!(store.orders_of(8, 10).await.expect("read").is_empty());
    let all = all_orders(&store).await;
    assert_eq!(all.len(), 23);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "strictly in id order");
    assert_eq!(all_queued(&store, G1).await.len(), 20);
    let queued = all_queued(&store, G2).await;
    assert_eq!(
        queued.iter().map(|q| q.ready_at_ms).collect::<Vec<_>>(),
        vec![NOW + 97, NOW + 98, NOW + 99]
    );
    assert!(store.scan_orders(None, 0).await.expect("scan").is_empty());
}

/// A claim of a high-value gift worth `value_cents` under the given `[limits]`; stock and the
/// gift's own per-user limit are ample, so only the high-value rules can refuse.
pub fn high_value_req(
    user: u64,
    serial: u32,
    now_ms: u64,
    value_cents: u64,
    per_user_per_day: u32,
    budget_cents_per_hour: u64,
) -> ClaimRequest {
    let mut req = claim_req(user, serial, HOT, 1_000_000, 1_000, now_ms);
    req.high_value = Some(HighValueRule { value_cents, per_user_per_day, budget_cents_per_hour });
    req
}

/// Runs `reqs` all at once (one task each) and counts accepted claims; every other answer must
/// satisfy `refused`.
async fn concurrently<S: Store>(
    store: &Arc<S>,
    reqs: Vec<ClaimRequest>,
    refused: impl Fn(&ClaimOutcome) -> bool,
) -> usize {
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.claim(req).await.expect("answered") })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("task completes") {
            ClaimOutcome::Accepted(_) => accepted += 1,
            other => assert!(refused(&other), "unexpected {other:?}"),
        }
    }
    accepted
}

/// One user, 3 high-value claims a day, 40 distinct coupons at once: exactly 3 accepted, the
/// rest refused until the next UTC day, when the allowance is there again. Other users are
/// not affected.
pub async fn high_value_daily_limit_holds_under_concurrency<S: Store>(store: Arc<S>) {
    const PER_DAY: u32 = 3;
    let day_start = hongbao_store::day_of(NOW) * hongbao_store::DAY_MS;
    let next_day = day_start + hongbao_store::DAY_MS;
    let req = |user, serial, now| high_value_req(user, serial, now, 100, PER_DAY, u64::MAX >> 11);
    // Below the limit: accepted.
    accept(&*store, req(7, 1, NOW)).await;
    let usage = store.high_value_usage(7, NOW).await.expect("read");
    assert_eq!(usage.claimed_today, 1);
    let reqs = (2..=41).map(|serial| req(7, serial, NOW + u64::from(serial))).collect();
    let refused =
        |o: &ClaimOutcome| *o == ClaimOutcome::HighValueDailyLimit { resets_at_ms: next_day };
    assert_eq!(concurrently(&store, reqs, refused).await, PER_DAY as usize - 1);
    assert_eq!(store.high_value_usage(7, NOW).await.expect("read").claimed_today, PER_DAY);
    assert_eq!(store.stock_taken(HOT), u64::from(PER_DAY));
    // At the limit: refused, nothing written.
    let before = all_orders(&*store).await;
    assert_eq!(
        claim_ok(&*store, req(7, 50, NOW + 100)).await,
        ClaimOutcome::HighValueDailyLimit { resets_at_ms: next_day }
    );
    assert_eq!(all_orders(&*store).await, before);
    // Another user has their own allowance; the next day renews this one.
    accept(&*store, req(8, 1, NOW)).await;
    accept(&*store, req(7, 50, next_day)).await;
    assert_eq!(store.high_value_usage(7, next_day).await.expect("read").claimed_today, 1);
}

/// A budget of 10 gifts' value per hour, 64 users claiming at once: exactly 10 accepted, the
/// rest refused until the next UTC hour, when the budget is there again.
pub async fn high_value_budget_holds_under_concurrency<S: Store>(store: Arc<S>) {
    const VALUE: u64 = 250;
    const GIFTS: u64 = 10;
    let hour_start = hongbao_store::hour_of(NOW) * hongbao_store::HOUR_MS;
    let next_hour = hour_start + hongbao_store::HOUR_MS;
    let req = |user, now| high_value_req(user, 1, now, VALUE, 5, VALUE * GIFTS);
    // Below the budget: accepted, and counted.
    accept(&*store, req(1, NOW)).await;
    assert_eq!(store.high_value_usage(1, NOW).await.expect("read").spent_this_hour_cents, VALUE);
    let reqs = (2..=64).map(|user| req(user, NOW + user)).collect();
    let refused =
        |o: &ClaimOutcome| *o == ClaimOutcome::HighValueBudgetExhausted { resets_at_ms: next_hour };
    assert_eq!(concurrently(&store, reqs, refused).await as u64, GIFTS - 1);
    let usage = store.high_value_usage(99, NOW).await.expect("read");
    assert_eq!(usage, HighValueUsage { claimed_today: 0, spent_this_hour_cents: VALUE * GIFTS });
    assert_eq!(all_orders(&*store).await.len() as u64, GIFTS);
    // A gift of value 0 still fits a spent budget; a claim without the rule is not counted.
    let mut free = req(100, NOW);
    free.high_value = free.high_value.map(|rule| HighValueRule { value_cents: 0, ..rule });
    accept(&*store, free).await;
    accept(&*store, claim_req(101, 1, A, 10, 1, NOW)).await;
    // The next hour has a fresh budget.
    accept(&*store, req(102, next_hour)).await;
    assert_eq!(
        store.high_value_usage(102, next_hour).await.expect("read").spent_this_hour_cents,
        VALUE
    );
}
