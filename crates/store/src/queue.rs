//! The delivery queue port (issue 6) and the reconciliation reads (issue 8).
//!
//! Every order waiting for delivery has exactly one entry in its game's queue, ordered by
//! (`ready_at_ms`, order id): new orders are due at their creation, retries at their back-off
//! time. The order row and its entry change together, in one atomic write.
//!
//! # Leases: at-least-once, made harmless by the serial
//!
//! [`DeliveryQueue::lease`] hands out due entries that are not leased. Leases live in memory
//! only: a lease is the `delivering` state, which is therefore never persisted (it would cost
//! one more durable write per delivery and buy nothing: after a crash every unacknowledged
//! entry must be delivered again anyway). After a restart every entry is leasable again, so an
//! order may reach the game twice; the game applies it once because the order id is its serial.
//!
//! A lease ends with exactly one of [`DeliveryQueue::finish`] (delivered, dead or expired: one
//! atomic write of the order's status, the actual-send log when delivered, and the removal of
//! the entry), [`DeliveryQueue::retry`] (order `retrying`, entry moved to its new due time) or
//! [`DeliveryQueue::release`] (nothing written: the entry is leasable again). A second end of the
//! same lease, or an end of a lease from before a restart, is answered [`Settled::NotLeased`] and
//! changes nothing: the send log never gets a second row from one lease.

use std::future::Future;

use hongbao_domain::{GameIndex, Order, OrderEvent, OrderId, OrderStatus};

use crate::StoreError;

/// Most entries one [`DeliveryQueue::lease`] call returns.
pub const LEASE_BATCH_MAX: usize = 1_024;
/// Most leases held at once over all games (in-flight deliveries); `lease` returns fewer when
/// the bound is reached.
pub const LEASES_MAX: usize = 65_536;
/// Most rows one page of a scan returns.
pub const SCAN_PAGE_MAX: usize = 10_000;

/// Names one lease. Opaque; unique within a store's lifetime and across restarts (the embedded
/// store persists an incarnation number that is part of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub(crate) u64);

/// A leased queue entry: deliver `order` to `game`, then end the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// Status `delivering`; `ready_at_ms` is the entry's position.
    pub order: Order,
    pub game: GameIndex,
    pub lease: LeaseId,
}

/// How a delivery ended for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The game applied it (or reported a duplicate). Appends to the actual-send log.
    Delivered,
    /// Permanent failure.
    Dead { reason: String },
    /// The deadline passed.
    Expired,
}

/// The answer to ending a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Written; the order as it is now.
    Applied(Box<Order>),
    /// The lease had already ended (or predates a restart): nothing changed.
    NotLeased,
}

/// The answer to [`DeliveryQueue::requeue`].
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

/// The per-game delivery queues. See the module doc for the lease protocol.
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Up to `max` (at most [`LEASE_BATCH_MAX`]) entries of `game` due at `now_ms` and not
    /// leased, in queue order, each now leased.
    fn lease(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<QueueEntry>, StoreError>> + Send;

    /// Ends the lease for good (see [`Finish`]).
    fn finish(
        &self,
        entry: &QueueEntry,
        finish: Finish,
        now_ms: u64,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// Ends the lease with a transient failure: the order becomes `retrying` (attempts + 1,
    /// `last_error`), its entry due at `ready_at_ms`.
    fn retry(
        &self,
        entry: &QueueEntry,
        ready_at_ms: u64,
        error: String,
        now_ms: u64,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// Ends the lease without an attempt (pause, shutdown): nothing is written.
    fn release(
        &self,
        entry: &QueueEntry,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// Puts an order back into its queue (reconciliation, operators). Idempotent: an order that
    /// is already queued is not queued twice; a queued order whose entry is missing gets it back.
    fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> impl Future<Output = Result<RequeueOutcome, StoreError>> + Send;

    /// Entries in `game`'s queue (leased ones included). In memory: cheap.
    fn depth(&self, game: GameIndex) -> u64;

    /// Entries of `game` leased now (in flight).
    fn leased(&self, game: GameIndex) -> u64;

    /// The due time of the oldest entry of `game` that is not in flight (not leased), if any:
    /// `now - oldest` is how long the backlog has waited.
    fn oldest_ready_ms(
        &self,
        game: GameIndex,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

/// Reconciliation's one write besides [`DeliveryQueue::requeue`]: the game side's own log shows
/// an order applied that our records do not (a worker died between the game's answer and its
/// `finish`, or the order went dead or expired on an attempt whose answer was lost).
pub trait LedgerRepair: Send + Sync + 'static {
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
}

/// The order [`LedgerRepair::record_delivered`] writes, or `None` for an order already
/// delivered. Only legal transitions: a final order is resent and a held one released first.
pub(crate) fn recorded_delivered(
    order: &Order,
    delivered_at_ms: u64,
    now_ms: u64,
) -> Option<Order> {
    let queued = match order.status {
        OrderStatus::Delivered => return None,
        OrderStatus::Queued | OrderStatus::Retrying | OrderStatus::Delivering => order.clone(),
        OrderStatus::Held => order.apply(&OrderEvent::Release { ready_at_ms: now_ms }, now_ms)?,
        OrderStatus::Dead | OrderStatus::Expired => {
            let deliver_by_ms = order.deliver_by_ms;
            order.apply(&OrderEvent::Resend { ready_at_ms: now_ms, deliver_by_ms }, now_ms)?
        }
    };
    let delivered = queued
        .apply(&OrderEvent::StartDelivery, now_ms)
        .and_then(|o| o.apply(&OrderEvent::Delivered, now_ms))
        .expect("a queued order can be delivered");
    let recorded =
        Order { attempts: order.attempts, delivered_at_ms: Some(delivered_at_ms), ..delivered };
    assert!(recorded.is_consistent(), "{recorded:?}");
    Some(recorded)
}
