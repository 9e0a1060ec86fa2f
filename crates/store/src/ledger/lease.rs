//! Leases: which entries a lease call may take, what leasing one does, and how a lease ends
//! (see [`crate::queue`] for the protocol).
//!
//! Finding the due entries is the backend's (an index scan): entries of the game due at
//! `now_ms` and not leased, in queue order (`ready_at_ms`, then order id), at most
//! [`lease_quota`] of them. What happens to each is decided here.

use hongbao_domain::{GameIndex, OrderEvent, OrderId};
use hongbao_queue::FinalState;

use super::{LedgerTxn, QueueSlot};
use crate::StoreError;
use crate::queue::{LEASE_BATCH_MAX, LEASES_MAX, LeaseId, QueueEntry, Settled};

/// How a lease ends.
#[derive(Debug)]
pub(crate) enum SettleAction {
    /// For good: delivered (a send-log row), dead or expired; the entry is removed.
    Finish(FinalState),
    /// A failed attempt: `retrying`, the entry moved to `ready_at_ms`.
    Retry { ready_at_ms: u64, error: String },
    /// No attempt: nothing written, the entry leasable again where it was.
    Release,
}

/// Entries one lease call may take when it asks for `max` and `held` leases are out: bounded by
/// [`LEASE_BATCH_MAX`] per call and [`LEASES_MAX`] in flight.
pub(crate) fn lease_quota(max: usize, held: usize) -> usize {
    max.min(LEASE_BATCH_MAX).min(LEASES_MAX.saturating_sub(held))
}

/// Leases the due entry (`ready_at_ms`, `id`) of `game`: the order as the worker sees it
/// (`delivering`), under a new lease. `None` for an entry whose order does not match it (missing,
/// not queued, another position or game), which only a damaged disk produces: it is skipped
/// and left for reconciliation to report, so one bad entry cannot stop a game's deliveries.
pub(crate) fn lease_entry<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    game: GameIndex,
    game_id: &str,
    ready_at_ms: u64,
    id: OrderId,
    now_ms: u64,
) -> Option<QueueEntry> {
    assert!(txn.lease(&id).is_none(), "a leased entry is not due");
    let order = match txn.order(&id) {
        Ok(Some(order))
            if order.status.is_in_queue()
                && order.ready_at_ms == Some(ready_at_ms)
                && order.game_id == game_id =>
        {
            order
        }
        other => {
            tracing::error!(
                order = %id,
                game = game_id,
                ?other,
                "queue entry without a matching queued order; skipped"
            );
            return None;
        }
    };
    let order = order.apply(&OrderEvent::StartDelivery, now_ms).expect("queued orders can start");
    let lease = txn.start_lease(id, game, ready_at_ms);
    Some(QueueEntry { order, game, lease })
}

/// Ends lease `lease_id` of `order_id` with `action`, at `now_ms`. A lease that already ended
/// (or predates a restart) is [`Settled::NotLeased`] and changes nothing, so the send log never
/// gets a second row from one lease.
pub(crate) fn settle<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    order_id: OrderId,
    lease_id: LeaseId,
    action: SettleAction,
    now_ms: u64,
) -> Result<Settled, StoreError> {
    let lease = match txn.lease(&order_id) {
        Some(lease) if lease.id == lease_id => lease,
        _ => return Ok(Settled::NotLeased),
    };
    let stored = txn.order(&order_id)?;
    let Some(stored) =
        stored.filter(|o| o.status.is_in_queue() && o.ready_at_ms == Some(lease.ready_at_ms))
    else {
        // Checked when leased and unchangeable while leased: the disk changed under us.
        txn.end_lease(&order_id);
        return Err(StoreError::Corrupt(format!("leased order {order_id} changed on disk")));
    };
    let delivering =
        stored.apply(&OrderEvent::StartDelivery, now_ms).expect("queued orders can start");
    let (event, sent) = match action {
        SettleAction::Finish(FinalState::Delivered { .. }) => (OrderEvent::Delivered, true),
        SettleAction::Finish(FinalState::Dead { reason }) => (OrderEvent::Fail { reason }, false),
        SettleAction::Finish(FinalState::Expired) => (OrderEvent::Expire, false),
        SettleAction::Retry { ready_at_ms, error } => {
            (OrderEvent::Retry { ready_at_ms, error }, false)
        }
        SettleAction::Release => {
            txn.release_lease(&order_id);
            return Ok(Settled::Applied(Box::new(stored)));
        }
    };
    let next = delivering.apply(&event, now_ms).expect("legal from delivering");
    let slot = QueueSlot { game: lease.game, ready_at_ms: lease.ready_at_ms, id: order_id };
    txn.dequeue(slot);
    if let Some(ready_at_ms) = next.ready_at_ms {
        txn.enqueue(QueueSlot { ready_at_ms, ..slot });
    }
    if sent {
        txn.append_sent(order_id, now_ms);
    }
    txn.put_order(next.clone());
    // Last: while it is held, the entry dequeued above is known to be in flight, not read ahead.
    txn.end_lease(&order_id);
    Ok(Settled::Applied(Box::new(next)))
}
