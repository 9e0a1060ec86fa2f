//! The in-process series store: per series, a ring of one-second buckets for two hours and a
//! ring of one-minute buckets for seven days, each allocated once at its full size.
//!
//! Memory: a reading is an `f32` (exact to 2^24: counters are stored as increases per bucket,
//! levels such as a queue depth or a stock stay far below it), so a series takes
//! (7,200 + 10,080) × 4 B = 69,120 B, and the store at most [`SERIES_MAX`] × that = 70.8 MB. The
//! demo (ten games, 26 gifts, its routes and refusal codes) held 196 series after half a minute
//! of its load: 13.5 MB.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::kv::{
    RANGE_BUCKETS_MAX, RangeFuture, RangeRequest, Reading, Resolution, Rollup, SeriesKey, SeriesKv,
    SeriesRange, matches,
};

/// One-second buckets kept: two hours.
pub const SECOND_BUCKETS: usize = 2 * 3600;
/// One-minute buckets kept: seven days.
pub const MINUTE_BUCKETS: usize = 7 * 24 * 60;
/// Most series kept; readings of further series are dropped (with a warning, once).
pub const SERIES_MAX: usize = 1024;
/// Bytes one series takes, both rings full.
pub const SERIES_BYTES: usize = (SECOND_BUCKETS + MINUTE_BUCKETS) * size_of::<f32>();

/// A ring of buckets: the newest `cap` bucket indexes, NaN where nothing was read.
#[derive(Debug)]
struct Ring {
    cap: usize,
    /// Bucket index of the back of `values`.
    newest: u64,
    values: VecDeque<f32>,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring { cap, newest: 0, values: VecDeque::with_capacity(cap) }
    }

    fn put(&mut self, bucket: u64, value: f32, rollup: Rollup) {
        if self.values.is_empty() || bucket > self.newest {
            let gap = if self.values.is_empty() { 1 } else { bucket - self.newest };
            if gap > self.cap as u64 {
                self.values.clear();
            } else {
                for _ in 1..gap {
                    self.push(f32::NAN);
                }
            }
            self.push(value);
            self.newest = bucket;
        } else {
            let back = self.newest - bucket;
            let len = self.values.len() as u64;
            if back < len {
                let index = usize::try_from(len - 1 - back).unwrap_or(0);
                self.values[index] = rollup.fold(self.values[index], value);
            }
        }
        assert!(self.values.len() <= self.cap, "a ring holds at most its capacity");
    }

    fn push(&mut self, value: f32) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    fn get(&self, bucket: u64) -> f32 {
        if self.values.is_empty() || bucket > self.newest {
            return f32::NAN;
        }
        let back = self.newest - bucket;
        let len = self.values.len() as u64;
        if back >= len {
            return f32::NAN;
        }
        self.values[usize::try_from(len - 1 - back).unwrap_or(0)]
    }
}

#[derive(Debug)]
struct Rings {
    seconds: Ring,
    minutes: Ring,
}

/// The in-process [`SeriesKv`].
#[derive(Debug, Default)]
pub struct SeriesStore {
    series: Mutex<HashMap<SeriesKey, Rings>>,
}

/// What the store holds now, for the bounds test and `/monitor/v1/stats`-like reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreUsage {
    pub series: usize,
    /// Buckets held, over every ring.
    pub buckets: usize,
    /// Buckets allocated, over every ring.
    pub capacity: usize,
}

impl SeriesStore {
    pub fn new() -> SeriesStore {
        SeriesStore::default()
    }

    pub fn usage(&self) -> StoreUsage {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut usage = StoreUsage { series: series.len(), buckets: 0, capacity: 0 };
        for rings in series.values() {
            usage.buckets += rings.seconds.values.len() + rings.minutes.values.len();
            usage.capacity += rings.seconds.values.capacity() + rings.minutes.values.capacity();
        }
        usage
    }
}

impl SeriesKv for SeriesStore {
    fn put(&self, at_s: u64, readings: &[Reading]) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        for reading in readings {
            if !series.contains_key(&reading.key) {
                if series.len() >= SERIES_MAX {
                    tracing::warn!(metric = %reading.key.metric, "{SERIES_MAX} series held; reading dropped");
                    continue;
                }
                let rings = Rings {
                    seconds: Ring::new(SECOND_BUCKETS),
                    minutes: Ring::new(MINUTE_BUCKETS),
                };
                series.insert(reading.key.clone(), rings);
            }
            let Some(rings) = series.get_mut(&reading.key) else { continue };
            rings.seconds.put(at_s, reading.value, reading.rollup);
            rings.minutes.put(at_s / 60, reading.value, reading.rollup);
        }
    }

    fn range<'a>(&'a self, request: &'a RangeRequest) -> RangeFuture<'a> {
        Box::pin(std::future::ready(Ok(self.read(request))))
    }
}

impl SeriesStore {
    /// [`SeriesKv::range`], answered at once (nothing here waits or fails).
    pub fn read(&self, request: &RangeRequest) -> Vec<SeriesRange> {
        assert!(request.from_bucket <= request.to_bucket, "a range runs forward");
        let to = request.to_bucket.min(request.from_bucket + RANGE_BUCKETS_MAX - 1);
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<SeriesRange> = series
            .iter()
            .filter(|(key, _)| {
                key.metric == request.metric && matches(&key.labels, &request.filter)
            })
            .map(|(key, rings)| {
                let ring = match request.resolution {
                    Resolution::Second => &rings.seconds,
                    Resolution::Minute => &rings.minutes,
                };
                let values = (request.from_bucket..=to).map(|b| ring.get(b)).collect();
                SeriesRange { labels: key.labels.clone(), values }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(metric: &str, value: f32, rollup: Rollup) -> Reading {
        let key = SeriesKey { metric: metric.to_string(), labels: vec![] };
        Reading { key, value, rollup }
    }

    fn range(store: &SeriesStore, resolution: Resolution, from: u64, to: u64) -> Vec<f32> {
        let request = RangeRequest {
            metric: "m".into(),
            filter: vec![],
            resolution,
            from_bucket: from,
            to_bucket: to,
        };
        store.read(&request).pop().map(|s| s.values).unwrap_or_default()
    }

    #[test]
    fn seconds_and_minutes_fold_by_rollup() {
        let store = SeriesStore::new();
        for s in 120..180 {
            store.put(s, &[reading("m", 2.0, Rollup::Sum)]);
        }
        assert_eq!(range(&store, Resolution::Minute, 2, 2), vec![120.0]);
        assert_eq!(range(&store, Resolution::Second, 178, 179), vec![2.0, 2.0]);
        let gaps = range(&store, Resolution::Second, 100, 121);
        assert!(gaps[..20].iter().all(|v| v.is_nan()));
        assert_eq!(&gaps[20..], &[2.0, 2.0]);
    }

    #[test]
    fn a_gap_longer_than_the_ring_empties_it() {
        let store = SeriesStore::new();
        store.put(10, &[reading("m", 1.0, Rollup::Last)]);
        store.put(10 + 3 * SECOND_BUCKETS as u64, &[reading("m", 5.0, Rollup::Last)]);
        assert!(range(&store, Resolution::Second, 10, 10)[0].is_nan());
        // The second ring starts over with one bucket; the minute ring spans the 6 h gap.
        assert_eq!(store.usage().buckets, 1 + 361);
    }
}
