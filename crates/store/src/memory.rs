//! In-memory adapter of every port: the same decisions as the embedded store, without a disk.
//!
//! For tests of the services built on the ports, and as the model the embedded writer is
//! checked against. It keeps everything it was ever told (grants, orders, the send log,
//! idempotency keys — expired keys are ignored, never purged), so it is unbounded by design;
//! production uses [`crate::EmbeddedStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use hongbao_domain::{GameIndex, GiftIndex, Order, OrderEvent, OrderId, OrderStatus};

use crate::claim::{
    self, CampaignBinding, ClaimOutcome, ClaimRequest, IDEMPOTENCY_TTL_MS, IdempotencyRecord,
    KeyCheck, ORDERS_OF_MAX, RecordedKind,
};
use crate::queue::{
    DeliveryQueue, Finish, LEASE_BATCH_MAX, LEASES_MAX, LeaseId, LedgerRepair, LedgerScan,
    QueueEntry, QueuedRef, RecordOutcome, RequeueOutcome, SCAN_PAGE_MAX, SentRecord, Settled,
    recorded_delivered,
};
use crate::{
    CHANNELS, Channel, ClaimLedger, GrantLedger, GrantOutcome, GrantRequest, StoreError,
    channel_index,
};

#[derive(Debug, Default)]
pub struct MemoryStore {
    binding: CampaignBinding,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    user_counts: HashMap<(u64, Channel), u32>,
    granted: [u64; CHANNELS],
    orders: BTreeMap<OrderId, Order>,
    user_orders: BTreeSet<(u64, OrderId)>,
    user_gifts: HashMap<(u64, GiftIndex), u32>,
    stock_taken: Vec<u64>,
    /// Per bound game: (ready_at_ms, order id).
    queues: Vec<BTreeSet<(u64, OrderId)>>,
    leases: HashMap<OrderId, (LeaseId, GameIndex)>,
    next_lease: u64,
    sent: BTreeSet<(OrderId, u64)>,
    idempotency: HashMap<(u64, String), IdempotencyRecord>,
}

const ID_MAX: OrderId = OrderId::MAX;

impl MemoryStore {
    /// A store for grants only: claims are refused with `InvalidConfig`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store for `binding`'s campaign: grants, claims and delivery queues.
    pub fn with_campaign(binding: CampaignBinding) -> Self {
        let state = State {
            stock_taken: vec![0; binding.gifts()],
            queues: vec![BTreeSet::new(); binding.games()],
            next_lease: 1,
            ..State::default()
        };
        Self { binding, state: Mutex::new(state) }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A poisoned lock means a panic while deciding (an invariant broke): refuse, do not guess.
        self.state.lock().map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }

    pub(crate) fn decide(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        let mut state = self.lock()?;
        let index = channel_index(req.channel);
        if state.granted[index] >= req.budget {
            return Ok(GrantOutcome::BudgetExhausted);
        }
        let count = state.user_counts.get(&(req.user, req.channel)).copied().unwrap_or(0);
        if count >= req.per_user_limit {
            return Ok(GrantOutcome::UserLimitReached);
        }
        let serial = count + 1;
        state.user_counts.insert((req.user, req.channel), serial);
        state.granted[index] += 1;
        Ok(GrantOutcome::Granted { serial })
    }

