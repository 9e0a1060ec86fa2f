//! Once a second, every cell becomes a reading: a counter's increase since the last sample, a
//! gauge's level, a histogram's p50 and p99 over that second (from its bucket counts' increase,
//! interpolated within a bucket as Prometheus' `histogram_quantile` does) and its count's
//! increase as `<id>_count`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::catalog::LATENCY_BUCKETS_S;
use crate::kv::{Reading, Rollup, SeriesKey};
use crate::recorder::{Cell, CellValue};

/// The quantiles each histogram's series carry, with their `quantile` label values.
pub const QUANTILES: &[(f64, &str)] = &[(0.5, "0.5"), (0.99, "0.99")];

/// What the last sample read of each cell (cells live as long as the recorder, so their address
/// names them).
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    counters: HashMap<usize, u64>,
    histograms: HashMap<usize, Vec<u64>>,
}

impl Sampler {
    pub(crate) fn read(&mut self, cells: &[Arc<Cell>]) -> Vec<Reading> {
        let mut readings = Vec::with_capacity(cells.len() + 8);
        for cell in cells {
            let id = Arc::as_ptr(cell) as usize;
            let key = || SeriesKey { metric: cell.metric.to_string(), labels: cell.labels.clone() };
            match &cell.value {
                CellValue::Counter(c) => {
                    let now = c.load(Ordering::Relaxed);
                    let before = self.counters.insert(id, now).unwrap_or(0);
                    let value = now.saturating_sub(before) as f32;
                    readings.push(Reading { key: key(), value, rollup: Rollup::Sum });
                }
                CellValue::Gauge(g) => {
                    let value = f64::from_bits(g.load(Ordering::Relaxed)) as f32;
                    readings.push(Reading { key: key(), value, rollup: Rollup::Last });
                }
                CellValue::Histogram(h) => {
                    let now: Vec<u64> =
                        h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                    let before = self.histograms.insert(id, now.clone());
                    let delta: Vec<u64> = match before {
                        Some(before) => now.iter().zip(&before).map(|(n, b)| n - b).collect(),
                        None => now,
                    };
                    let count: u64 = delta.iter().sum();
                    let count_key = SeriesKey {
                        metric: format!("{}_count", cell.metric),
                        labels: cell.labels.clone(),
                    };
                    readings.push(Reading {
                        key: count_key,
                        value: count as f32,
                        rollup: Rollup::Sum,
                    });
                    if count == 0 {
                        continue;
                    }
                    for (q, name) in QUANTILES {
                        let mut labels = cell.labels.clone();
                        labels.push(("quantile".to_string(), (*name).to_string()));
                        labels.sort();
                        let key = SeriesKey { metric: cell.metric.to_string(), labels };
                        let value = quantile(&delta, *q) as f32;
                        readings.push(Reading { key, value, rollup: Rollup::Max });
                    }
                }
            }
        }
        readings
    }
}

/// The `q` quantile of bucket counts over [`LATENCY_BUCKETS_S`] (the last count is above them:
/// reported as the highest bound).
pub(crate) fn quantile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in counts.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS_S.get(i) else {
                return LATENCY_BUCKETS_S[LATENCY_BUCKETS_S.len() - 1];
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS_S[i - 1] };
            return lower + (upper - lower) * ((rank - below as f64) / count as f64);
        }
        below += count;
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut counts = vec![0u64; LATENCY_BUCKETS_S.len() + 1];
        // 100 readings in (1 ms, 2.5 ms].
        counts[4] = 100;
        let p50 = quantile(&counts, 0.5);
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        counts[LATENCY_BUCKETS_S.len()] = 100;
        assert_eq!(quantile(&counts, 0.99), 10.0);
    }
}
