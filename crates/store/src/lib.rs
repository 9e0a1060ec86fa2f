//! Ports of hongbao's durable state and their adapters (DESIGN.md §3).
//!
//! The services depend on the narrow traits here, never on an engine:
//!
//! - [`GrantLedger`] records coupon grants (the grab, `POST /v1/coupons`);
//! - [`ClaimLedger`] turns a claim into a durable, queued order in one atomic step and reads
//!   orders back (`POST /v1/claims`, `GET /v1/orders`), see [`claim`];
//! - the per-game queues the delivery workers lease from are THE delivery-queue port,
//!   [`hongbao_queue::DeliveryQueue`], implemented by both adapters; [`LedgerScan`] holds the
//!   paged reads of orders, the actual-send log and the queues that reconciliation merges, and
//!   [`LedgerRepair`] its repairs (requeue; record a delivery the game side logged but we did
//!   not), see [`queue`].
//!
//! The rules every adapter applies are written once, in `ledger/`, over a narrow view of a
//! store's state; the adapters differ in how they store, never in what they decide:
//!
//! - [`MemoryStore`]: in-process, for tests of the other crates; forgets everything on drop.
//! - [`EmbeddedStore`]: fjall on local disk with group commit — one writer thread, one atomic
//!   batch and one fsync per group of requests, answered only after the fsync.
//! - `hongbao_redis::RedisLedger` (`crates/redis`, which depends on this crate): distributed
//!   mode, where Redis runs the decisions. Its Lua scripts (one per grant, one per claim)
//!   restate the grant and claim rules, and its differential test holds them to
//!   [`MemoryStore`]'s answers.
//!
//! Shared behavioural suites (`tests/grant_ledger.rs`, `tests/claims.rs`) and a differential
//! property test of the writer against the memory store check that they agree.

pub mod claim;
mod delivery;
pub mod embedded;
mod ledger;
pub mod memory;
pub mod queue;

use std::future::Future;
use std::sync::Arc;

pub use claim::{
    CampaignBinding, ClaimOutcome, ClaimRequest, DAY_MS, HOUR_MS, HighValueRule, HighValueUsage,
    IDEMPOTENCY_KEY_MAX_LEN, IDEMPOTENCY_TTL_MS, IdempotencyKey, ORDERS_OF_MAX, day_ends_at_ms,
    day_of, hour_ends_at_ms, hour_of,
};
pub use embedded::{
    CommitLinger, EmbeddedConfig, EmbeddedStats, EmbeddedStore, RuntimeIdle,
    SYNCED_COMMIT_BOUNDS_MS, SYNCED_COMMIT_BUCKETS,
};
pub use hongbao_domain::{Channel, GameIndex, GiftIndex, Order, OrderId, OrderStatus};
/// The repairs' decisions as pure functions, for adapters whose atomic step runs elsewhere (the
/// Redis scripts write what these decide, conditional on the order they read).
pub use ledger::repair::{recorded_delivered, resent};
pub use memory::MemoryStore;
pub use queue::{
    LEASE_BATCH_MAX, LEASES_MAX, LeaseId, LedgerRepair, LedgerScan, QueueEntry, QueuedRef,
    RecordOutcome, RequeueOutcome, SCAN_PAGE_MAX, SentRecord,
};

/// One grab: may `user` have one more coupon from `channel`?
///
/// The limits travel with the request (from the campaign's `ChannelSpec`) rather than living in
/// the store, so the store needs no copy of the campaign and a reloaded campaign applies at once.
/// The counters they are checked against are the store's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantRequest {
    pub user: u64,
    pub channel: Channel,
    /// `ChannelSpec.coupons_per_user`.
    pub per_user_limit: u32,
    /// `ChannelSpec.budget`: coupons this channel may grant in the whole campaign.
    pub budget: u64,
}

/// The decision on a [`GrantRequest`]. Rejections are answers, not errors: they change no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Recorded durably. `serial` is the user's n-th coupon on this channel, 1-based; it is never
    /// handed out twice for the same (user, channel), also across restarts, so the coupon built
    /// from it (campaign, user, channel, serial) is unique.
    Granted { serial: u32 },
    /// The channel has granted `budget` coupons. Checked first: once a channel is out, every
    /// request hears so, and a store can answer it from its committed counter without queueing.
    BudgetExhausted,
    /// The user already holds `per_user_limit` coupons of this channel.
    UserLimitReached,
}

/// Operating errors of a store. Callers map them to 503; none of them means "no".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot answer now: the writer has stopped, the store is closed, or the disk
    /// failed. A grant that failed this way was not granted (see `EmbeddedStore` for the one
    /// caveat: a failed fsync).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data read from disk does not have the persisted layout.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// The store was opened with a configuration it cannot work with, or is asked about a
    /// campaign, gift or game it is not bound to (see [`CampaignBinding`]).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// A request no correct caller sends (e.g. an over-long role id); it changed nothing.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// Per-user-per-channel coupon limits and per-channel budgets, held exactly.
