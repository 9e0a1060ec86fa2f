//! hongbao's monitoring, in one place (issue 16, DESIGN.md §1 "monitoring"):
//! - [`catalog`]: every metric described once (ids, kinds, labels);
//! - [`recorder`]: the `metrics` recorder feeding both the Prometheus exporter and the series;
//! - [`handles`]: the handles the other crates register once and keep;
//! - [`kv`]: the key-value query model (a port); [`series`]: its in-process implementation,
//!   bounded ring buffers of one-second and one-minute readings (a fleet's shared one is
//!   `hongbao_redis::RedisSeries`);
//! - [`sampler`]: once a second, every handle's reading into the series, on the injected clock;
//! - [`config`]: monitor files (panels, funnel, alert thresholds);
//! - [`query`]: series and funnels for `/monitor/v1/query`;
//! - [`http`]: `/metrics`, `/monitor/v1/query`, `POST /v1/events` and `/dashboard`.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use hongbao_clock::SharedClock;
use metrics_exporter_prometheus::PrometheusHandle;

pub mod catalog;
pub mod config;
pub mod events;
pub mod handles;
pub mod http;
pub mod kv;
pub mod query;
pub mod recorder;
pub mod sampler;
pub mod series;

pub use config::{ConfigError, MonitorConfig};
pub use kv::SeriesKv;
pub use recorder::MonitorRecorder;
pub use series::SeriesStore;

/// The monitor of one process: the exporter's handle, the series and the file's panels.
pub struct Monitor {
    clock: SharedClock,
    cells: Arc<recorder::Cells>,
    prometheus: PrometheusHandle,
    series: Arc<dyn SeriesKv>,
    config: Arc<MonitorConfig>,
    sampler: Mutex<sampler::Sampler>,
    pub(crate) events: events::Events,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// The process already has a recorder.
#[derive(Debug, thiserror::Error)]
#[error("a metrics recorder is already installed in this process")]
pub struct AlreadyInstalled;

impl Monitor {
    /// A monitor reading `recorder`'s handles into `series`. Handles registered through
    /// `recorder` (directly, or through the facade once it is installed) are sampled.
    pub fn new(
        recorder: &MonitorRecorder,
        clock: SharedClock,
        config: MonitorConfig,
        series: Arc<dyn SeriesKv>,
    ) -> Monitor {
        recorder.describe_all();
        Monitor {
            events: events::Events::new(recorder),
            clock,
            cells: recorder.cells.clone(),
            prometheus: recorder.prometheus(),
            series,
            config: Arc::new(config),
            sampler: Mutex::default(),
        }
    }

    /// Builds the process's monitor over an in-process [`SeriesStore`] and installs its
    /// recorder as the `metrics` facade's: call it before anything takes handles.
    pub fn install(
        clock: SharedClock,
        config: MonitorConfig,
    ) -> Result<Arc<Monitor>, AlreadyInstalled> {
        Monitor::install_over(clock, config, Arc::new(SeriesStore::new()))
    }

    /// [`Monitor::install`] over another store (a fleet's shared one).
    pub fn install_over(
        clock: SharedClock,
        config: MonitorConfig,
        series: Arc<dyn SeriesKv>,
    ) -> Result<Arc<Monitor>, AlreadyInstalled> {
        let recorder = MonitorRecorder::new();
        let monitor = Monitor::new(&recorder, clock, config, series);
        metrics::set_global_recorder(recorder).map_err(|_| AlreadyInstalled)?;
        Ok(Arc::new(monitor))
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    pub fn series(&self) -> &dyn SeriesKv {
        self.series.as_ref()
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        self.prometheus.render()
    }

    /// Reads every handle into the series as second `at_s`'s readings.
    pub fn sample(&self, at_s: u64) {
        let cells = self.cells.snapshot();
        let readings = self.sampler.lock().unwrap_or_else(PoisonError::into_inner).read(&cells);
        self.series.put(at_s, &readings);
        self.prometheus.run_upkeep();
    }

    /// Samples at the end of every second of the clock until `stop` completes.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let next_ms = (self.clock.now_ms() / 1000 + 1) * 1000;
            tokio::select! {
                () = self.clock.sleep_until(next_ms) => self.sample(next_ms / 1000 - 1),
                () = &mut stop => return,
            }
        }
    }
}