    pub(crate) fn decide_claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let p = claim::prepare(&self.binding, req)?;
        let mut state = self.lock()?;
        let state = &mut *state;
        let user = req.user();
        if let Some(key) = &req.idempotency {
            let record = state.idempotency.get(&(user, key.key().to_string()));
            match claim::check_key(record, key, req.now_ms) {
                KeyCheck::Fresh => {}
                KeyCheck::Conflict => return Ok(ClaimOutcome::IdempotencyConflict),
                KeyCheck::Replay(kind, id) => {
                    let order = state.orders.get(&id).cloned().ok_or_else(|| {
                        StoreError::Corrupt(format!("idempotency key names missing order {id}"))
                    })?;
                    return Ok(kind.outcome(order));
                }
            }
        }
        let outcome = if let Some(order) = state.orders.get(&p.order_id) {
            claim::replay(order.clone(), &p.gift_id)
        } else if state.stock_taken[usize::from(req.gift.0)] >= req.stock {
            return Ok(ClaimOutcome::OutOfStock);
        } else if state.user_gifts.get(&(user, req.gift)).copied().unwrap_or(0)
            >= req.per_user_limit
        {
            return Ok(ClaimOutcome::LimitReached);
        } else {
            let order = claim::new_order(req, &p);
            state.stock_taken[usize::from(req.gift.0)] += 1;
            *state.user_gifts.entry((user, req.gift)).or_default() += 1;
            state.user_orders.insert((user, p.order_id));
            state.queues[usize::from(p.game.0)].insert((req.now_ms, p.order_id));
            state.orders.insert(p.order_id, order.clone());
            ClaimOutcome::Accepted(Box::new(order))
        };
        if let (Some(key), Some(kind)) = (&req.idempotency, RecordedKind::of(&outcome)) {
            let record = IdempotencyRecord {
                expires_at_ms: req.now_ms.saturating_add(IDEMPOTENCY_TTL_MS),
                fingerprint: *key.fingerprint(),
                kind,
                order_id: p.order_id,
            };
            state.idempotency.insert((user, key.key().to_string()), record);
        }
        Ok(outcome)
    }

    fn game(&self, game: GameIndex) -> Result<usize, StoreError> {
        let index = usize::from(game.0);
        if index < self.binding.games() {
            Ok(index)
        } else {
            Err(StoreError::InvalidConfig(format!("game index {} is not bound", game.0)))
        }
    }

    fn settle(
        &self,
        entry: &QueueEntry,
        now_ms: u64,
        then: impl FnOnce(&Order) -> Option<(OrderEvent, bool)>,
    ) -> Result<Settled, StoreError> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let id = entry.order.id;
        match state.leases.get(&id) {
            Some((lease, _)) if *lease == entry.lease => {}
            _ => return Ok(Settled::NotLeased),
        }
        let (_, game) = state.leases.remove(&id).expect("checked above");
        let stored = state.orders.get(&id).cloned().expect("a leased order exists");
        let delivering = stored.apply(&OrderEvent::StartDelivery, now_ms).expect("leased: queued");
        let Some((event, sent)) = then(&delivering) else {
            return Ok(Settled::Applied(Box::new(stored)));
        };
        let next = delivering.apply(&event, now_ms).expect("legal from delivering");
        let queue = &mut state.queues[usize::from(game.0)];
        let old_ready = stored.ready_at_ms.expect("a leased order is in the queue");
        // Present unless removed by hand (`remove_queue_entry_by_hand`).
        queue.remove(&(old_ready, id));
        if let Some(ready_at_ms) = next.ready_at_ms {
            queue.insert((ready_at_ms, id));
        }
        if sent {
            state.sent.insert((id, now_ms));
        }
        state.orders.insert(id, next.clone());
        Ok(Settled::Applied(Box::new(next)))
    }
}

impl GrantLedger for MemoryStore {
    async fn grant(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        self.decide(req)
    }

    fn granted(&self, channel: Channel) -> u64 {
        self.state.lock().map(|state| state.granted[channel_index(channel)]).unwrap_or(0)
    }
}

impl ClaimLedger for MemoryStore {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        self.decide_claim(&req)
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.lock()?.orders.get(id).cloned())
    }

    async fn orders_of(&self, user: u64, limit: usize) -> Result<Vec<Order>, StoreError> {
        let state = self.lock()?;
        let mut orders: Vec<Order> = state
            .user_orders
            .range((user, OrderId::MIN)..=(user, ID_MAX))
            .take(limit.min(ORDERS_OF_MAX))
            .filter_map(|(_, id)| state.orders.get(id).cloned())
            .collect();
        orders.sort_by_key(|o| (o.created_at_ms, o.id));
        Ok(orders)
    }

    fn stock_taken(&self, gift: GiftIndex) -> u64 {
        self.state
            .lock()
            .ok()
            .and_then(|state| state.stock_taken.get(usize::from(gift.0)).copied())
            .unwrap_or(0)
    }
}

