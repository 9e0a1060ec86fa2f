//! The port itself: what the workers lease, how a lease ends, and the queue's contract.

use std::future::Future;

use hongbao_domain::campaign::Item;
use hongbao_domain::{GameIndex, RoleId, ZoneId};
use serde::Serialize;

/// What one delivery needs to know about an order, as the queue hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedOrder {
    /// The order id; sent to the game as the delivery's serial, which makes repeats harmless.
    pub order_id: String,
    pub user: u64,
    pub game: GameIndex,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
    /// The gift pack's items (the adapter resolves them from the order's gift).
    pub items: Vec<Item>,
    /// Unix milliseconds after which the order must not be delivered: it becomes `expired`.
    pub deliver_by_ms: u64,
    /// Failed attempts so far (each [`DeliveryQueue::retry`] counts one; busy refusals, which the
    /// game makes before doing any work, are released instead and not counted).
    pub attempts: u32,
}

/// A leased order: the view plus the adapter's own handle on the queue entry (a store entry, a
/// JetStream message with its ack handle, a lease id). The workers never look inside `lease`.
#[derive(Debug)]
pub struct Leased<L> {
    pub order: QueuedOrder,
    pub lease: L,
}

/// How an order leaves the queue for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finish {
    pub state: FinalState,
    /// Unix milliseconds of the decision.
    pub at_ms: u64,
}

/// The order's final state: maps one-to-one onto the order states `delivered`, `dead`,
/// `expired`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FinalState {
    /// The game applied it, now (`duplicate: false`) or on an earlier call whose answer was
    /// lost (`duplicate: true`).
    Delivered { duplicate: bool },
    /// No retry will deliver it (permanent refusal, or attempts exhausted).
    Dead { reason: String },
    /// `deliver_by_ms` passed before it was delivered. When the order has attempts, the last
    /// one's outcome may be unknown (a timeout): reconciliation against the game's log settles
    /// it.
    Expired,
}

/// A failed attempt: the order is tried again from `ready_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Unix milliseconds before which the order must not be leased again.
    pub ready_at_ms: u64,
    /// What went wrong, for operators (the order's `last_error`).
    pub error: String,
    /// Unix milliseconds of the decision.
    pub at_ms: u64,
}

/// A game's backlog, for the operators' status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Orders of the game not yet finished: ready, waiting for a retry, or leased.
    pub entries: u64,
    /// Of those, leased now.
    pub leased: u64,
    /// Of those, waiting for a retry (`None` when the queue does not count them).
    pub retrying: Option<u64>,
    /// The earliest ready time among them (for a never-tried order: when it was enqueued).
    pub oldest_ready_ms: Option<u64>,
}

/// An operating error of the queue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The lease is no longer ours (it expired and the entry was leased again, or the queue
    /// restarted): whoever holds it now delivers the order; the serial makes that harmless.
    #[error("lease of order `{0}` lost")]
    LeaseLost(String),
    /// The queue's storage failed; the operation may be tried again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

/// A durable per-game queue of orders to deliver.
///
/// Contract the workers rely on:
/// - [`lease`](DeliveryQueue::lease) returns only orders still to deliver (never one already
///   delivered, dead or expired: finishing removes the entry), each to one holder at a time,
///   until the holder finishes or retries it or the lease is lost (expiry, restart). A lost
///   lease makes the order leasable again: this is how a crashed worker's orders come back.
/// - [`finish`](DeliveryQueue::finish) with `Delivered` appends to the actual-send log, marks the
///   order delivered and removes the entry, atomically or in that order, so a crash at any
///   point leaves at worst an entry whose redelivery the game answers `duplicate`.
/// - [`retry`](DeliveryQueue::retry) counts one attempt (`attempts + 1`, `last_error`, state
///   `retrying`); [`release`](DeliveryQueue::release) ends a lease that made no attempt (a busy
///   refusal, pause, shutdown) and writes nothing: the entry keeps its place.
/// - Ending a lost lease returns [`QueueError::LeaseLost`] and changes nothing.
///
/// The futures are `Send` so each game's worker runs as its own task.
pub trait DeliveryQueue: Send + Sync + 'static {
    /// The adapter's handle on a leased entry.
    type Lease: Send + Sync + 'static;

    /// Leases up to `max` orders of `game` that are ready at `now_ms` (unix ms), oldest ready
    /// first.
    fn lease(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Leased<Self::Lease>>, QueueError>> + Send;

    /// Ends the order: delivered, dead or expired (see the trait's contract).
    fn finish(
        &self,
        entry: Leased<Self::Lease>,
        finish: Finish,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Ends the lease after a failed attempt: attempts + 1, the error recorded, the entry ready
    /// again at `retry.ready_at_ms` (order state `retrying`).
    fn retry(
        &self,
        entry: Leased<Self::Lease>,
        retry: Retry,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Ends the lease without an attempt: nothing is written, the entry is ready again where
    /// it was.
    fn release(
        &self,
        entry: Leased<Self::Lease>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The game's backlog.
    fn depth(&self, game: GameIndex)
    -> impl Future<Output = Result<QueueDepth, QueueError>> + Send;
}