///
/// Implementations serialise grants per (user, channel) and per channel: under any concurrency,
/// a channel grants at most `budget` coupons (for the budget of the requests that granted them)
/// and a user's serials on a channel are exactly `1..=n` with `n <= per_user_limit`.
pub trait GrantLedger: Send + Sync + 'static {
    /// Decide and record one grant. `Ok(Granted)` is durable when it is returned (for a durable
    /// implementation). A future dropped before it resolves may or may not have granted.
    fn grant(
        &self,
        req: GrantRequest,
    ) -> impl Future<Output = Result<GrantOutcome, StoreError>> + Send;

    /// Coupons granted (durably) on `channel` so far: for metrics and tests.
    fn granted(&self, channel: Channel) -> u64;
}

impl<T: GrantLedger> GrantLedger for Arc<T> {
    fn grant(
        &self,
        req: GrantRequest,
    ) -> impl Future<Output = Result<GrantOutcome, StoreError>> + Send {
        T::grant(self, req)
    }

    fn granted(&self, channel: Channel) -> u64 {
        T::granted(self, channel)
    }
}

/// Claims: one atomic, durable, idempotent step from a verified coupon to a queued order.
/// See [`claim`] for the decisions and their order.
///
/// Implementations serialise claims: under any concurrency a gift gives at most `stock` units
/// (for the stock of the requests that took them), a user gets at most `per_user_limit` of a
/// gift, and a coupon is redeemed at most once.
pub trait ClaimLedger: Send + Sync + 'static {
    /// Decide and record one claim. `Ok(Accepted)` is durable (and queued) when it is returned
    /// (for a durable implementation). A future dropped before it resolves may or may not have
    /// claimed; the same claim again tells which (it answers `Replayed`).
    fn claim(
        &self,
        req: ClaimRequest,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// One order, as committed.
    fn order(&self, id: &OrderId)
    -> impl Future<Output = Result<Option<Order>, StoreError>> + Send;

    /// `user`'s order `id`, as committed: `None` if there is none or it is another user's. What
    /// the API asks (it always knows whose order it wants); a store that keeps each user's
    /// claims in one place of several (Redis claim shards) looks only there.
    fn user_order(
        &self,
        user: u64,
        id: &OrderId,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send {
        let found = self.order(id);
        async move { Ok(found.await?.filter(|o| o.user == user)) }
    }

    /// Up to `limit` (at most [`ORDERS_OF_MAX`]) of `user`'s orders, oldest first.
    fn orders_of(
        &self,
        user: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, StoreError>> + Send;

    /// Units of `gift` taken so far (committed). In memory and cheap: the gift list asks for
    /// every gift on every request to hide sold-out ones. 0 for a gift the store is not bound to.
    fn stock_taken(&self, gift: GiftIndex) -> u64;

    /// What `user` has used of the high-value rules at `now_ms` (their UTC day's count, the UTC
    /// hour's cents over everyone), as committed: the gift list's read, so it hides a high-value
    /// gift a claim would refuse. The claim itself counts inside its atomic step.
    fn high_value_usage(
        &self,
        user: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<HighValueUsage, StoreError>> + Send;
}

impl<T: ClaimLedger> ClaimLedger for Arc<T> {
    fn claim(
        &self,
        req: ClaimRequest,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send {
        T::claim(self, req)
    }

    fn order(
        &self,
        id: &OrderId,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send {
        T::order(self, id)
    }

    fn user_order(
        &self,
        user: u64,
        id: &OrderId,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send {
        T::user_order(self, user, id)
    }

    fn orders_of(
        &self,
        user: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, StoreError>> + Send {
        T::orders_of(self, user, limit)
    }

    fn stock_taken(&self, gift: GiftIndex) -> u64 {
        T::stock_taken(self, gift)
    }

    fn high_value_usage(
        &self,
        user: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<HighValueUsage, StoreError>> + Send {
        T::high_value_usage(self, user, now_ms)
    }
}

impl<T: LedgerRepair> LedgerRepair for Arc<T> {
    fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> impl Future<Output = Result<RequeueOutcome, StoreError>> + Send {
        T::requeue(self, order_id, now_ms, deliver_by_ms)
    }

    fn record_delivered(
        &self,
        order_id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<RecordOutcome, StoreError>> + Send {
        T::record_delivered(self, order_id, delivered_at_ms, now_ms)
    }
}

impl<T: LedgerScan> LedgerScan for Arc<T> {
    fn scan_orders(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, StoreError>> + Send {
        T::scan_orders(self, after, limit)
    }

    fn scan_sent(
        &self,
        after: Option<SentRecord>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SentRecord>, StoreError>> + Send {
        T::scan_sent(self, after, limit)
    }

    fn scan_queue(
        &self,
        game: GameIndex,
        after: Option<QueuedRef>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedRef>, StoreError>> + Send {
        T::scan_queue(self, game, after, limit)
    }

    fn in_queue(&self, order: &Order) -> impl Future<Output = Result<bool, StoreError>> + Send {
        T::in_queue(self, order)
    }

    fn queue_depth(&self, game: GameIndex) -> u64 {
        T::queue_depth(self, game)
    }

    fn leased(&self, game: GameIndex) -> u64 {
        T::leased(self, game)
    }
}

/// Number of channels; the per-channel counter arrays are indexed by [`channel_index`].
pub(crate) const CHANNELS: usize = 3;

/// Dense index of a channel for in-memory arrays. Not persisted (the layout has its own codes).
pub(crate) fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Swipe => 0,
        Channel::ArMap => 1,
        Channel::Scan => 2,
    }
}
