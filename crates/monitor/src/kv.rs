//! The key-value query model (the original's): a key is a metric id with its labels and a time
//! bucket, the value is the reading of that series in that bucket. It is a port: the in-process
//! [`crate::series::SeriesStore`] now; a Redis one later, where each node adds its per-second
//! readings into hashes keyed by metric id and bucket, so any node answers for the whole fleet.
//! That is why counters are stored as *increases* per bucket (they add across nodes), not as
//! running totals.

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

/// The port.
pub trait SeriesKv: Send + Sync + std::fmt::Debug {
    /// Adds one second's readings (`at_s`, Unix seconds) at every resolution.
    fn put(&self, at_s: u64, readings: &[Reading]);

    /// The readings of a range of buckets; at most [`RANGE_BUCKETS_MAX`] buckets are asked for.
    fn range(&self, request: &RangeRequest) -> Vec<SeriesRange>;
}

/// Most buckets one range request covers (the query endpoint refuses more points).
pub const RANGE_BUCKETS_MAX: u64 = 7_200;

/// True when `labels` carries every pair of `filter`.
pub fn matches(labels: &Labels, filter: &Labels) -> bool {
    filter.iter().all(|pair| labels.contains(pair))
}
