//! The adapter from the store's durable per-game queues ([`hongbao_store::DeliveryQueue`]) to the
//! port the workers use ([`DeliveryQueue`]). Nearly one to one: the store's lease is the lease, a
//! lease the store no longer knows (`Settled::NotLeased`) is `LeaseLost`, and the gift's items —
//! which orders do not copy — come from the campaign.

use std::collections::HashMap;
use std::sync::Arc;

use hongbao_domain::campaign::Item;
use hongbao_domain::{Campaign, GameIndex};
use hongbao_store::{DeliveryQueue as StoreDeliveryQueue, QueueEntry, Settled, StoreError};

use hongbao_queue::{
    DeliveryQueue, FinalState, Finish, Leased, QueueDepth, QueueError, QueuedOrder, Retry,
};

/// The store's queues, seen by the delivery workers.
pub struct StoreQueue<S> {
    store: Arc<S>,
    /// Items per gift id, from the campaign.
    items: HashMap<String, Vec<Item>>,
}

impl<S: StoreDeliveryQueue> StoreQueue<S> {
    pub fn new(store: Arc<S>, campaign: &Campaign) -> StoreQueue<S> {
        let items = campaign.gifts.iter().map(|g| (g.id.clone(), g.items.clone())).collect();
        StoreQueue { store, items }
    }

    /// What a delivery needs, or why the order can never be delivered.
    fn view(&self, entry: &QueueEntry) -> Result<QueuedOrder, String> {
        let order = &entry.order;
        let (zone_id, role_id) = (order.zone_id, order.role_id);
        let items = self
            .items
            .get(&order.gift_id)
            .cloned()
            .ok_or_else(|| format!("gift `{}` is not in the campaign", order.gift_id))?;
        Ok(QueuedOrder {
            order_id: order.id.as_str().to_string(),
            user: order.user,
            game: entry.game,
            zone_id,
            role_id,
            items,
            deliver_by_ms: order.deliver_by_ms,
            attempts: order.attempts,
        })
    }
}

fn unavailable(e: StoreError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn settled(result: Result<Settled, StoreError>, order_id: &str) -> Result<(), QueueError> {
    match result.map_err(unavailable)? {
        Settled::Applied(_) => Ok(()),
        Settled::NotLeased => Err(QueueError::LeaseLost(order_id.to_string())),
    }
}

impl<S: StoreDeliveryQueue> DeliveryQueue for StoreQueue<S> {
    type Lease = QueueEntry;

    async fn lease(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<Leased<QueueEntry>>, QueueError> {
        let entries = self.store.lease(game, max, now_ms).await.map_err(unavailable)?;
        let mut leased = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.view(&entry) {
                Ok(order) => leased.push(Leased { order, lease: entry }),
                Err(reason) => {
                    // Written by a claim this build would refuse: no retry can fix it.
                    tracing::error!(order = entry.order.id.as_str(), %reason, "undeliverable order");
                    let dead = hongbao_store::Finish::Dead { reason };
                    settled(
                        self.store.finish(&entry, dead, now_ms).await,
                        entry.order.id.as_str(),
                    )?;
                }
            }
        }
        Ok(leased)
    }

    async fn finish(&self, entry: Leased<QueueEntry>, finish: Finish) -> Result<(), QueueError> {
        let end = match finish.state {
            FinalState::Delivered { .. } => hongbao_store::Finish::Delivered,
            FinalState::Dead { reason } => hongbao_store::Finish::Dead { reason },
            FinalState::Expired => hongbao_store::Finish::Expired,
        };
        settled(self.store.finish(&entry.lease, end, finish.at_ms).await, &entry.order.order_id)
    }

    async fn retry(&self, entry: Leased<QueueEntry>, retry: Retry) -> Result<(), QueueError> {
        let result =
            self.store.retry(&entry.lease, retry.ready_at_ms, retry.error, retry.at_ms).await;
        settled(result, &entry.order.order_id)
    }

    async fn release(&self, entry: Leased<QueueEntry>) -> Result<(), QueueError> {
        settled(self.store.release(&entry.lease).await, &entry.order.order_id)
    }

    async fn depth(&self, game: GameIndex) -> Result<QueueDepth, QueueError> {
        Ok(QueueDepth {
            entries: self.store.depth(game),
            leased: self.store.leased(game),
            retrying: None,
            oldest_ready_ms: self.store.oldest_ready_ms(game).await.map_err(unavailable)?,
        })
    }
}