impl DeliveryQueue for MemoryStore {
    async fn lease(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let index = self.game(game)?;
        let mut state = self.lock()?;
        let state = &mut *state;
        let max = max.min(LEASE_BATCH_MAX).min(LEASES_MAX.saturating_sub(state.leases.len()));
        let due: Vec<OrderId> = state.queues[index]
            .range(..=(now_ms, ID_MAX))
            .filter(|(_, id)| !state.leases.contains_key(id))
            .take(max)
            .map(|(_, id)| *id)
            .collect();
        let mut entries = Vec::with_capacity(due.len());
        for id in due {
            let order = state.orders.get(&id).expect("a queued order exists");
            let order = order.apply(&OrderEvent::StartDelivery, now_ms).expect("queued");
            let lease = LeaseId(state.next_lease);
            state.next_lease += 1;
            state.leases.insert(id, (lease, game));
            entries.push(QueueEntry { order, game, lease });
        }
        Ok(entries)
    }

    async fn finish(
        &self,
        entry: &QueueEntry,
        finish: Finish,
        now_ms: u64,
    ) -> Result<Settled, StoreError> {
        self.settle(entry, now_ms, |_| {
            Some(match finish {
                Finish::Delivered => (OrderEvent::Delivered, true),
                Finish::Dead { reason } => (OrderEvent::Fail { reason }, false),
                Finish::Expired => (OrderEvent::Expire, false),
            })
        })
    }

    async fn retry(
        &self,
        entry: &QueueEntry,
        ready_at_ms: u64,
        error: String,
        now_ms: u64,
    ) -> Result<Settled, StoreError> {
        self.settle(entry, now_ms, |_| Some((OrderEvent::Retry { ready_at_ms, error }, false)))
    }

    async fn release(&self, entry: &QueueEntry) -> Result<Settled, StoreError> {
        self.settle(entry, entry.order.updated_at_ms, |_| None)
    }

    async fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> Result<RequeueOutcome, StoreError> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let Some(order) = state.orders.get(order_id).cloned() else {
            return Ok(RequeueOutcome::NotFound);
        };
        let game = self.binding.game_index(&order.game_id).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game `{}` is not bound", order.game_id))
        })?;
        let queue = &mut state.queues[usize::from(game.0)];
        if order.status.is_in_queue() {
            let ready_at_ms = order.ready_at_ms.expect("consistent order");
            return Ok(if queue.insert((ready_at_ms, order.id)) {
                RequeueOutcome::Repaired(Box::new(order))
            } else {
                RequeueOutcome::Unchanged(Box::new(order))
            });
        }
        if order.status == OrderStatus::Held {
            return Ok(RequeueOutcome::Unchanged(Box::new(order)));
        }
        let event = OrderEvent::Resend { ready_at_ms: now_ms, deliver_by_ms };
        let next = order.apply(&event, now_ms).expect("final states can be resent");
        queue.insert((now_ms, order.id));
        state.orders.insert(order.id, next.clone());
        Ok(RequeueOutcome::Requeued(Box::new(next)))
    }

    fn depth(&self, game: GameIndex) -> u64 {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.queues.get(usize::from(game.0)).map(|q| q.len() as u64))
            .unwrap_or(0)
    }

    fn leased(&self, game: GameIndex) -> u64 {
        self.state
            .lock()
            .map(|s| s.leases.values().filter(|(_, g)| *g == game).count() as u64)
            .unwrap_or(0)
    }

    async fn oldest_ready_ms(&self, game: GameIndex) -> Result<Option<u64>, StoreError> {
        let index = self.game(game)?;
        let state = self.lock()?;
        let waiting = state.queues[index].iter().find(|(_, id)| !state.leases.contains_key(id));
        Ok(waiting.map(|(ready_at_ms, _)| *ready_at_ms))
    }
}

