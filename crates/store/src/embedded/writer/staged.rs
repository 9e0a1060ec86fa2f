//! A batch's writes, staged in memory until its single commit, and how they are encoded into
//! the backend's batch.

use std::collections::HashMap;

use hongbao_domain::{GiftIndex, Order, OrderId};

use super::{Backend, Space};
use crate::claim::CampaignBinding;
use crate::embedded::known::Known;
use crate::embedded::layout::{self, GrantKey};
use crate::ledger::{IdempotencyRecord, QueueSlot};
use crate::{CHANNELS, Channel, channel_index};

/// Everything a batch writes. Bounded by the batch: a handful of entries per command. The
/// decisions read through it (see `overlay.rs`), so a batch sees its own earlier writes.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The final count of every (user, channel) granted to in this batch: one row per key,
    /// however many of the batch's grants hit it.
    pub grants: HashMap<GrantKey, u32>,
    /// The new granted-so-far of every channel that granted in this batch.
    pub budgets: [Option<u64>; CHANNELS],
    /// Orders created or changed (their last state in the batch).
    pub orders: HashMap<OrderId, Order>,
    pub user_orders: Vec<(u64, OrderId)>,
    /// New claimed count per (user, gift).
    pub user_gifts: HashMap<(u64, GiftIndex), u32>,
    /// New taken count per gift.
    pub stock: HashMap<GiftIndex, u64>,
    /// Queue entries inserted (`true`) or removed (`false`); the last change of a key wins.
    pub queue: HashMap<QueueSlot, bool>,
    pub sent: Vec<(OrderId, u64)>,
    pub idempotency: HashMap<(u64, String), IdempotencyRecord>,
    /// New high-value claim count per (user, UTC day).
    pub high_value_users: HashMap<(u64, u64), u32>,
    /// New high-value cents per UTC hour.
    pub high_value_hours: HashMap<u64, u64>,
}

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
            && self.budgets.iter().all(Option::is_none)
            && self.orders.is_empty()
            && self.user_orders.is_empty()
            && self.user_gifts.is_empty()
            && self.stock.is_empty()
            && self.queue.is_empty()
            && self.sent.is_empty()
            && self.idempotency.is_empty()
            && self.high_value_users.is_empty()
            && self.high_value_hours.is_empty()
    }

    pub fn clear(&mut self) {
        self.grants.clear();
        self.budgets = [None; CHANNELS];
        self.orders.clear();
        self.user_orders.clear();
        self.user_gifts.clear();
        self.stock.clear();
        self.queue.clear();
        self.sent.clear();
        self.idempotency.clear();
        self.high_value_users.clear();
        self.high_value_hours.clear();
    }

    /// Writes the batch into `backend`'s open batch, encoded as `layout.rs` says.
    /// Every order id and (user, gift) count it writes goes into `known` first (see `known`).
    pub fn write_to<B: Backend>(&self, binding: &CampaignBinding, known: &Known, backend: &mut B) {
        for (key, count) in &self.grants {
            backend.put(Space::Grants, key, &layout::encode_count(*count));
        }
        for channel in Channel::ALL {
            if let Some(granted) = self.budgets[channel_index(channel)] {
                let key = layout::budget_key(channel);
                backend.put(Space::Counters, key.as_bytes(), &layout::encode_budget(granted));
            }
        }
        for (id, order) in &self.orders {
            known.insert_order(id);
            backend.put(Space::Orders, &layout::order_key(id), &layout::encode_order(order));
        }
        for (user, id) in &self.user_orders {
            backend.put(Space::UserOrders, &layout::user_order_key(*user, id), &[]);
        }
        for ((user, gift), count) in &self.user_gifts {
            known.insert_user_gift(*user, *gift);
            let (gift_id, _) = binding.gift(*gift).expect("staged gifts are bound");
            let key = layout::user_gift_key(*user, gift_id);
            backend.put(Space::UserGifts, &key, &layout::encode_count(*count));
        }
        for (gift, taken) in &self.stock {
            let (gift_id, _) = binding.gift(*gift).expect("staged gifts are bound");
            let key = layout::stock_key(gift_id);
            backend.put(Space::Counters, key.as_bytes(), &layout::encode_u64(*taken));
        }
        for (slot, insert) in &self.queue {
            let game_id = binding.game_id(slot.game).expect("staged games are bound");
            let key = layout::queue_key(game_id, slot.ready_at_ms, &slot.id);
            if *insert {
                backend.put(Space::Queue, &key, &[]);
            } else {
                backend.delete(Space::Queue, &key);
            }
        }
        for ((user, day), count) in &self.high_value_users {
            let key = layout::high_value_user_key(*user, *day);
            backend.put(Space::Counters, &key, &layout::encode_count(*count));
        }
        for (hour, cents) in &self.high_value_hours {
            let key = layout::high_value_hour_key(*hour);
            backend.put(Space::Counters, &key, &layout::encode_u64(*cents));
        }
        for (id, at) in &self.sent {
            backend.put(Space::Sent, &layout::sent_key(id, *at), &[]);
        }
        for ((user, key), record) in &self.idempotency {
            let key = layout::idempotency_key(*user, key);
            backend.put(Space::Idempotency, &key, &layout::encode_idempotency(record));
        }
    }
}
