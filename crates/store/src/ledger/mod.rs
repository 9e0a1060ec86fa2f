//! The ledger's rules, written once.
//!
//! Every decision a store applies atomically — a grant ([`grant`]), a claim ([`claim`]), a
//! lease and its end ([`lease`]), a requeue and a recorded delivery ([`repair`]) — is a pure
//! function over [`LedgerTxn`]: the few reads a decision needs and the writes it makes. Backends
//! differ in how they store, never in what they decide:
//!
//! - [`crate::MemoryStore`] implements [`LedgerTxn`] over its maps, one command at a time under
//!   one lock;
//! - the embedded writer implements it over its batch's staged overlay: the batch's own writes
//!   over committed fjall reads, with the Bloom filter of what the store may hold answering
//!   "certainly absent" without a read;
//! - the Redis adapter (`crates/redis`, which depends on this crate) restates them as one Lua
//!   script per command. The differential property test of the writer
//!   (`embedded/writer/tests.rs`) drives these functions through two backends and compares every
//!   answer and the resulting state; `crates/redis/tests/differential.rs` does the same for the
//!   scripts against [`crate::MemoryStore`].
//!
//! Contract of every decision, relied on by the writer's batches: it makes all its fallible
//! reads before its first write, so a read that fails (a disk error) fails that command alone,
//! having changed nothing; and a rejection writes nothing.

pub(crate) mod claim;
pub(crate) mod grant;
pub(crate) mod lease;
pub(crate) mod repair;

use hongbao_domain::{Channel, GameIndex, GiftIndex, Order, OrderId};

pub(crate) use claim::{IdempotencyRecord, Prepared, RecordedKind};
pub(crate) use lease::SettleAction;

use crate::StoreError;
use crate::queue::LeaseId;

/// A queue entry's identity: the game's dense index, the due time, the order. The persisted key
/// names the game by its id (see `embedded/layout.rs`); the binding translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct QueueSlot {
    pub game: GameIndex,
    pub ready_at_ms: u64,
    pub id: OrderId,
}

/// A lease held on a queue entry. In memory in every backend: a lease is the `delivering`
/// state, which is never persisted (see [`crate::queue`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub id: LeaseId,
    pub game: GameIndex,
    /// The leased entry's position; the order's `ready_at_ms` while the lease lasts.
    pub ready_at_ms: u64,
}

/// One store's state as the decisions see it, inside one atomic step: reads see the step's own
/// earlier writes. Reads that may touch a disk are fallible; writes are not (a backend stages
/// them and fails the whole step at its commit, or applies them in memory).
///
/// Ids and indexes passed in are valid: gifts and games are bound (the decisions derive them
/// from the [`crate::CampaignBinding`]), and a slot dequeued or a lease ended was read first.
pub(crate) trait LedgerTxn {
    // --- reads ---------------------------------------------------------------------------------

    /// The order with this id.
    fn order(&mut self, id: &OrderId) -> Result<Option<Order>, StoreError>;

    /// Orders of `gift` that `user` claimed.
    fn claimed(&mut self, user: u64, gift: GiftIndex) -> Result<u32, StoreError>;

    /// Units of `gift` taken.
    fn stock_taken(&mut self, gift: GiftIndex) -> u64;

    /// Coupons granted to `user` on `channel`: the last serial handed out.
    fn grants(&mut self, user: u64, channel: Channel) -> Result<u32, StoreError>;

    /// Coupons granted on `channel` so far.
    fn channel_granted(&mut self, channel: Channel) -> u64;

    /// The record `user`'s idempotency key `key` left, expired or not.
    fn idempotency_record(
        &mut self,
        user: u64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// High-value claims `user` made in UTC day `day` (see [`crate::claim::day_of`]).
    fn high_value_claimed(&mut self, user: u64, day: u64) -> Result<u32, StoreError>;

    /// High-value cents accepted in UTC hour `hour` (see [`crate::claim::hour_of`]).
    fn high_value_spent(&mut self, hour: u64) -> Result<u64, StoreError>;

    /// Whether the queue holds this entry.
    fn queue_has(&mut self, slot: QueueSlot) -> Result<bool, StoreError>;

    /// The lease held on `id`'s entry, if any.
    fn lease(&self, id: &OrderId) -> Option<Lease>;

    // --- writes --------------------------------------------------------------------------------

    /// Creates or replaces an order (its state after this step).
    fn put_order(&mut self, order: Order);

    /// Adds `id` to `user`'s orders ("my orders").
    fn index_user_order(&mut self, user: u64, id: OrderId);

    fn set_claimed(&mut self, user: u64, gift: GiftIndex, claimed: u32);

    fn set_stock_taken(&mut self, gift: GiftIndex, taken: u64);

    fn set_grants(&mut self, user: u64, channel: Channel, granted: u32);

    fn set_high_value_claimed(&mut self, user: u64, day: u64, claimed: u32);

    fn set_high_value_spent(&mut self, hour: u64, cents: u64);

    fn set_channel_granted(&mut self, channel: Channel, granted: u64);

    /// Adds an entry to its game's queue.
    fn enqueue(&mut self, slot: QueueSlot);

    /// Removes an entry from its game's queue.
    fn dequeue(&mut self, slot: QueueSlot);

    /// Appends a row to the actual-send log.
    fn append_sent(&mut self, id: OrderId, delivered_at_ms: u64);

    fn put_idempotency_record(&mut self, user: u64, key: &str, record: IdempotencyRecord);

    // --- leases (memory only, never rolled back with a failed commit) ---------------------------

    /// Leases `id`'s entry at `ready_at_ms` in `game`; returns the new lease's id, unique within
    /// the store's lifetime and across restarts.
    fn start_lease(&mut self, id: OrderId, game: GameIndex, ready_at_ms: u64) -> LeaseId;

    /// Ends `id`'s lease after its entry was rewritten or removed in this step.
    fn end_lease(&mut self, id: &OrderId);

    /// Ends `id`'s lease with its entry left where it was: leasable again at its old position.
    fn release_lease(&mut self, id: &OrderId);
}
