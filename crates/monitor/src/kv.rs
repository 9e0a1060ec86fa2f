//! The key-value query model (the original's): a key is a metric id with its labels and a time
//! bucket, the value is the reading of that series in that bucket. It is a port: the in-process
//! [`crate::series::SeriesStore`] on one node; on a fleet `hongbao_redis::RedisSeries`, where
//! each node adds its per-second readings into buckets keyed by metric id (+ labels) and bucket,
//! so any node answers for the whole fleet. That is why counters are stored as *increases* per
//! bucket (they add across nodes), not as running totals.
//!
//! Writes are synchronous and must not wait: the sampler calls [`SeriesKv::put`] once a second
//! on the runtime, so a store over the network hands the second to a writer of its own. Reads
//! are asynchronous: a store over the network answers a range with a round trip, and may fail
//! ([`KvError`]), which the query endpoint reports rather than answering with an empty series.

use std::future::Future;
use std::pin::Pin;

use crate::recorder::Labels;

/// The two resolutions a store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// One bucket per second.
    Second,
    /// One bucket per minute.
    Minute,
}

impl Resolution {
    /// Seconds per bucket.
    pub fn step_s(self) -> u64 {
        match self {
            Resolution::Second => 1,
            Resolution::Minute => 60,
        }
    }
}

/// How the readings of one series fold when several land in one bucket (a minute of seconds, or
/// several nodes' seconds in a fleet store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollup {
    /// Increases of a counter: they add up.
    Sum,
    /// A level: the latest reading stands.
    Last,
    /// A worst case (a per-second p99): the highest stands.
    Max,
}

impl Rollup {
    pub fn fold(self, old: f32, new: f32) -> f32 {
        if old.is_nan() {
            return new;
        }
        match self {
            Rollup::Sum => old + new,
            Rollup::Last => new,
            Rollup::Max => old.max(new),
        }
    }
}

/// A series: a metric id and its labels (sorted by name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub metric: String,
    pub labels: Labels,
}

/// One reading of one series for one second.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub key: SeriesKey,
    pub value: f32,
    pub rollup: Rollup,
}

/// A range of buckets of every series of a metric whose labels include a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    pub metric: String,
    /// Pairs every returned series carries (an empty filter matches all).
    pub filter: Labels,
    pub resolution: Resolution,
    /// First and last bucket index (Unix time ÷ the resolution's step), inclusive.
    pub from_bucket: u64,
    pub to_bucket: u64,
}

/// The readings of one series over a range: one value per bucket, NaN where there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRange {
    pub labels: Labels,
    pub values: Vec<f32>,
}

/// Why a store could not answer a range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The store did not answer (a shared store's server is down or slow).
    #[error("the series store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something its layout never writes.
    #[error("the series store holds unexpected data: {0}")]
    Corrupt(String),
}

/// What [`SeriesKv::range`] returns.
pub type RangeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<SeriesRange>, KvError>> + Send + 'a>>;

/// The port.
pub trait SeriesKv: Send + Sync + std::fmt::Debug {
    /// Adds one second's readings (`at_s`, Unix seconds) at every resolution. Never waits (see
    /// the module doc): a store that cannot take the second now drops it and says so in its log.
    fn put(&self, at_s: u64, readings: &[Reading]);

    /// The readings of a range of buckets; at most [`RANGE_BUCKETS_MAX`] buckets are asked for
    /// (a longer range is cut to its first [`RANGE_BUCKETS_MAX`]).
    fn range<'a>(&'a self, request: &'a RangeRequest) -> RangeFuture<'a>;
}

/// Most buckets one range request covers (the query endpoint refuses more points).
pub const RANGE_BUCKETS_MAX: u64 = 7_200;

/// True when `labels` carries every pair of `filter`.
pub fn matches(labels: &Labels, filter: &Labels) -> bool {
    filter.iter().all(|pair| labels.contains(pair))
}
