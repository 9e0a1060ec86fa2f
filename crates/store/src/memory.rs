//! In-memory adapter of every port: the ledger's rules (`ledger/`) over plain maps, one command
//! at a time under one lock.
//!
//! For tests of the services built on the ports, and as the model the embedded writer is
//! checked against. It keeps everything it was ever told (grants, orders, the send log,
//! idempotency keys — expired keys are ignored, never purged), so it is unbounded by design;
//! production uses [`crate::EmbeddedStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use hongbao_domain::{GameIndex, GiftIndex, Order, OrderId};

use crate::claim::{
    CampaignBinding, ClaimOutcome, ClaimRequest, HighValueUsage, ORDERS_OF_MAX, day_of, hour_of,
};
use crate::delivery::QueueBackend;
use crate::ledger::{self, IdempotencyRecord, Lease, LedgerTxn, QueueSlot, SettleAction};
use crate::queue::{
    LeaseId, LedgerRepair, LedgerScan, QueueEntry, QueuedRef, RecordOutcome, RequeueOutcome,
    SCAN_PAGE_MAX, SentRecord, Settled,
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

/// Everything the store holds; the decisions read and write it through [`LedgerTxn`].
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
    leases: HashMap<OrderId, Lease>,
    next_lease: u64,
    sent: BTreeSet<(OrderId, u64)>,
    idempotency: HashMap<(u64, String), IdempotencyRecord>,
    /// High-value claims per (user, UTC day).
    high_value_users: HashMap<(u64, u64), u32>,
    /// High-value cents accepted per UTC hour.
    high_value_hours: HashMap<u64, u64>,
}

const ID_MAX: OrderId = OrderId::MAX;

impl LedgerTxn for State {
    fn order(&mut self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.orders.get(id).cloned())
    }

    fn claimed(&mut self, user: u64, gift: GiftIndex) -> Result<u32, StoreError> {
        Ok(self.user_gifts.get(&(user, gift)).copied().unwrap_or(0))
    }

    fn stock_taken(&mut self, gift: GiftIndex) -> u64 {
        self.stock_taken[usize::from(gift.0)]
    }

    fn grants(&mut self, user: u64, channel: Channel) -> Result<u32, StoreError> {
        Ok(self.user_counts.get(&(user, channel)).copied().unwrap_or(0))
    }

    fn channel_granted(&mut self, channel: Channel) -> u64 {
        self.granted[channel_index(channel)]
    }

    fn idempotency_record(
        &mut self,
        user: u64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.idempotency.get(&(user, key.to_string())).cloned())
    }

    fn high_value_claimed(&mut self, user: u64, day: u64) -> Result<u32, StoreError> {
        Ok(self.high_value_users.get(&(user, day)).copied().unwrap_or(0))
    }

    fn high_value_spent(&mut self, hour: u64) -> Result<u64, StoreError> {
        Ok(self.high_value_hours.get(&hour).copied().unwrap_or(0))
    }

    fn queue_has(&mut self, slot: QueueSlot) -> Result<bool, StoreError> {
        Ok(self.queues[usize::from(slot.game.0)].contains(&(slot.ready_at_ms, slot.id)))
    }

    fn lease(&self, id: &OrderId) -> Option<Lease> {
        self.leases.get(id).copied()
    }

    fn put_order(&mut self, order: Order) {
        self.orders.insert(order.id, order);
    }

    fn index_user_order(&mut self, user: u64, id: OrderId) {
        self.user_orders.insert((user, id));
    }

    fn set_claimed(&mut self, user: u64, gift: GiftIndex, claimed: u32) {
        self.user_gifts.insert((user, gift), claimed);
    }

    fn set_stock_taken(&mut self, gift: GiftIndex, taken: u64) {
        self.stock_taken[usize::from(gift.0)] = taken;
    }

    fn set_grants(&mut self, user: u64, channel: Channel, granted: u32) {
        self.user_counts.insert((user, channel), granted);
    }

    fn set_channel_granted(&mut self, channel: Channel, granted: u64) {
        self.granted[channel_index(channel)] = granted;
    }

    fn set_high_value_claimed(&mut self, user: u64, day: u64, claimed: u32) {
        self.high_value_users.insert((user, day), claimed);
    }

    fn set_high_value_spent(&mut self, hour: u64, cents: u64) {
        self.high_value_hours.insert(hour, cents);
    }

    fn enqueue(&mut self, slot: QueueSlot) {
        self.queues[usize::from(slot.game.0)].insert((slot.ready_at_ms, slot.id));
    }

    fn dequeue(&mut self, slot: QueueSlot) {
        // Absent only when removed by hand (`remove_queue_entry_by_hand`).
        self.queues[usize::from(slot.game.0)].remove(&(slot.ready_at_ms, slot.id));
    }

    fn append_sent(&mut self, id: OrderId, delivered_at_ms: u64) {
        self.sent.insert((id, delivered_at_ms));
    }

    fn put_idempotency_record(&mut self, user: u64, key: &str, record: IdempotencyRecord) {
        self.idempotency.insert((user, key.to_string()), record);
    }

    fn start_lease(&mut self, id: OrderId, game: GameIndex, ready_at_ms: u64) -> LeaseId {
        let lease = LeaseId(self.next_lease);
        self.next_lease += 1;
        self.leases.insert(id, Lease { id: lease, game, ready_at_ms });
        lease
    }

    fn end_lease(&mut self, id: &OrderId) {
        self.leases.remove(id);
    }

    fn release_lease(&mut self, id: &OrderId) {
        self.leases.remove(id);
    }
}

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

    /// Runs one decision as one atomic step.
    fn transact<R>(
        &self,
        decide: impl FnOnce(&mut State) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        decide(&mut *self.lock()?)
    }

    /// A read of the state for the cheap, infallible counters (0 when the lock is poisoned).
    fn count(&self, read: impl FnOnce(&State) -> Option<u64>) -> u64 {
        self.state.lock().ok().and_then(|state| read(&state)).unwrap_or(0)
    }

    pub(crate) fn decide(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        self.transact(|state| ledger::grant::grant(state, req))
    }

    pub(crate) fn decide_claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let prepared = ledger::claim::prepare(&self.binding, req)?;
        self.transact(|state| ledger::claim::claim(state, req, &prepared))
    }

    fn game(&self, game: GameIndex) -> Result<(usize, &str), StoreError> {
        let game_id = self.binding.game_id(game).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game index {} is not bound", game.0))
        })?;
        Ok((usize::from(game.0), game_id))
    }

    pub(crate) fn lease_now(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let (index, game_id) = self.game(game)?;
        self.transact(|state| {
            let max = ledger::lease::lease_quota(max, state.leases.len());
            let due: Vec<(u64, OrderId)> = state.queues[index]
                .range(..=(now_ms, ID_MAX))
                .filter(|(_, id)| !state.leases.contains_key(id))
                .take(max)
                .copied()
                .collect();
            Ok(due
                .into_iter()
                .filter_map(|(ready_at_ms, id)| {
                    ledger::lease::lease_entry(state, game, game_id, ready_at_ms, id, now_ms)
                })
                .collect())
        })
    }

    pub(crate) fn settle_now(
        &self,
        entry: &QueueEntry,
        action: SettleAction,
        now_ms: u64,
    ) -> Result<Settled, StoreError> {
        let (order_id, lease) = (entry.order.id, entry.lease);
        self.transact(|state| ledger::lease::settle(state, order_id, lease, action, now_ms))
    }

    pub(crate) fn oldest_now(&self, game: GameIndex) -> Result<Option<u64>, StoreError> {
        let (index, _) = self.game(game)?;
        let state = self.lock()?;
        let waiting = state.queues[index].iter().find(|(_, id)| !state.leases.contains_key(id));
        Ok(waiting.map(|(ready_at_ms, _)| *ready_at_ms))
    }

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

    /// Fault injection for tests: deletes `id`'s send-log rows behind the store's back (a lost
    /// write, an operator's mistake), leaving its order as it is. Returns how many there were.
    /// Never used by services.
    #[doc(hidden)]
    pub fn remove_sent_rows_by_hand(&self, id: &OrderId) -> usize {
        let Ok(mut state) = self.state.lock() else { return 0 };
        let rows: Vec<(OrderId, u64)> =
            state.sent.range((*id, 0)..=(*id, u64::MAX)).copied().collect();
        for row in &rows {
            state.sent.remove(row);
        }
        rows.len()
    }

    /// Fault injection for tests: deletes `id`'s order behind the store's back, leaving its
    /// send-log rows, queue entry and the user's index as they are. Returns whether there was
    /// one. Never used by services.
    #[doc(hidden)]
    pub fn remove_order_by_hand(&self, id: &OrderId) -> bool {
        self.state.lock().is_ok_and(|mut s| s.orders.remove(id).is_some())
    }
}

