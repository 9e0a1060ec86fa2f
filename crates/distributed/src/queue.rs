//! The delivery-queue port over JetStream (which order is waiting, who holds it) and Redis
//! (the order's state, the actual-send log).
//!
//! A lease is a fetched message. Before handing it out, the order's state is read from Redis
//! (one `HMGET` per fetch and claim shard): a finished order's message is acked and skipped (a worker recorded
//! the outcome and died before acking), one not yet due is naked until it is (a retry whose
//! delayed nak was lost), and one JetStream is about to give up on is recorded dead and
//! terminated. Ending a lease records first, then acks or naks: the record is conditional on
//! the state leased and idempotent, so a crash between the two redelivers a message the next
//! lease acks, and two holders of one message (an ack wait ran out) record one outcome — the
//! other gets [`QueueError::LeaseLost`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use hongbao_domain::{GameIndex, OrderEvent};
use hongbao_jetstream::{AckKind, DeliveryStream, Message};
use hongbao_queue::{
    DeliveryQueue, FinalState, Finish, Leased, QueueDepth, QueueError, QueuedOrder, Retry,
};
use hongbao_redis::{RedisLedger, Settled, StoredOrder};
use hongbao_store::{Order, OrderId};
use tokio::task::JoinHandle;

use crate::message::order_ref;

/// A leased order: its message (the lease) and the order as read when leased.
pub struct JetStreamLease {
    message: Message,
    stored: StoredOrder,
    id: u64,
    keeper: Arc<Keeper>,
}

impl std::fmt::Debug for JetStreamLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLease").field("order", &self.stored.order.id).finish()
    }
}

impl Drop for JetStreamLease {
    /// However the lease ends — settled, or dropped by a dying worker — it is no longer kept
    /// alive: an abandoned message comes back after its ack wait.
    fn drop(&mut self) {
        self.keeper.locked().remove(&self.id);
    }
}

/// The messages held now, kept alive with in-progress acks.
#[derive(Default)]
struct Keeper {
    held: Mutex<HashMap<u64, (GameIndex, Message)>>,
    next_id: AtomicU64,
}

