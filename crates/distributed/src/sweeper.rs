//! The sweeper: publishes orders the claim script recorded but no publisher marked published
//! within a grace period — an API node died between the two, or the publish failed. Each pass
//! takes at most [`SweeperConfig::batch_max`] orders; the message id (the order id, with its
//! requeue generation for an order reconciliation put back) makes a publish of an order already
//! in the stream a duplicate JetStream drops, as long as the first publish is within the dedup
//! window, which the config checks.

use std::sync::Arc;

use hongbao_clock::SharedClock;
use hongbao_jetstream::DeliveryStream;
use hongbao_redis::RedisLedger;
use hongbao_store::StoreError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::message::outgoing;

/// How long after its claim an unpublished order is taken to be orphaned. Longer than any
/// claim's own publish can take (the publish ack timeout is 5 s), so the sweeper rarely
/// publishes what a live claim is still publishing (and if it does, the stream deduplicates).
pub const SWEEP_GRACE_MS_DEFAULT: u64 = 30_000;
/// Time between passes.
pub const SWEEP_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Orders one pass publishes at most.
pub const SWEEP_BATCH_MAX_DEFAULT: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweeperConfig {
    pub grace_ms: u64,
    pub interval_ms: u64,
    pub batch_max: usize,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            grace_ms: SWEEP_GRACE_MS_DEFAULT,
            interval_ms: SWEEP_INTERVAL_MS_DEFAULT,
            batch_max: SWEEP_BATCH_MAX_DEFAULT,
        }
    }
}

impl SweeperConfig {
    /// Refuses settings under which a sweep could publish an order whose first publish has
    /// left the stream's dedup window (a second message for one order: still delivered once,
    /// thanks to the Redis state and the game's serial, but a waste): grace + interval must be
    /// under half the window.
    pub fn validate(&self, dedup_window_ms: u64) -> Result<(), StoreError> {
        let bad = |why: String| Err(StoreError::InvalidConfig(format!("sweeper: {why}")));
        if self.batch_max == 0 || self.batch_max > hongbao_redis::IDS_PER_COMMAND_MAX {
            return bad(format!("batch_max 1..={}", hongbao_redis::IDS_PER_COMMAND_MAX));
        }
        if self.interval_ms == 0 {
            return bad("interval_ms above 0".into());
        }
        if self.grace_ms.saturating_add(self.interval_ms) >= dedup_window_ms / 2 {
            return bad(format!(
                "grace_ms + interval_ms must be under half the dedup window ({dedup_window_ms} ms)"
            ));
        }
        Ok(())
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepPass {
    /// Orphaned orders found.
    pub found: usize,
    /// Of those, published now (stored new).
    pub published: usize,
    /// Of those, already in the stream (the publish had succeeded, the mark had not).
    pub duplicates: usize,
    /// Of those, not acknowledged: left for the next pass.
    pub failed: usize,
    /// Quota moves between claim shards finished for a mover that died.
    pub quota_moves: usize,
}

/// The sweeper task, owned: [`Sweeper::shutdown`] stops it; dropping it aborts it.
pub struct Sweeper {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper").finish_non_exhaustive()
    }
}

impl Sweeper {
    /// Starts passes every `config.interval_ms` on `clock`. Call inside a Tokio runtime.
    pub fn start(
        ledger: Arc<RedisLedger>,
        stream: Arc<DeliveryStream>,
        config: SweeperConfig,
        clock: SharedClock,
    ) -> Result<Sweeper, StoreError> {
        config.validate(stream.config().dedup_window_ms)?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = clock.sleep_ms(config.interval_ms) => {}
                }
                match sweep_once(&ledger, &stream, &config, clock.now_ms()).await {
                    Ok(pass) if pass.found > 0 => tracing::info!(?pass, "sweeper published"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweeper pass failed"),
                }
            }
        });
        Ok(Sweeper { stop, task: Some(task) })
    }

    /// Stops after the pass in progress, if any.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the sweeper task failed");
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One pass at `now_ms`: publishes up to `batch_max` orders per claim shard recorded before
/// `now_ms - grace` and not marked published, then marks the acknowledged ones; and finishes
/// the quota moves between claim shards whose mover died (see `hongbao_redis::keys`).
pub async fn sweep_once(
    ledger: &RedisLedger,
    stream: &DeliveryStream,
    config: &SweeperConfig,
    now_ms: u64,
) -> Result<SweepPass, StoreError> {
    let mut pass = SweepPass::default();
    for shard in 0..ledger.shards() {
        sweep_shard(ledger, stream, config, now_ms, shard, &mut pass).await?;
    }
    let moves = ledger.sweep_quota_transfers(now_ms, config.grace_ms).await?;
    pass.quota_moves = moves.transfers + moves.releases;
    Ok(pass)
}

async fn sweep_shard(
    ledger: &RedisLedger,
    stream: &DeliveryStream,
    config: &SweeperConfig,
    now_ms: u64,
    shard: u16,
    pass: &mut SweepPass,
) -> Result<(), StoreError> {
    let before = now_ms.saturating_sub(config.grace_ms);
    let orders = ledger.unpublished(shard, before, config.batch_max).await?;
    // A requeued order's message carries its generation (see `message.rs`).
    let ids: Vec<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    let generations = ledger.generations(shard, &ids).await?;
    let outs = orders
        .iter()
        .zip(generations)
        .map(|(o, generation)| outgoing(ledger, o, generation))
        .collect::<Result<Vec<_>, _>>()?;
    let acks = stream.publish_all(&outs).await;
    pass.found += outs.len();
    let mut acked = Vec::with_capacity(outs.len());
    for ((out, id), ack) in outs.iter().zip(&ids).zip(acks) {
        match ack {
            Ok(p) => {
                acked.push((*id, p.sequence));
                if p.duplicate {
                    pass.duplicates += 1;
                } else {
                    pass.published += 1;
                }
            }
            Err(e) => {
                pass.failed += 1;
                tracing::warn!(order = out.msg_id, error = %e, "sweeper publish failed");
            }
        }
    }
    ledger.mark_published_at(shard, &acked).await
}