impl GrantLedger for MemoryStore {
    async fn grant(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        self.decide(req)
    }

    fn granted(&self, channel: Channel) -> u64 {
        self.count(|state| Some(state.granted[channel_index(channel)]))
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
        self.count(|state| state.stock_taken.get(usize::from(gift.0)).copied())
    }

    async fn high_value_usage(&self, user: u64, now_ms: u64) -> Result<HighValueUsage, StoreError> {
        let mut state = self.lock()?;
        Ok(HighValueUsage {
            claimed_today: state.high_value_claimed(user, day_of(now_ms))?,
            spent_this_hour_cents: state.high_value_spent(hour_of(now_ms))?,
        })
    }
}

impl QueueBackend for MemoryStore {
    fn binding(&self) -> &CampaignBinding {
        &self.binding
    }

    async fn lease_entries(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        self.lease_now(game, max, now_ms)
    }

    async fn settle(
        &self,
        entry: &QueueEntry,
        action: SettleAction,
        now_ms: u64,
    ) -> Result<Settled, StoreError> {
        self.settle_now(entry, action, now_ms)
    }

    async fn oldest_ready_ms(&self, game: GameIndex) -> Result<Option<u64>, StoreError> {
        self.oldest_now(game)
    }
}

impl LedgerRepair for MemoryStore {
    async fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> Result<RequeueOutcome, StoreError> {
        self.transact(|state| {
            ledger::repair::requeue(state, &self.binding, *order_id, now_ms, deliver_by_ms)
        })
    }

    async fn record_delivered(
        &self,
        order_id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> Result<RecordOutcome, StoreError> {
        self.transact(|state| {
            let binding = &self.binding;
            ledger::repair::record_delivered(state, binding, *order_id, delivered_at_ms, now_ms)
        })
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
        let (index, _) = self.game(game)?;
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

    fn queue_depth(&self, game: GameIndex) -> u64 {
        self.count(|state| state.queues.get(usize::from(game.0)).map(|q| q.len() as u64))
    }

    fn leased(&self, game: GameIndex) -> u64 {
        self.count(|state| {
            Some(state.leases.values().filter(|lease| lease.game == game).count() as u64)
        })
    }
}
