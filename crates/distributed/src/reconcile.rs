//! Reconciliation's ports on the distributed backend: [`DistributedLedger`] implements the
//! store's `LedgerScan` and `LedgerRepair` (and `ClaimLedger`'s reads) over Redis and the
//! JetStream stream, with the embedded store's semantics, so `hongbao-reconcile`'s engine runs
//! unchanged over a fleet.
//!
//! # What "in the queue" means here
//!
//! The embedded store keeps one queue entry per waiting order. Here the queue is the stream:
//! a waiting order (queued or retrying in Redis) is in the queue when
//!
//! - it is recorded and not yet published (`should_send`): the publisher or the sweeper will
//!   publish it; or
//! - the stream still holds its latest message: the sequence each publish was stored at is
//!   kept in Redis (`published`), and with work-queue retention a message stays until a worker
//!   acknowledges it, which it does only after recording a final outcome. One request
//!   ([`DeliveryStream::holds`]) tells. A message the stream lost (purged, a server's disk) is
//!   how a waiting order ends up `not_sent_nor_queued` here, and the requeue publishes it
//!   again.
//!
//! Orders published before sequences were recorded cannot be checked and count as in the
//! queue (as the engine treats an unchecked entry).
//!
//! The stream's messages are read only through their games' consumers and carry no due time,
//! so [`LedgerScan::scan_queue`] lists no entries: a message that no waiting order accounts
//! for cannot stay anyway, since the next worker to fetch it acknowledges it unsent (its order
//! is final or held) or terminates it (no such order), see `queue.rs`. The scan refreshes the
//! game's figures instead: [`LedgerScan::queue_depth`] is the consumer's unacknowledged
//! messages and [`LedgerScan::leased`] those of them handed to a worker now, fleet-wide, as
//! last read.
//!
//! # Requeue
//!
//! One script writes the order's next state (the store's rule, [`hongbao_store::resent`]),
//! records it unpublished and takes a new generation, conditional on the state read; then the
//! order is published as `<order id>:r<generation>`, a message id no earlier publish of it
//! used, so the stream's deduplication window cannot swallow it. If this process dies before
//! the publish, the sweeper publishes the same id. A requeued order is delivered once: its
//! earlier message was acknowledged when it was finished, and a worker delivers only an order
//! Redis says is waiting (a second message of one order, if any, finds it delivered and is
//! acknowledged unsent; the game's serial covers the rest).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hongbao_domain::{Campaign, GameIndex, Order, OrderId, OrderStatus};
use hongbao_jetstream::{DeliveryStream, Names};
use hongbao_redis::{MessageOf, RedisLedger, RequeueWrite, StoredOrder};
use hongbao_store::{
    CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest, GiftIndex, HighValueUsage,
    LedgerRepair, LedgerScan, QueuedRef, RecordOutcome, RequeueOutcome, SentRecord, StoreError,
    resent,
};

use crate::BackendConfig;
use crate::backend::jetstream_error;
use crate::message::{outgoing, payload};

/// See the module doc.
pub struct DistributedLedger {
    ledger: Arc<RedisLedger>,
    stream: Arc<DeliveryStream>,
    /// Per game: messages not yet acknowledged, and of those the ones held by a worker, as
    /// last read.
    counts: Vec<(AtomicU64, AtomicU64)>,
}

