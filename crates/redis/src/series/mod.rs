//! The fleet's series store: [`hongbao_monitor::SeriesKv`] over Redis, so any node of a fleet
//! answers `/monitor/v1/query` and the dashboard for all of them.
//!
//! # How readings fold
//!
//! Each node adds its per-second readings into the same bucket keys, and Redis folds them by
//! the series' [`Rollup`](hongbao_monitor::kv::Rollup) as they arrive: a counter's increase with
//! `ZINCRBY` (several nodes' increases, and a minute's seconds, add up), a per-second p99 with
//! `ZADD GT` (the highest stays), a level with `ZADD` (the latest arrival stays). Each is one
//! atomic command on one member, so two nodes writing the same bucket cannot corrupt it, and a
//! bucket costs the same memory and the same read however many nodes wrote it. (Per-node fields
//! folded at read would multiply both by the fleet's size, and past 128 fields a Redis hash
//! leaves its compact encoding.) A sorted set is the one Redis type with all three folds
//! built in; its member is the bucket's offset in a chunk of 120 buckets ([`layout`]).
//!
//! The one fold that is not exact: a cluster connection resends a pipeline whose answer was
//! lost, and a resent `ZINCRBY` counts that node's second twice. Monitoring accepts it (it
//! needs a lost reply during a failover); the ledger's figures never come from here.
//!
//! # Why `put` hands the second to a task
//!
//! The port's `put` is synchronous and called by the sampler once a second; Redis is a round
//! trip away. So `put` only queues the second (at most [`PENDING_SECONDS_MAX`]; a Redis too slow
//! to take them loses seconds, counted in [`RedisSeries::dropped_seconds`] and logged, never
//! blocking the sampler or a request), and one task owned by the store writes each second as one
//! pipeline (plus one to admit series seen for the first time). Reads are the port's async
//! `range`: a query reads the fleet's buckets from Redis when it is asked, nothing is mirrored
//! here (a mirror would have to copy every node's every bucket to every node, every second).
//!
//! # Bounds
//!
//! - Series: at most `series_max` (default [`SERIES_MAX`], the in-process store's) in the whole
//!   fleet, admitted by a script against the registry's size; readings of further series are
//!   dropped (logged once per process).
//! - Time: a one-second chunk expires [`SECOND_CHUNK_TTL_S`] after a node last set its TTL
//!   (two hours past its last bucket), a one-minute chunk [`MINUTE_CHUNK_TTL_S`] after (seven
//!   days past); every key is written with a TTL.
//! - Memory: per series at most 61 one-second and 85 one-minute chunks of at most 120 entries.
//!   Measured on Redis 7.0 (`MEMORY USAGE` of a full chunk, listpack): 0.6 KB of whole counts,
//!   2.1 KB of fractions (scores are kept as 17-digit text). So at most about 146 × 2.2 KB =
//!   320 KB per series and 320 MB at the default cap, whatever the number of nodes; counters
//!   (most series) take about a third of that.
//! - Reads: see [`read`].
//!
//! All keys share one hash tag (see [`layout`]): on a Redis Cluster the whole store lives on
//! the master owning that slot, and a second is one pipeline. That master also serves whatever
//! else lies in its slots: the store costs it about two commands per series per node per second
//! (`redis-cli CLUSTER KEYSLOT '{<ns>:series}'` tells which slot, to move it off the campaign's
//! claims shard if they share one).

mod layout;
mod read;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hongbao_monitor::kv::{RangeFuture, RangeRequest, Reading, SeriesKv};
pub use hongbao_monitor::series::SERIES_MAX;
use hongbao_store::StoreError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use layout::{
    CHUNK_BUCKETS, LABELS_BYTES_MAX, MINUTE_CHUNK_TTL_S, REGISTRY_TTL_S, SECOND_CHUNK_TTL_S,
};
pub use read::READ_PIPELINE_MAX;
pub use write::{ADMIT_PER_SECOND_MAX, KNOWN_SERIES_MAX, READMIT_INTERVAL_S};

use crate::RedisConn;
use layout::Layout;
use write::Writer;

