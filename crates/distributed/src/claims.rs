//! The claim port over Redis then JetStream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hongbao_jetstream::DeliveryStream;
use hongbao_redis::RedisLedger;
use hongbao_store::{
    ClaimLedger, ClaimOutcome, ClaimRequest, GiftIndex, HighValueUsage, Order, OrderId, StoreError,
};

use crate::Publisher;

/// How often a node reads the campaign's counters (units taken per gift over every claim
/// shard, coupons granted per channel) from Redis, so the gift lists it serves hide what other
/// nodes sold out within about this long.
pub const COUNTERS_REFRESH_MS: u64 = 1_000;

/// Claims decided and recorded by the Redis script, accepted only once published. See the
/// crate doc.
pub struct DistributedClaims {
    ledger: Arc<RedisLedger>,
    publisher: Publisher,
    /// Reads the counters every [`COUNTERS_REFRESH_MS`]; aborted on drop.
    _refresher: Refresher,
    /// A crash point for the tests of the sweeper across processes: see
    /// [`DistributedClaims::crash_after_the_script`].
    crash_after_script: AtomicBool,
}

impl std::fmt::Debug for DistributedClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedClaims").finish_non_exhaustive()
    }
}

impl DistributedClaims {
    /// Starts the publisher over `stream` (call inside a Tokio runtime).
    pub fn start(ledger: Arc<RedisLedger>, stream: Arc<DeliveryStream>) -> DistributedClaims {
        DistributedClaims {
            publisher: Publisher::start(ledger.clone(), stream),
            _refresher: Refresher(tokio::spawn(refresh_counters(Arc::downgrade(&ledger)))),
            ledger,
            crash_after_script: AtomicBool::new(false),
        }
    }

    /// From now on the process aborts right after the script accepts a claim, before the
    /// publish: the one crash the sweeper exists for, made on purpose so a test can watch a
    /// dead node's order being published by another process.
    pub fn crash_after_the_script(&self) {
        self.crash_after_script.store(true, Ordering::Relaxed);
    }

    pub fn ledger(&self) -> &Arc<RedisLedger> {
        &self.ledger
    }

    /// The publisher's counters.
    pub fn publisher_stats(&self) -> crate::PublisherStats {
        self.publisher.stats()
    }

    /// Stops the publisher after answering the claims it holds.
    pub async fn shutdown(self) {
        self.publisher.shutdown().await;
    }
}

/// The counters' refresh task, aborted when its owner drops.
struct Refresher(tokio::task::JoinHandle<()>);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Refreshes the ledger's counters until the ledger is gone; a failed read is retried at the
/// next tick (the counters only hide gifts in lists; claims decide against Redis itself).
async fn refresh_counters(ledger: std::sync::Weak<RedisLedger>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(COUNTERS_REFRESH_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(ledger) = ledger.upgrade() else { return };
        if let Err(e) = ledger.refresh_counters().await {
            tracing::debug!(error = %e, "could not refresh the campaign's counters");
        }
    }
}

impl ClaimLedger for DistributedClaims {
    /// `Accepted` only when the script accepted and JetStream acknowledged the publish. A
    /// failed publish is `Unavailable`: the order is recorded (the same claim again answers
    /// `Replayed`) and the sweeper publishes it. Replays publish nothing: the first claim or
    /// the sweeper did.
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let outcome = self.ledger.claim(req).await?;
        if let ClaimOutcome::Accepted(order) = &outcome {
            if self.crash_after_script.load(Ordering::Relaxed) {
                std::process::abort();
            }
            self.publisher.publish(order).await?;
        }
        Ok(outcome)
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
