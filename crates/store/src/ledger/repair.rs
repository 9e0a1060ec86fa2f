//! Reconciliation's two writes: put an order back into its queue, and record a delivery the game
//! side logged but the ledger did not (see [`crate::LedgerRepair`]).

use hongbao_domain::{GameIndex, Order, OrderEvent, OrderId, OrderStatus};

use super::{LedgerTxn, QueueSlot};
use crate::StoreError;
use crate::claim::CampaignBinding;
use crate::queue::{RecordOutcome, RequeueOutcome};

/// Puts `order_id` back into its queue. Idempotent: an order already queued (or leased: its
/// entry stays in the queue while in flight) is unchanged; a queued order whose entry is
/// missing gets it back; a held order waits for review; a final one is resent with the new
/// deadline.
pub(crate) fn requeue<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    binding: &CampaignBinding,
    order_id: OrderId,
    now_ms: u64,
    deliver_by_ms: u64,
) -> Result<RequeueOutcome, StoreError> {
    let Some(order) = txn.order(&order_id)? else {
        return Ok(RequeueOutcome::NotFound);
    };
    let game = bound_game(binding, &order)?;
    if order.status.is_in_queue() {
        let ready_at_ms = order.ready_at_ms.expect("consistent orders in the queue have one");
        let slot = QueueSlot { game, ready_at_ms, id: order_id };
        if txn.queue_has(slot)? {
            return Ok(RequeueOutcome::Unchanged(Box::new(order)));
        }
        txn.enqueue(slot);
        return Ok(RequeueOutcome::Repaired(Box::new(order)));
    }
    if order.status == OrderStatus::Held {
        return Ok(RequeueOutcome::Unchanged(Box::new(order)));
    }
    let next = resent(&order, now_ms, deliver_by_ms).expect("final orders can be resent");
    txn.enqueue(QueueSlot { game, ready_at_ms: now_ms, id: order_id });
    txn.put_order(next.clone());
    Ok(RequeueOutcome::Requeued(Box::new(next)))
}

/// Records `order_id` as delivered at `delivered_at_ms` (the game's time): status, one send-log
/// row, and the removal of its queue entry. A delivered order is unchanged; a leased one is in
/// flight and untouched (its lease must be able to end normally).
pub(crate) fn record_delivered<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    binding: &CampaignBinding,
    order_id: OrderId,
    delivered_at_ms: u64,
    now_ms: u64,
) -> Result<RecordOutcome, StoreError> {
    let Some(order) = txn.order(&order_id)? else {
        return Ok(RecordOutcome::NotFound);
    };
    if txn.lease(&order_id).is_some() {
        return Ok(RecordOutcome::InFlight(Box::new(order)));
    }
    let Some(next) = recorded_delivered(&order, delivered_at_ms, now_ms) else {
        return Ok(RecordOutcome::Unchanged(Box::new(order)));
    };
    if let Some(ready_at_ms) = order.ready_at_ms {
        let slot = QueueSlot { game: bound_game(binding, &order)?, ready_at_ms, id: order_id };
        // Missing when deleted by hand; then there is nothing to remove.
        if txn.queue_has(slot)? {
            txn.dequeue(slot);
        }
    }
    txn.append_sent(order_id, delivered_at_ms);
    txn.put_order(next.clone());
    Ok(RecordOutcome::Recorded(Box::new(next)))
}

fn bound_game(binding: &CampaignBinding, order: &Order) -> Result<GameIndex, StoreError> {
    binding
        .game_index(&order.game_id)
        .ok_or_else(|| StoreError::InvalidConfig(format!("game `{}` is not bound", order.game_id)))
}

/// The order a requeue writes for a final order (delivered, dead, expired): queued again, due
/// now, with the new deadline. `None` for an order that is waiting or held: there is nothing
/// to resend (the caller checks its queue entry instead).
pub fn resent(order: &Order, now_ms: u64, deliver_by_ms: u64) -> Option<Order> {
    if !order.status.is_final() {
        return None;
    }
    order.apply(&OrderEvent::Resend { ready_at_ms: now_ms, deliver_by_ms }, now_ms)
}

/// The order [`record_delivered`] writes, or `None` for an order already delivered. Only legal
/// transitions: a final order is resent and a held one released first; `attempts` and the
/// deadline are kept (a record of what happened, not an attempt).
pub fn recorded_delivered(order: &Order, delivered_at_ms: u64, now_ms: u64) -> Option<Order> {
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