impl std::fmt::Debug for DistributedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedLedger").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl DistributedLedger {
    pub fn new(ledger: Arc<RedisLedger>, stream: Arc<DeliveryStream>) -> DistributedLedger {
        let games = stream.names().games();
        let counts = (0..games).map(|_| Default::default()).collect();
        DistributedLedger { ledger, stream, counts }
    }

    /// Connects to the fleet's Redis and stream for `campaign` (what `hongbao reconcile --redis
    /// --nats` opens): no publisher, sweeper or workers, only what a pass reads and repairs.
    pub async fn connect(
        config: &BackendConfig,
        campaign: &Campaign,
    ) -> Result<DistributedLedger, StoreError> {
        let binding = CampaignBinding::of(campaign);
        let ledger = RedisLedger::connect(&config.redis_url, &config.namespace, binding).await?;
        let games: Vec<String> = campaign.games.iter().map(|g| g.id.clone()).collect();
        let names = Names::new(&config.namespace, &campaign.id, &games).map_err(jetstream_error)?;
        let stream = DeliveryStream::connect(&config.nats_url, names, config.jetstream.clone())
            .await
            .map_err(jetstream_error)?;
        Ok(DistributedLedger::new(Arc::new(ledger), Arc::new(stream)))
    }

    pub fn ledger(&self) -> &Arc<RedisLedger> {
        &self.ledger
    }

    /// Reads `game`'s figures from its consumer (see [`LedgerScan::queue_depth`]).
    pub async fn refresh_counts(&self, game: GameIndex) -> Result<(), StoreError> {
        let Some((depth, leased)) = self.counts.get(usize::from(game.0)) else {
            return Ok(());
        };
        let (pending, ack_pending) =
            self.stream.pending(usize::from(game.0)).await.map_err(jetstream_error)?;
        depth.store(pending + ack_pending, Ordering::Relaxed);
        leased.store(ack_pending, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes `order`'s `generation`-th message and records where the stream stored it. A
    /// failure is logged, not returned: the order is recorded unpublished, and the sweeper
    /// publishes it.
    async fn publish(&self, order: &Order, generation: u64) -> Result<(), StoreError> {
        let out = outgoing(&self.ledger, order, generation)?;
        let acked = self.stream.publish_all(std::slice::from_ref(&out)).await;
        match acked.into_iter().next() {
            Some(Ok(published)) => {
                let shard = self.ledger.shard_of(order.user);
                let marked = [(order.id.as_str(), published.sequence)];
                self.ledger.mark_published_at(shard, &marked).await
            }
            Some(Err(e)) => {
                tracing::warn!(order = %order.id, error = %e, "requeued, not yet published; the sweeper will");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// One round of a requeue over the order as read: `None` when it changed meanwhile.
    async fn requeue_read(
        &self,
        read: StoredOrder,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> Result<Option<RequeueOutcome>, StoreError> {
        let order = &read.order;
        let next = if order.status.is_in_queue() {
            if self.in_queue(order).await? {
                return Ok(Some(RequeueOutcome::Unchanged(Box::new(read.order))));
            }
            None
        } else if order.status == OrderStatus::Held {
            return Ok(Some(RequeueOutcome::Unchanged(Box::new(read.order))));
        } else {
            Some(resent(order, now_ms, deliver_by_ms).expect("final orders can be resent"))
        };
        let generation = match self.ledger.requeue_write(&read, next.as_ref()).await? {
            RequeueWrite::Written { generation } => generation,
            RequeueWrite::Stale => return Ok(None),
            RequeueWrite::Missing => return Ok(Some(RequeueOutcome::NotFound)),
        };
        Ok(Some(match next {
            Some(next) => {
                self.publish(&next, generation).await?;
                RequeueOutcome::Requeued(Box::new(next))
            }
            None => {
                self.publish(&read.order, generation).await?;
                RequeueOutcome::Repaired(Box::new(read.order))
            }
        }))
    }
}

/// The claim port's reads; a claim made through it is recorded by the script and published by
/// the sweeper (a node's claims go through `DistributedClaims`, which publishes at once).
impl ClaimLedger for DistributedLedger {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        self.ledger.claim(req).await
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.ledger.order(id).await
    }

    async fn user_order(&self, user: u64, id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.ledger.user_order(user, id).await
    }

    async fn orders_of(&self, user: u64, limit: usize) -> Result<Vec<Order>, StoreError> {
        self.ledger.orders_of(user, limit).await
    }

    fn stock_taken(&self, gift: GiftIndex) -> u64 {
        self.ledger.stock_taken(gift)
    }

    async fn high_value_usage(&self, user: u64, now_ms: u64) -> Result<HighValueUsage, StoreError> {
        self.ledger.high_value_usage(user, now_ms).await
    }
}

impl LedgerScan for DistributedLedger {
    /// A pass's first page first indexes orders recorded before the index existed.
    async fn scan_orders(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        if after.is_none() {
            self.ledger.index_orders().await?;
        }
        self.ledger.scan_orders(after, limit).await
    }

    async fn scan_sent(
        &self,
        after: Option<SentRecord>,
        limit: usize,
    ) -> Result<Vec<SentRecord>, StoreError> {
        self.ledger.scan_sent(after, limit).await
    }

    /// No entries (see the module doc); the first page's call refreshes the game's figures.
    async fn scan_queue(
        &self,
        game: GameIndex,
        after: Option<QueuedRef>,
        _limit: usize,
    ) -> Result<Vec<QueuedRef>, StoreError> {
        if after.is_none() {
            self.refresh_counts(game).await?;
        }
        Ok(Vec::new())
    }

    async fn in_queue(&self, order: &Order) -> Result<bool, StoreError> {
        if !order.status.is_in_queue() {
            return Ok(false);
        }
        let Some(game) = self.ledger.binding().game_index(&order.game_id) else {
            return Ok(false);
        };
        match self.ledger.message_of(order).await? {
            MessageOf::Unpublished | MessageOf::Unknown => Ok(true),
            MessageOf::Published { sequence } => self
                .stream
                .holds(usize::from(game.0), sequence, &payload(&self.ledger, order))
                .await
                .map_err(jetstream_error),
        }
    }

    fn queue_depth(&self, game: GameIndex) -> u64 {
        self.counts.get(usize::from(game.0)).map_or(0, |(depth, _)| depth.load(Ordering::Relaxed))
    }

    fn leased(&self, game: GameIndex) -> u64 {
        self.counts.get(usize::from(game.0)).map_or(0, |(_, held)| held.load(Ordering::Relaxed))
    }
}

impl LedgerRepair for DistributedLedger {
    async fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> Result<RequeueOutcome, StoreError> {
        for _ in 0..hongbao_redis::REPAIR_ROUNDS_MAX {
            let Some(read) = self.ledger.stored_order(order_id).await? else {
                return Ok(RequeueOutcome::NotFound);
            };
            if let Some(outcome) = self.requeue_read(read, now_ms, deliver_by_ms).await? {
                return Ok(outcome);
            }
        }
        Err(hongbao_redis::busy(order_id))
    }

    /// See [`RedisLedger::record_delivered`]: never `InFlight` here.
    async fn record_delivered(
        &self,
        order_id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> Result<RecordOutcome, StoreError> {
        self.ledger.record_delivered(order_id, delivered_at_ms, now_ms).await
    }
}
