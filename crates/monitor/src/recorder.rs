//! The recorder behind the `metrics` facade: every handle it registers feeds both the Prometheus
//! exporter (for `/metrics`) and a cell of its own that the sampler reads once a second into the
//! series store. A handle costs one extra atomic add per update; nothing is looked up or built
//! per update.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::catalog::{self, LATENCY_BUCKETS_S, MetricKind};

/// Most distinct (metric, labels) cells kept for the series; registrations beyond it still reach
/// `/metrics` but get no per-second series (and a warning). Label values come from bounded sets,
/// so reaching it means a label escaped its set.
pub const CELLS_MAX: usize = 1024;

/// A metric's labels as sorted (name, value) pairs: the identity of a series within a metric.
pub type Labels = Vec<(String, String)>;

/// What a cell holds.
#[derive(Debug)]
pub(crate) enum CellValue {
    Counter(AtomicU64),
    /// `f64` bits.
    Gauge(AtomicU64),
    Histogram(HistogramCell),
}

/// A fixed-bucket histogram: one count per bound of [`LATENCY_BUCKETS_S`] and one above them.
#[derive(Debug)]
pub(crate) struct HistogramCell {
    pub(crate) counts: Vec<AtomicU64>,
}

impl HistogramCell {
    fn new() -> HistogramCell {
        HistogramCell { counts: (0..=LATENCY_BUCKETS_S.len()).map(|_| AtomicU64::new(0)).collect() }
    }

    fn record(&self, value: f64) {
        let index = LATENCY_BUCKETS_S.partition_point(|&bound| bound < value);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// One registered (metric, labels).
#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) metric: &'static str,
    pub(crate) labels: Labels,
    pub(crate) value: CellValue,
}

/// The cells the sampler reads, shared with the recorder.
#[derive(Debug, Default)]
pub(crate) struct Cells {
    by_key: Mutex<HashMap<Key, Arc<Cell>>>,
}

impl Cells {
    /// Every cell, in no particular order (the sampler's read).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Cell>> {
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// The cell of `key`, made on first registration; `None` for a metric outside the catalog or
    /// past [`CELLS_MAX`].
    fn cell(&self, key: &Key, kind: MetricKind) -> Option<Arc<Cell>> {
        let desc = catalog::find(key.name())?;
        if desc.kind != kind {
            tracing::warn!(metric = key.name(), "metric registered as another kind; no series");
            return None;
        }
        let mut cells = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = cells.get(key) {
            return Some(cell.clone());
        }
        if cells.len() >= CELLS_MAX {
            tracing::warn!(metric = key.name(), "{CELLS_MAX} series cells in use; no series");
            return None;
        }
        let mut labels: Labels =
            key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
        labels.sort();
        let value = match kind {
            MetricKind::Counter => CellValue::Counter(AtomicU64::new(0)),
            MetricKind::Gauge => CellValue::Gauge(AtomicU64::new(0f64.to_bits())),
            MetricKind::Histogram => CellValue::Histogram(HistogramCell::new()),
        };
        let cell = Arc::new(Cell { metric: desc.id, labels, value });
        cells.insert(key.clone(), cell.clone());
        Some(cell)
    }
}

/// The recorder: Prometheus plus the cells.
#[derive(Debug)]
pub struct MonitorRecorder {
    prometheus: PrometheusRecorder,
    pub(crate) cells: Arc<Cells>,
}

impl MonitorRecorder {
    /// A recorder whose latency histograms have [`LATENCY_BUCKETS_S`] (so Prometheus can take
    /// quantiles across nodes).
    pub fn new() -> MonitorRecorder {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS_S)
            .unwrap_or_else(|_| unreachable!("the bucket list is not empty"));
        MonitorRecorder { prometheus: builder.build_recorder(), cells: Arc::default() }
    }

    /// Renders `/metrics`.
    pub fn prometheus(&self) -> PrometheusHandle {
        self.prometheus.handle()
    }

    /// Describes every metric of the catalog to the exporter (its `# HELP` lines).
    pub fn describe_all(&self) {
        for m in catalog::METRICS {
            let (name, help) = (KeyName::from_const_str(m.id), SharedString::const_str(m.help));
            let unit = m.id.ends_with("_seconds").then_some(Unit::Seconds);
            match m.kind {
                MetricKind::Counter => self.prometheus.describe_counter(name, unit, help),
                MetricKind::Gauge => self.prometheus.describe_gauge(name, unit, help),
                MetricKind::Histogram => self.prometheus.describe_histogram(name, unit, help),
            }
        }
    }
}

impl Default for MonitorRecorder {
    fn default() -> Self {
        MonitorRecorder::new()
    }
}

struct FanCounter {
    prometheus: Counter,
    cell: Arc<Cell>,
}

impl CounterFn for FanCounter {
    fn increment(&self, value: u64) {
        self.prometheus.increment(value);
        if let CellValue::Counter(c) = &self.cell.value {
            c.fetch_add(value, Ordering::Relaxed);
        }
    }

    fn absolute(&self, value: u64) {
        self.prometheus.absolute(value);
        if let CellValue::Counter(c) = &self.cell.value {
            c.fetch_max(value, Ordering::Relaxed);
        }
    }
}

struct FanGauge {
    prometheus: Gauge,
    cell: Arc<Cell>,
}

impl FanGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        if let CellValue::Gauge(g) = &self.cell.value {
            let _ = g.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
        }
    }
}

impl GaugeFn for FanGauge {
    fn increment(&self, value: f64) {
        self.prometheus.increment(value);
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.prometheus.decrement(value);
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.prometheus.set(value);
        self.update(|_| value);
    }
}

struct FanHistogram {
    prometheus: Histogram,
    cell: Arc<Cell>,
}

impl HistogramFn for FanHistogram {
    fn record(&self, value: f64) {
        self.prometheus.record(value);
        if let CellValue::Histogram(h) = &self.cell.value {
            h.record(value);
        }
    }
}

impl Recorder for MonitorRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let prometheus = self.prometheus.register_counter(key, metadata);
        match self.cells.cell(key, MetricKind::Counter) {
            Some(cell) => Counter::from_arc(Arc::new(FanCounter { prometheus, cell })),
            None => prometheus,
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let prometheus = self.prometheus.register_gauge(key, metadata);
        match self.cells.cell(key, MetricKind::Gauge) {
            Some(cell) => Gauge::from_arc(Arc::new(FanGauge { prometheus, cell })),
            None => prometheus,
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let prometheus = self.prometheus.register_histogram(key, metadata);
        match self.cells.cell(key, MetricKind::Histogram) {
            Some(cell) => Histogram::from_arc(Arc::new(FanHistogram { prometheus, cell })),
            None => prometheus,
        }
    }
}
