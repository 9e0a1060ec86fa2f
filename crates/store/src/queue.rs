//! The store's per-game delivery queues, and the reads and repairs of reconciliation.
//!
//! Every order waiting for delivery has exactly one entry in its game's queue, ordered by
//! (`ready_at_ms`, order id): new orders are due at their creation, retries at their back-off
//! time. The order row and its entry change together, in one atomic write.
//!
//! The delivery workers see these queues through THE delivery-queue port,
//! [`hongbao_queue::DeliveryQueue`], which both adapters implement directly (see `delivery.rs`);
//! the store adds no queue trait of its own. Reconciliation's needs beyond the port are
//! [`LedgerScan`] (paged reads, queue counts) and [`LedgerRepair`] (requeue, record a delivery).
//!
//! # Leases: at-least-once, made harmless by the serial
//!
//! A lease hands out a due entry that is not leased. Leases live in memory only: a lease is the
//! `delivering` state, which is therefore never persisted (it would cost one more durable write
//! per delivery and buy nothing: after a crash every unacknowledged entry must be delivered again
//! anyway). After a restart every entry is leasable again, so an order may reach the game twice;
//! the game applies it once because the order id is its serial.
//!
//! A lease ends with exactly one of finish (delivered, dead or expired: one atomic write of the
//! order's status, the actual-send log when delivered, and the removal of the entry), retry
//! (order `retrying`, entry moved to its new due time) or release (nothing written: the entry is
//! leasable again). A second end of the same lease, or an end of a lease from before a restart,
//! changes nothing (the port answers `LeaseLost`): the send log never gets a second row from one
//! lease.

use std::future::Future;

use hongbao_domain::{GameIndex, Order, OrderId};

use crate::StoreError;

/// Most entries one lease call returns.
pub const LEASE_BATCH_MAX: usize = 1_024;
/// Most leases held at once over all games (in-flight deliveries); a lease call returns fewer
/// when the bound is reached.
pub const LEASES_MAX: usize = 65_536;
/// Most rows one page of a scan returns.
pub const SCAN_PAGE_MAX: usize = 10_000;

/// Names one lease. Opaque; unique within a store's lifetime and across restarts (the embedded
/// store persists an incarnation number that is part of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub(crate) u64);

/// A leased queue entry: the store's handle on a lease ([`hongbao_queue::Leased::lease`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// Status `delivering`; `ready_at_ms` is the entry's position.
    pub order: Order,
    pub game: GameIndex,
    pub lease: LeaseId,
}

/// The store's answer to ending a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Written; the order as it is now.
    Applied(Box<Order>),
    /// The lease had already ended (or predates a restart): nothing changed.
    NotLeased,
}

/// The answer to [`LedgerRepair::requeue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequeueOutcome {
    /// Was delivered, dead or expired: queued again with a new deadline.
    Requeued(Box<Order>),
    /// Was queued or retrying but its queue entry was missing: the entry is restored.
    Repaired(Box<Order>),
    /// Already in the queue (or held for review): nothing changed.
    Unchanged(Box<Order>),
    NotFound,
}

/// The answer to [`LedgerRepair::record_delivered`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Now `delivered`, with a send-log row at the game's time; its queue entry (if any) is gone.
    Recorded(Box<Order>),
    /// Already `delivered`: nothing changed.
    Unchanged(Box<Order>),
    /// Leased right now: its worker is delivering it and will record the outcome (the game
    /// answers `duplicate`). Nothing changed.
    InFlight(Box<Order>),
    NotFound,
}

/// One row of the actual-send log: `order_id` was delivered at `delivered_at_ms`. An order
/// delivered again after a resend has one row per delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SentRecord {
    pub order_id: OrderId,
    pub delivered_at_ms: u64,
}

/// One queue entry, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueuedRef {
    pub ready_at_ms: u64,
    pub order_id: OrderId,
}

/// Reconciliation's writes: the resend list goes back into the queues, and the game side's own
/// log shows an order applied that our records do not (a worker died between the game's answer
/// and its finish, or the order went dead or expired on an attempt whose answer was lost).
pub trait LedgerRepair: Send + Sync + 'static {
    /// Puts an order back into its queue (reconciliation, operators). Idempotent: an order that
    /// is already queued is not queued twice; a queued order whose entry is missing gets it back.
    fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> impl Future<Output = Result<RequeueOutcome, StoreError>> + Send;

    /// Records `order_id` as delivered at `delivered_at_ms` (the game's time), in one atomic
    /// write: status `delivered` (through the state machine's legal steps: resend or release
    /// first for a final or held order, then start and deliver), one send-log row, and the
    /// removal of its queue entry. `attempts` and the deadline are kept: this is a record of
    /// what happened, not an attempt. Idempotent: a delivered order is `Unchanged`; a leased
    /// one is `InFlight` and untouched (its lease must be able to end normally).
    fn record_delivered(
        &self,
        order_id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<RecordOutcome, StoreError>> + Send;
}

/// Paged reads in key order for reconciliation: each page is bounded (at most
/// [`SCAN_PAGE_MAX`] rows) and continues strictly after the last row of the previous page, so
/// a full pass holds one page in memory. Pages are not one snapshot: rows written during a pass
/// may or may not appear (the reconciler treats fresh orders accordingly).
pub trait LedgerScan: Send + Sync + 'static {
    /// Orders in id order (the same order as the ids' text).
    fn scan_orders(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Order>, StoreError>> + Send;

    /// The actual-send log in (order id, delivered at) order.
    fn scan_sent(
        &self,
        after: Option<SentRecord>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SentRecord>, StoreError>> + Send;

    /// `game`'s queue in delivery order.
    fn scan_queue(
        &self,
        game: GameIndex,
        after: Option<QueuedRef>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedRef>, StoreError>> + Send;

    /// Whether `order`'s queue entry (at its `ready_at_ms`) exists: the check that finds orders
    /// that say "queued" but are not (e.g. an entry deleted by hand). One point read.
    fn in_queue(&self, order: &Order) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Entries in `game`'s queue (leased ones included). In memory: cheap. 0 for a game the
    /// store is not bound to.
    fn queue_depth(&self, game: GameIndex) -> u64;

    /// Entries of `game` leased now (in flight).
    fn leased(&self, game: GameIndex) -> u64;
}
