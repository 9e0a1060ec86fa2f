//! The publisher: claims hand it their new orders; it publishes them in batches, awaits each
//! batch's acknowledgements together, answers every claim, and marks the batch published in
//! Redis with one command.
//!
//! Batching is group commit: the task takes whatever claims are waiting (up to
//! [`PUBLISH_BATCH_MAX`]) the moment it is free to start a batch, so under load a batch
//! fills by itself and an idle node publishes a lone claim at once. Up to
//! [`PUBLISH_BATCHES_IN_FLIGHT`] batches await their acks at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hongbao_jetstream::{DeliveryStream, Outgoing};
use hongbao_redis::RedisLedger;
use hongbao_store::{Order, StoreError};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::message::outgoing;

/// Claims waiting for a batch to take them; a claim beyond it waits to enqueue.
pub const PUBLISH_QUEUE_MAX: usize = 16_384;
/// Orders published in one batch.
pub const PUBLISH_BATCH_MAX: usize = 512;
/// Batches awaiting their acknowledgements at once.
pub const PUBLISH_BATCHES_IN_FLIGHT: usize = 8;

/// What the publisher did so far: `published / batches` is the publishes per ack round trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub batches: u64,
    /// Publishes acknowledged.
    pub published: u64,
    /// Publishes not acknowledged (their claims answered `Unavailable`).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    published: AtomicU64,
    failed: AtomicU64,
}

struct Job {
    out: Outgoing,
    /// The order's claim shard, where it is marked published.
    shard: u16,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// See the module doc. Dropping it closes its queue: batches in flight finish, then the task
/// ends; [`Publisher::shutdown`] waits for that.
pub struct Publisher {
    ledger: Arc<RedisLedger>,
    jobs: mpsc::Sender<Job>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts the publishing task. Call inside a Tokio runtime.
    pub fn start(ledger: Arc<RedisLedger>, stream: Arc<DeliveryStream>) -> Publisher {
        let (jobs, rx) = mpsc::channel(PUBLISH_QUEUE_MAX);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(rx, ledger.clone(), stream, counters.clone()));
        Publisher { ledger, jobs, task, counters }
    }

    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            published: self.counters.published.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Publishes `order` and returns once JetStream acknowledged it (stored, or a duplicate of
    /// a stored one). An error means it may or may not be stored: the order stays in
    /// `should_send` and the sweeper publishes it.
    pub async fn publish(&self, order: &Order) -> Result<(), StoreError> {
        let out = outgoing(&self.ledger, order, 0)?;
        let (done, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the publisher has stopped".into());
        let shard = self.ledger.shard_of(order.user);
        self.jobs.send(Job { out, shard, done }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Stops taking orders and waits for the batches in flight to be answered.
    pub async fn shutdown(self) {
        drop(self.jobs);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the publisher task failed");
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    ledger: Arc<RedisLedger>,
    stream: Arc<DeliveryStream>,
    counters: Arc<Counters>,
) {
    let permits = Arc::new(Semaphore::new(PUBLISH_BATCHES_IN_FLIGHT));
    let mut batches = JoinSet::new();
    loop {
        // Wait for a free batch slot first, so that claims keep gathering meanwhile.
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let mut jobs = Vec::with_capacity(PUBLISH_BATCH_MAX);
        if rx.recv_many(&mut jobs, PUBLISH_BATCH_MAX).await == 0 {
            break;
        }
        let (ledger, stream, counters) = (ledger.clone(), stream.clone(), counters.clone());
        batches.spawn(async move {
            publish_batch(&ledger, &stream, jobs, &counters).await;
            drop(permit);
        });
        while batches.try_join_next().is_some() {}
    }
    while batches.join_next().await.is_some() {}
}

/// One batch: publish, await the acks together, answer the claims, mark the acked published.
async fn publish_batch(
    ledger: &RedisLedger,
    stream: &DeliveryStream,
    jobs: Vec<Job>,
    counters: &Counters,
) {
    let outs: Vec<Outgoing> = jobs.iter().map(|j| j.out.clone()).collect();
    let acks = stream.publish_all(&outs).await;
    let mut published = Vec::with_capacity(jobs.len());
    for (job, ack) in jobs.into_iter().zip(acks) {
        let answer = match ack {
            Ok(ack) => {
                published.push((job.shard, job.out.msg_id, ack.sequence));
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "order {} recorded, its publish not acknowledged ({e}); the sweeper will publish it",
                job.out.msg_id
            ))),
        };
        // A claim that gave up waiting (its request ended) no longer listens: nothing to do.
        let _ = job.done.send(answer);
    }
    let failed = (outs.len() - published.len()) as u64;
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.published.fetch_add(published.len() as u64, Ordering::Relaxed);
    counters.failed.fetch_add(failed, Ordering::Relaxed);
    let metrics = hongbao_monitor::handles::publisher();
    metrics.batches.increment(1);
    metrics.acked.increment(published.len() as u64);
    metrics.failed.increment(failed);
    // Message id = order id here: the claims' own messages. One command per claim shard.
    for shard in 0..ledger.shards() {
        let ids: Vec<(&str, u64)> = published
            .iter()
            .filter(|(s, _, _)| *s == shard)
            .map(|(_, id, seq)| (id.as_str(), *seq))
            .collect();
        if ids.is_empty() {
            continue;
        }
        if let Err(e) = ledger.mark_published_at(shard, &ids).await {
            // Harmless: the sweeper publishes them again, which the stream deduplicates.
            tracing::warn!(error = %e, orders = ids.len(), "could not mark published orders");
        }
    }
}
