//! The counters the writer publishes to the store handle: what has been committed (budgets,
//! stock, queue depths, leases in flight), for answers that need no decision, and how the
//! writer has worked (batches, fsyncs, commit durations), for operators.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hongbao_domain::GiftIndex;

use super::recovery::Recovered;
use crate::embedded::{SYNCED_COMMIT_BOUNDS_MS, SYNCED_COMMIT_BUCKETS};
use crate::{CHANNELS, Channel, channel_index};

/// Per-game values published to the store handle.
#[derive(Debug, Default)]
pub(crate) struct GameShared {
    pub depth: AtomicU64,
    pub leased: AtomicU64,
}

/// Counters shared with the store handle: what has been committed, and how.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Committed (durable) grants per channel, published after each successful commit.
    pub granted: [AtomicU64; CHANNELS],
    /// Committed units taken per bound gift.
    pub stock: Box<[AtomicU64]>,
    pub games: Box<[GameShared]>,
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub commit_failures: AtomicU64,
    pub batch_len_max: AtomicU64,
    /// Synced commits by how long they took, bucketed by [`SYNCED_COMMIT_BOUNDS_MS`].
    pub synced_commits_by_ms: [AtomicU64; SYNCED_COMMIT_BUCKETS],
    pub synced_commit_max_us: AtomicU64,
}

impl Shared {
    pub fn new(recovered: &Recovered) -> Self {
        let shared = Self {
            stock: recovered.stock.iter().map(|v| AtomicU64::new(*v)).collect(),
            games: recovered
                .games
                .iter()
                .map(|g| GameShared { depth: AtomicU64::new(g.depth), leased: AtomicU64::new(0) })
                .collect(),
            ..Self::default()
        };
        for (slot, value) in shared.granted.iter().zip(recovered.granted) {
            slot.store(value, Ordering::Relaxed);
        }
        shared
    }

    /// Counts one synced commit that took `elapsed`.
    pub fn record_synced_commit(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = SYNCED_COMMIT_BOUNDS_MS
            .iter()
            .position(|bound_ms| us <= bound_ms * 1000)
            .unwrap_or(SYNCED_COMMIT_BOUNDS_MS.len());
        self.synced_commits_by_ms[bucket].fetch_add(1, Ordering::Relaxed);
        self.synced_commit_max_us.fetch_max(us, Ordering::Relaxed);
        hongbao_monitor::handles::store().commit_duration.record(elapsed.as_secs_f64());
    }

    pub fn granted(&self, channel: Channel) -> u64 {
        self.granted[channel_index(channel)].load(Ordering::Acquire)
    }

    pub fn stock_taken(&self, gift: GiftIndex) -> u64 {
        self.stock.get(usize::from(gift.0)).map_or(0, |v| v.load(Ordering::Acquire))
    }
}