impl LedgerRepair for MemoryStore {
    async fn record_delivered(
        &self,
        order_id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> Result<RecordOutcome, StoreError> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let Some(order) = state.orders.get(order_id).cloned() else {
            return Ok(RecordOutcome::NotFound);
        };
        if state.leases.contains_key(order_id) {
            return Ok(RecordOutcome::InFlight(Box::new(order)));
        }
        let Some(next) = recorded_delivered(&order, delivered_at_ms, now_ms) else {
            return Ok(RecordOutcome::Unchanged(Box::new(order)));
        };
        if let Some(ready_at_ms) = order.ready_at_ms {
            let game = self.binding.game_index(&order.game_id).ok_or_else(|| {
                StoreError::InvalidConfig(format!("game `{}` is not bound", order.game_id))
            })?;
            state.queues[usize::from(game.0)].remove(&(ready_at_ms, order.id));
        }
        state.sent.insert((order.id, delivered_at_ms));
        state.orders.insert(order.id, next.clone());
        Ok(RecordOutcome::Recorded(Box::new(next)))
    }
}

impl LedgerScan for MemoryStore {
    async fn scan_orders(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let state = self.lock()?;
        let limit = limit.min(SCAN_PAGE_MAX);
        Ok(match after {
            None => state.orders.values().take(limit).cloned().collect(),
            Some(after) => state
                .orders
                .range(after..)
                .filter(|(id, _)| **id != after)
                .take(limit)
                .map(|(_, o)| o.clone())
                .collect(),
        })
    }

    async fn scan_sent(
        &self,
        after: Option<SentRecord>,
        limit: usize,
    ) -> Result<Vec<SentRecord>, StoreError> {
        let state = self.lock()?;
        let start = after.map(|a| (a.order_id, a.delivered_at_ms));
        Ok(state
            .sent
            .iter()
            .filter(|row| start.is_none_or(|s| **row > s))
            .take(limit.min(SCAN_PAGE_MAX))
            .map(|(order_id, delivered_at_ms)| SentRecord {
                order_id: *order_id,
                delivered_at_ms: *delivered_at_ms,
            })
            .collect())
    }

    async fn scan_queue(
        &self,
        game: GameIndex,
        after: Option<QueuedRef>,
        limit: usize,
    ) -> Result<Vec<QueuedRef>, StoreError> {
        let index = self.game(game)?;
        let state = self.lock()?;
        let start = after.map(|a| (a.ready_at_ms, a.order_id));
        Ok(state.queues[index]
            .iter()
            .filter(|row| start.is_none_or(|s| **row > s))
            .take(limit.min(SCAN_PAGE_MAX))
            .map(|(ready_at_ms, order_id)| QueuedRef {
                ready_at_ms: *ready_at_ms,
                order_id: *order_id,
            })
            .collect())
    }

    async fn in_queue(&self, order: &Order) -> Result<bool, StoreError> {
        let (Some(game), Some(ready_at_ms)) =
            (self.binding.game_index(&order.game_id), order.ready_at_ms)
        else {
            return Ok(false);
        };
        let state = self.lock()?;
        Ok(state.queues[usize::from(game.0)].contains(&(ready_at_ms, order.id)))
    }
}

impl MemoryStore {
    /// Fault injection for tests: deletes `order`'s queue entry behind the store's back, as an
    /// operator's mistake would. Returns whether there was one. Never used by services.
    #[doc(hidden)]
    pub fn remove_queue_entry_by_hand(&self, order: &Order) -> bool {
        let (Some(game), Some(ready_at_ms)) =
            (self.binding.game_index(&order.game_id), order.ready_at_ms)
        else {
            return false;
        };
        self.state
            .lock()
            .map(|mut s| s.queues[usize::from(game.0)].remove(&(ready_at_ms, order.id)))
            .unwrap_or(false)
    }
}
