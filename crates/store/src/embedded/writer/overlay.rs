//! The ledger as the decisions see it inside a batch: this batch's staged writes over the
//! committed state on disk. Reads look at the staged writes first, then ask the Bloom filter of
//! what the store may hold (an order or (user, gift) count it certainly lacks is not read), then
//! the backend; writes are staged, and the queue's in-memory state (depth, cursor, look-ahead)
//! follows them tentatively until the commit.

use hongbao_domain::{Channel, GameIndex, GiftIndex, Order, OrderId};

use super::{Backend, Ledger, Space};
use crate::StoreError;
use crate::channel_index;
use crate::embedded::layout::{self, grant_key};
use crate::ledger::{IdempotencyRecord, Lease, LedgerTxn, QueueSlot};
use crate::queue::LeaseId;

impl<B: Backend> LedgerTxn for Ledger<B> {
    fn order(&mut self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        if let Some(order) = self.staged.orders.get(id) {
            return Ok(Some(order.clone()));
        }
        if !self.known.may_hold_order(id) {
            // The filter's promise, checked wherever assertions are on (every test run).
            #[cfg(debug_assertions)]
            assert!(
                self.backend.get(Space::Orders, &layout::order_key(id))?.is_none(),
                "the filter called order {id} absent, and it is there"
            );
            return Ok(None);
        }
        match self.backend.get(Space::Orders, &layout::order_key(id))? {
            Some(bytes) => layout::decode_order(*id, bytes.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    fn claimed(&mut self, user: u64, gift: GiftIndex) -> Result<u32, StoreError> {
        if let Some(count) = self.staged.user_gifts.get(&(user, gift)) {
            return Ok(*count);
        }
        let (gift_id, _) = self.binding.gift(gift).expect("claims name bound gifts");
        if !self.known.may_hold_user_gift(user, gift) {
            // The filter's promise, checked wherever assertions are on (every test run).
            #[cfg(debug_assertions)]
            assert!(
                self.backend
                    .get(Space::UserGifts, &layout::user_gift_key(user, gift_id))?
                    .is_none(),
                "the filter called user {user}'s count of {gift_id} absent, and it is there"
            );
            return Ok(0);
        }
        let key = layout::user_gift_key(user, gift_id);
        match self.backend.get(Space::UserGifts, &key)? {
            Some(bytes) => layout::decode_u32("a user_gifts row", bytes.as_ref()),
            None => Ok(0),
        }
    }

    fn stock_taken(&mut self, gift: GiftIndex) -> u64 {
        let committed = self.stock[usize::from(gift.0)];
        self.staged.stock.get(&gift).copied().unwrap_or(committed)
    }

    fn grants(&mut self, user: u64, channel: Channel) -> Result<u32, StoreError> {
        let key = grant_key(user, channel);
        if let Some(count) = self.staged.grants.get(&key) {
            return Ok(*count);
        }
        match self.backend.get(Space::Grants, &key)? {
            Some(bytes) => layout::decode_count(&key, bytes.as_ref()),
            None => Ok(0),
        }
    }

    fn channel_granted(&mut self, channel: Channel) -> u64 {
        let index = channel_index(channel);
        self.staged.budgets[index].unwrap_or(self.granted[index])
    }

    fn idempotency_record(
        &mut self,
        user: u64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        if let Some(record) = self.staged.idempotency.get(&(user, key.to_string())) {
            return Ok(Some(record.clone()));
        }
        match self.backend.get(Space::Idempotency, &layout::idempotency_key(user, key))? {
            Some(bytes) => layout::decode_idempotency(bytes.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    fn high_value_claimed(&mut self, user: u64, day: u64) -> Result<u32, StoreError> {
        if let Some(count) = self.staged.high_value_users.get(&(user, day)) {
            return Ok(*count);
        }
        let key = layout::high_value_user_key(user, day);
        match self.backend.get(Space::Counters, &key)? {
            Some(bytes) => layout::decode_u32("a hv_user counter", bytes.as_ref()),
            None => Ok(0),
        }
    }

    fn high_value_spent(&mut self, hour: u64) -> Result<u64, StoreError> {
        if let Some(cents) = self.staged.high_value_hours.get(&hour) {
            return Ok(*cents);
        }
        match self.backend.get(Space::Counters, &layout::high_value_hour_key(hour))? {
            Some(bytes) => layout::decode_u64("a hv_hour counter", bytes.as_ref()),
            None => Ok(0),
        }
    }

    fn queue_has(&mut self, slot: QueueSlot) -> Result<bool, StoreError> {
        if let Some(present) = self.staged.queue.get(&slot) {
            return Ok(*present);
        }
        let game_id = self.binding.game_id(slot.game).expect("slots name bound games");
        let key = layout::queue_key(game_id, slot.ready_at_ms, &slot.id);
        Ok(self.backend.get(Space::Queue, &key)?.is_some())
    }

    fn lease(&self, id: &OrderId) -> Option<Lease> {
        self.leases.get(id).copied()
    }

    fn put_order(&mut self, order: Order) {
        self.staged.orders.insert(order.id, order);
    }

    fn index_user_order(&mut self, user: u64, id: OrderId) {
        self.staged.user_orders.push((user, id));
    }

    fn set_claimed(&mut self, user: u64, gift: GiftIndex, claimed: u32) {
        self.staged.user_gifts.insert((user, gift), claimed);
    }

    fn set_stock_taken(&mut self, gift: GiftIndex, taken: u64) {
        self.staged.stock.insert(gift, taken);
    }

    fn set_grants(&mut self, user: u64, channel: Channel, granted: u32) {
        self.staged.grants.insert(grant_key(user, channel), granted);
    }

    fn set_channel_granted(&mut self, channel: Channel, granted: u64) {
        self.staged.budgets[channel_index(channel)] = Some(granted);
    }

    fn set_high_value_claimed(&mut self, user: u64, day: u64, claimed: u32) {
        self.staged.high_value_users.insert((user, day), claimed);
    }

    fn set_high_value_spent(&mut self, hour: u64, cents: u64) {
        self.staged.high_value_hours.insert(hour, cents);
    }

    fn enqueue(&mut self, slot: QueueSlot) {
        let game = usize::from(slot.game.0);
        self.look_ahead[game].invalidate_from(slot.ready_at_ms);
        self.staged.queue.insert(slot, true);
        let state = &mut self.tentative_games[game];
        state.depth += 1;
        state.cursor_ms = state.cursor_ms.min(slot.ready_at_ms);
    }

    fn dequeue(&mut self, slot: QueueSlot) {
        let game = usize::from(slot.game.0);
        // An entry in flight is not read ahead; any other may be: forget those.
        if !self.leases.contains_key(&slot.id) {
            self.look_ahead[game].invalidate_from(slot.ready_at_ms);
        }
        self.staged.queue.insert(slot, false);
        let state = &mut self.tentative_games[game];
        assert!(state.depth > 0, "the depth counts the entries");
        state.depth -= 1;
    }

    fn append_sent(&mut self, id: OrderId, delivered_at_ms: u64) {
        self.staged.sent.push((id, delivered_at_ms));
    }

    fn put_idempotency_record(&mut self, user: u64, key: &str, record: IdempotencyRecord) {
        self.staged.idempotency.insert((user, key.to_string()), record);
    }

    fn start_lease(&mut self, id: OrderId, game: GameIndex, ready_at_ms: u64) -> LeaseId {
        self.take_lease(id, game, ready_at_ms)
    }

    fn end_lease(&mut self, id: &OrderId) {
        self.drop_lease(id);
    }

    fn release_lease(&mut self, id: &OrderId) {
        self.return_lease(id);
    }
}