impl Keeper {
    fn locked(&self) -> MutexGuard<'_, HashMap<u64, (GameIndex, Message)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// See the module doc.
pub struct JetStreamQueue {
    ledger: Arc<RedisLedger>,
    stream: Arc<DeliveryStream>,
    keeper: Arc<Keeper>,
    keep_alive: JoinHandle<()>,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl Drop for JetStreamQueue {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

impl JetStreamQueue {
    /// The queue over `stream`'s consumers and `ledger`'s orders (of the same campaign). Starts
    /// the keep-alive task: call inside a Tokio runtime.
    pub fn new(ledger: Arc<RedisLedger>, stream: Arc<DeliveryStream>) -> JetStreamQueue {
        let keeper = Arc::new(Keeper::default());
        // A third of the shortest redelivery wait: two progress acks may be lost before the
        // message is delivered to someone else.
        let every = stream.config().hold_without_progress() / 3;
        let keep_alive = tokio::spawn(keep_alive(Arc::downgrade(&keeper), every));
        JetStreamQueue { ledger, stream, keeper, keep_alive }
    }

    /// What to do with a fetched message, given the order's stored state.
    async fn admit(
        &self,
        game: GameIndex,
        message: Message,
        stored: Option<StoredOrder>,
        now_ms: u64,
    ) -> Result<Option<Leased<JetStreamLease>>, QueueError> {
        let Some(stored) = stored else {
            tracing::error!(game = game.0, "message of no stored order; terminated");
            return ack(&message, AckKind::Term).await.map(|()| None);
        };
        let order = &stored.order;
        if !order.status.is_in_queue() {
            // Finished (its record landed, its ack did not) or put aside: not ours to deliver.
            return ack(&message, AckKind::Ack).await.map(|()| None);
        }
        let ready_at_ms = order.ready_at_ms.unwrap_or(0);
        if ready_at_ms > now_ms {
            let wait = Duration::from_millis(ready_at_ms - now_ms);
            return ack(&message, AckKind::Nak(Some(wait))).await.map(|()| None);
        }
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        if delivered >= self.stream.config().deliveries_max - 1 {
            // JetStream would drop it after the next delivery, leaving the order "queued".
            let reason = format!("handed out {delivered} times without an outcome");
            return self.dead_letter(&message, &stored, reason, now_ms).await.map(|()| None);
        }
        let Some(items) = self.ledger.binding().gift_items(&order.gift_id) else {
            // Written by a claim of a campaign that has since lost the gift: no retry fixes it.
            let reason = format!("gift `{}` is not in the campaign", order.gift_id);
            return self.dead_letter(&message, &stored, reason, now_ms).await.map(|()| None);
        };
        let view = QueuedOrder {
            order_id: order.id.as_str().to_string(),
            user: order.user,
            game,
            zone_id: order.zone_id,
            role_id: order.role_id,
            items: items.to_vec(),
            deliver_by_ms: order.deliver_by_ms,
            attempts: order.attempts,
        };
        let id = self.keeper.next_id.fetch_add(1, Ordering::Relaxed);
        self.keeper.locked().insert(id, (game, message.clone()));
        let lease = JetStreamLease { message, stored, id, keeper: self.keeper.clone() };
        Ok(Some(Leased { order: view, lease }))
    }

    /// Records the order dead and terminates its message; a stale record (someone else holds
    /// the order and settled it) leaves the message to them.
    async fn dead_letter(
        &self,
        message: &Message,
        stored: &StoredOrder,
        reason: String,
        now_ms: u64,
    ) -> Result<(), QueueError> {
        tracing::error!(order = %stored.order.id, %reason, "dead letter");
        let next = settled_order(&stored.order, &OrderEvent::Fail { reason }, now_ms);
        match self.ledger.settle(stored, &next).await.map_err(unavailable)? {
            Settled::Stale => Ok(()),
            Settled::Written | Settled::AlreadyWritten | Settled::Missing => {
                ack(message, AckKind::Term).await
            }
        }
    }

    /// Records `event` over the leased state; `LeaseLost` when someone else already did.
    async fn record(
        &self,
        lease: &JetStreamLease,
        event: OrderEvent,
        at_ms: u64,
    ) -> Result<(), QueueError> {
        let next = settled_order(&lease.stored.order, &event, at_ms);
        match self.ledger.settle(&lease.stored, &next).await.map_err(unavailable)? {
            Settled::Written | Settled::AlreadyWritten => Ok(()),
            Settled::Stale | Settled::Missing => {
                Err(QueueError::LeaseLost(lease.stored.order.id.as_str().to_string()))
            }
        }
    }
}

/// The order after a delivery attempt's `event`: leased orders are queued or retrying, and
/// every outcome is a transition from `delivering` (the domain's state machine decides).
fn settled_order(order: &Order, event: &OrderEvent, at_ms: u64) -> Order {
    let delivering =
        order.apply(&OrderEvent::StartDelivery, at_ms).expect("queued orders can start");
    delivering.apply(event, at_ms).expect("a delivery outcome is legal from delivering")
}

impl DeliveryQueue for JetStreamQueue {
    type Lease = JetStreamLease;

    async fn lease(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<Leased<JetStreamLease>>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let messages = self.stream.fetch(usize::from(game.0), max).await.map_err(unavailable)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // The orders, read shard by shard (a message names its order's shard).
        let refs: Vec<Option<(OrderId, u16)>> =
            messages.iter().map(|m| order_ref(&m.payload)).collect();
        let mut found: HashMap<(u16, String), StoredOrder> = HashMap::new();
        for shard in 0..self.ledger.shards() {
            let ids: Vec<String> = refs
                .iter()
                .flatten()
                .filter(|(_, s)| *s == shard)
                .map(|(id, _)| id.as_str().to_string())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let stored = self.ledger.stored_orders(shard, &ids).await.map_err(unavailable)?;
            for (id, stored) in ids.into_iter().zip(stored) {
                if let Some(stored) = stored {
                    found.insert((shard, id), stored);
                }
            }
        }
        let mut leased = Vec::with_capacity(messages.len());
        for (message, r) in messages.into_iter().zip(refs) {
            let order = r.and_then(|(id, shard)| found.remove(&(shard, id.as_str().to_string())));
            if let Some(entry) = self.admit(game, message, order, now_ms).await? {
                leased.push(entry);
            }
        }
        Ok(leased)
    }

    async fn finish(
        &self,
        entry: Leased<JetStreamLease>,
        finish: Finish,
    ) -> Result<(), QueueError> {
        let event = match finish.state {
            FinalState::Delivered { .. } => OrderEvent::Delivered,
            FinalState::Dead { reason } => OrderEvent::Fail { reason },
            FinalState::Expired => OrderEvent::Expire,
        };
        self.record(&entry.lease, event, finish.at_ms).await?;
        ack(&entry.lease.message, AckKind::Ack).await
    }

    async fn retry(&self, entry: Leased<JetStreamLease>, retry: Retry) -> Result<(), QueueError> {
        let wait = Duration::from_millis(retry.ready_at_ms.saturating_sub(retry.at_ms));
        let event = OrderEvent::Retry { ready_at_ms: retry.ready_at_ms, error: retry.error };
        self.record(&entry.lease, event, retry.at_ms).await?;
        ack(&entry.lease.message, AckKind::Nak(Some(wait))).await
    }

    /// Nothing is recorded; the message is naked for immediate redelivery (JetStream counts
    /// the delivery, the order's attempts do not change).
    async fn release(&self, entry: Leased<JetStreamLease>) -> Result<(), QueueError> {
        ack(&entry.lease.message, AckKind::Nak(None)).await
    }

    /// `entries`: the game's messages not yet acknowledged (waiting, held, or waiting for a
    /// retry); `leased`: held by this node's workers.
    async fn depth(&self, game: GameIndex) -> Result<QueueDepth, QueueError> {
        let (pending, ack_pending) =
            self.stream.pending(usize::from(game.0)).await.map_err(unavailable)?;
        let leased = self.keeper.locked().values().filter(|(g, _)| *g == game).count() as u64;
        Ok(QueueDepth {
            entries: pending + ack_pending,
            leased,
            retrying: None,
            oldest_ready_ms: None,
        })
    }
}

async fn ack(message: &Message, kind: AckKind) -> Result<(), QueueError> {
    message.ack_with(kind).await.map_err(|e| QueueError::Unavailable(format!("jetstream ack: {e}")))
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// Sends an in-progress ack for every held message every `every`, until the keeper is gone.
async fn keep_alive(keeper: Weak<Keeper>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(keeper) = keeper.upgrade() else { return };
        let held: Vec<Message> = keeper.locked().values().map(|(_, m)| m.clone()).collect();
        drop(keeper);
        for message in held {
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                tracing::warn!(error = %e, "in-progress ack failed");
            }
        }
    }
}
