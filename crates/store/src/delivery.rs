//! The store's queues as THE delivery-queue port, [`hongbao_queue::DeliveryQueue`], implemented
//! once for both adapters over the few queue operations each provides ([`QueueBackend`]).
//!
//! Nearly one to one: the store's [`QueueEntry`] is the lease handle, a lease the store no
//! longer knows ([`Settled::NotLeased`]) is [`QueueError::LeaseLost`], every [`StoreError`] is
//! [`QueueError::Unavailable`], and the gift's items — which orders do not copy — come from the
//! [`CampaignBinding`].

use std::future::Future;

use hongbao_domain::GameIndex;
use hongbao_queue::{FinalState, Finish, Leased, QueueDepth, QueueError, QueuedOrder, Retry};

use crate::claim::CampaignBinding;
use crate::ledger::SettleAction;
use crate::queue::{LedgerScan, QueueEntry, Settled};
use crate::{EmbeddedStore, MemoryStore, StoreError};

/// What an adapter provides for the port: leasing, ending leases, and the oldest waiting entry;
/// the counts come from [`LedgerScan`].
pub(crate) trait QueueBackend: LedgerScan {
    fn binding(&self) -> &CampaignBinding;

    /// Up to `max` entries of `game` due at `now_ms` and not leased, in queue order, each now
    /// leased (see `ledger/lease.rs`).
    fn lease_entries(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<QueueEntry>, StoreError>> + Send;

    /// Ends `entry`'s lease with `action` at `now_ms`.
    fn settle(
        &self,
        entry: &QueueEntry,
        action: SettleAction,
        now_ms: u64,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// The due time of the oldest entry of `game` that is not in flight (not leased), if any:
    /// `now - oldest` is how long the backlog has waited.
    fn oldest_ready_ms(
        &self,
        game: GameIndex,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

fn unavailable(error: StoreError) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

fn settled(result: Result<Settled, StoreError>, order_id: &str) -> Result<(), QueueError> {
    match result.map_err(unavailable)? {
        Settled::Applied(_) => Ok(()),
        Settled::NotLeased => Err(QueueError::LeaseLost(order_id.to_string())),
    }
}

/// What a delivery needs, or why the order can never be delivered.
fn queued_order(binding: &CampaignBinding, entry: &QueueEntry) -> Result<QueuedOrder, String> {
    let order = &entry.order;
    let items = binding
        .gift_items(&order.gift_id)
        .ok_or_else(|| format!("gift `{}` is not in the campaign", order.gift_id))?;
    Ok(QueuedOrder {
        order_id: order.id.as_str().to_string(),
        user: order.user,
        game: entry.game,
        zone_id: order.zone_id,
        role_id: order.role_id,
        items: items.to_vec(),
        deliver_by_ms: order.deliver_by_ms,
        attempts: order.attempts,
    })
}

pub(crate) async fn lease<S: QueueBackend>(
    store: &S,
    game: GameIndex,
    max: usize,
    now_ms: u64,
) -> Result<Vec<Leased<QueueEntry>>, QueueError> {
    let entries = store.lease_entries(game, max, now_ms).await.map_err(unavailable)?;
    let mut leased = Vec::with_capacity(entries.len());
    for entry in entries {
        match queued_order(store.binding(), &entry) {
            Ok(order) => leased.push(Leased { order, lease: entry }),
            Err(reason) => {
                // Written by a claim of a campaign that has since lost the gift: no retry can
                // fix it, so it goes dead now rather than circle through the workers.
                tracing::error!(order = entry.order.id.as_str(), %reason, "undeliverable order");
                let dead = SettleAction::Finish(FinalState::Dead { reason });
                settled(store.settle(&entry, dead, now_ms).await, entry.order.id.as_str())?;
            }
        }
    }
    Ok(leased)
}

pub(crate) async fn finish<S: QueueBackend>(
    store: &S,
    entry: Leased<QueueEntry>,
    finish: Finish,
) -> Result<(), QueueError> {
    let action = SettleAction::Finish(finish.state);
    settled(store.settle(&entry.lease, action, finish.at_ms).await, &entry.order.order_id)
}

pub(crate) async fn retry<S: QueueBackend>(
    store: &S,
    entry: Leased<QueueEntry>,
    retry: Retry,
) -> Result<(), QueueError> {
    let action = SettleAction::Retry { ready_at_ms: retry.ready_at_ms, error: retry.error };
    settled(store.settle(&entry.lease, action, retry.at_ms).await, &entry.order.order_id)
}

pub(crate) async fn release<S: QueueBackend>(
    store: &S,
    entry: Leased<QueueEntry>,
) -> Result<(), QueueError> {
    // Nothing is written, so no time is either: the order keeps its `updated_at_ms`.
    let now_ms = entry.lease.order.updated_at_ms;
    settled(store.settle(&entry.lease, SettleAction::Release, now_ms).await, &entry.order.order_id)
}

pub(crate) async fn depth<S: QueueBackend>(
    store: &S,
    game: GameIndex,
) -> Result<QueueDepth, QueueError> {
    Ok(QueueDepth {
        entries: store.queue_depth(game),
        leased: store.leased(game),
        retrying: None,
        oldest_ready_ms: store.oldest_ready_ms(game).await.map_err(unavailable)?,
    })
}

/// One implementation of the port per adapter, each forwarding to the functions above (a
/// blanket impl over [`QueueBackend`] is not allowed for a foreign trait).
macro_rules! impl_delivery_queue {
    ($store:ty) => {
        impl hongbao_queue::DeliveryQueue for $store {
            type Lease = QueueEntry;

            async fn lease(
                &self,
                game: GameIndex,
                max: usize,
                now_ms: u64,
            ) -> Result<Vec<Leased<QueueEntry>>, QueueError> {
                lease(self, game, max, now_ms).await
            }

            async fn finish(
                &self,
                entry: Leased<QueueEntry>,
                finish_: Finish,
            ) -> Result<(), QueueError> {
                finish(self, entry, finish_).await
            }

            async fn retry(
                &self,
                entry: Leased<QueueEntry>,
                retry_: Retry,
            ) -> Result<(), QueueError> {
                retry(self, entry, retry_).await
            }

            async fn release(&self, entry: Leased<QueueEntry>) -> Result<(), QueueError> {
                release(self, entry).await
            }

            async fn depth(&self, game: GameIndex) -> Result<QueueDepth, QueueError> {
                depth(self, game).await
            }
        }
    };
}

impl_delivery_queue!(MemoryStore);
impl_delivery_queue!(EmbeddedStore);