/// Seconds queued for the writer at most; more are dropped.
pub const PENDING_SECONDS_MAX: usize = 8;
/// How long [`RedisSeries::shutdown`] waits for the queued seconds to be written.
pub const SHUTDOWN_FLUSH_MS: u64 = 2_000;

/// What the writer is asked to do.
enum Job {
    Second {
        at_s: u64,
        readings: Vec<Reading>,
    },
    /// Answer once everything queued before is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// The fleet's series store of one namespace (see the module doc).
pub struct RedisSeries {
    conn: RedisConn,
    layout: Layout,
    series_max: usize,
    /// `None` once shut down.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped_seconds: AtomicU64,
}

impl std::fmt::Debug for RedisSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSeries").field("layout", &self.layout).finish_non_exhaustive()
    }
}

impl Drop for RedisSeries {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner) {
            writer.abort();
        }
    }
}

impl RedisSeries {
    /// The store of `namespace` (see [`crate::check_namespace`]) on `conn`, holding at most
    /// `series_max` series (at least 1). Starts its writer: call inside a Tokio runtime.
    pub fn start(
        conn: RedisConn,
        namespace: &str,
        series_max: usize,
    ) -> Result<RedisSeries, StoreError> {
        crate::check_namespace(namespace)?;
        if series_max == 0 {
            return Err(StoreError::InvalidConfig("series_max must be at least 1".to_string()));
        }
        let layout = Layout::new(namespace);
        let (jobs, queue) = mpsc::channel(PENDING_SECONDS_MAX);
        let writer = Writer::new(conn.clone(), layout.clone(), series_max);
        let writer = tokio::spawn(run_writer(writer, queue));
        Ok(RedisSeries {
            conn,
            layout,
            series_max,
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(Some(writer)),
            dropped_seconds: AtomicU64::new(0),
        })
    }

    /// Seconds dropped because the writer was [`PENDING_SECONDS_MAX`] behind, or shut down.
    pub fn dropped_seconds(&self) -> u64 {
        self.dropped_seconds.load(Ordering::Relaxed)
    }

    /// Waits until every second put before this call is written (or its write failed).
    pub async fn flush(&self) {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(jobs) = jobs else { return };
        let (done, written) = oneshot::channel();
        if jobs.send(Job::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Takes no more seconds, writes those queued (for at most [`SHUTDOWN_FLUSH_MS`]: a Redis
    /// that is gone does not hold up the node's exit), and stops the writer.
    pub async fn shutdown(&self) {
        drop(self.jobs.lock().unwrap_or_else(PoisonError::into_inner).take());
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut writer) = writer else { return };
        let flush = Duration::from_millis(SHUTDOWN_FLUSH_MS);
        if tokio::time::timeout(flush, &mut writer).await.is_err() {
            writer.abort();
            tracing::warn!(
                "series writes still pending at shutdown after {SHUTDOWN_FLUSH_MS} ms; dropped"
            );
        }
    }
}

impl SeriesKv for RedisSeries {
    fn put(&self, at_s: u64, readings: &[Reading]) {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let queued = jobs
            .as_ref()
            .is_some_and(|j| j.try_send(Job::Second { at_s, readings: readings.to_vec() }).is_ok());
        drop(jobs);
        if !queued {
            let dropped = self.dropped_seconds.fetch_add(1, Ordering::Relaxed);
            // The first, then one in a minute's worth: a Redis away for long is one line a minute.
            if dropped.is_multiple_of(60) {
                tracing::warn!(at_s, dropped = dropped + 1, "series writer behind; second dropped");
            }
        }
    }

    fn range<'a>(&'a self, request: &'a RangeRequest) -> RangeFuture<'a> {
        Box::pin(read::range(&self.conn, &self.layout, self.series_max, request))
    }
}

/// Writes each queued second until the store stops taking them; says when writes start failing
/// and when they work again (not every failed second).
async fn run_writer(mut writer: Writer, mut queue: mpsc::Receiver<Job>) {
    let mut failing = false;
    while let Some(job) = queue.recv().await {
        match job {
            Job::Second { at_s, readings } => match writer.write_second(at_s, &readings).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(at_s, "series writes work again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(at_s, %error, "series writes failing; seconds are lost until Redis answers");
                }
                Err(_) => {}
            },
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
