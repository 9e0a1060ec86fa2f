//! The game side (IDIP) simulator: the service hongbao delivers gifts to and asks for roles.
//!
//! It stands in for the real game servers in demos and tests, so it models what makes them
//! hard to work with: role look-ups are slow (the reason for the role cache), each game applies
//! only so many deliveries per second (the reason for the per-game throttle), deliveries fail,
//! hang, or are acknowledged and then lost (the reasons for retries and reconciliation), and the
//! game keeps its own delivery log (the "actual-send" side of reconciliation).
//!
//! Roles come from [`hongbao_domain::synth::SynthModel`] with the same seed `hongbao gen` uses,
//! so the two agree by construction. The HTTP contract is in DESIGN.md §4 and in [`GameSim::router`].
//! Other crates' integration tests run it on a loopback port with [`testing::RunningSim`].

mod http;
mod log;
mod sim;
pub mod testing;
mod window;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use log::{DeliveryItem, LogRecord};
pub use sim::{
    CAPACITY_PER_S_MAX, CREATED_ROLES_MAX, CREATED_ROLES_PER_USER_ZONE_MAX, FaultSettings,
    FaultsUpdate, GameSim, GameStats, LATENCY_MS_MAX, OUTAGE_HORIZON_S, SERIALS_PER_GAME_MAX,
    StatsBody,
};

/// How the simulator behaves. `Default` is a healthy game side with realistic latencies.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the synthetic user model; the same seed as `hongbao gen` gives the same roles.
    pub seed: u64,
    /// Number of synthetic users (ids from [`hongbao_domain::synth::FIRST_USER_ID`]).
    pub users: u64,
    /// Multiplies every game's `delivery_capacity_per_s` (result rounded, at least 1).
    pub capacity_scale: f64,
    /// Sleep before answering a role query: the slow service the role cache exists for.
    pub role_latency_ms: u64,
    /// Sleep before answering a delivery.
    pub deliver_latency_ms: u64,
    /// Probability that a delivery fails with `error` and is not applied.
    pub error_rate: f64,
    /// Probability that a delivery hangs `timeout_hang_ms` and is then applied or not (50/50).
    pub timeout_rate: f64,
    pub timeout_hang_ms: u64,
    /// Probability that a delivery is answered `applied` but recorded nowhere.
    pub lose_rate: f64,
    /// Windows during which a game answers every delivery with 503.
    pub outages: Vec<Outage>,
    /// The game's delivery log (JSON lines); replayed at startup when it exists.
    pub log_path: Option<PathBuf>,
    /// The roles players created (JSON lines); replayed at startup when it exists, so a restart
    /// keeps them.
    pub roles_log_path: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 42,
            users: 1_000_000,
            capacity_scale: 1.0,
            role_latency_ms: 30,
            deliver_latency_ms: 2,
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_hang_ms: 2000,
            lose_rate: 0.0,
            outages: Vec::new(),
            log_path: None,
            roles_log_path: None,
        }
    }
}

/// A window during which one game is down, relative to the simulator's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    pub game: String,
    pub start_s: u64,
    pub duration_s: u64,
}

impl FromStr for Outage {
    type Err = SimError;

    /// Parses `GAME:START_S:DURATION_S`, e.g. `lantern-heroes:60:30`.
    fn from_str(text: &str) -> Result<Outage, SimError> {
        let fail = |reason: &str| SimError::InvalidOutage {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = text.rsplitn(3, ':');
        let (Some(duration), Some(start), Some(game)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected three parts separated by `:`"));
        };
        if game.is_empty() {
            return Err(fail("empty game id"));
        }
        let start_s = start.parse::<u64>().map_err(|_| fail("START_S is not a whole number"))?;
        let duration_s =
            duration.parse::<u64>().map_err(|_| fail("DURATION_S is not a whole number"))?;
        if duration_s == 0 {
            return Err(fail("DURATION_S must be positive"));
        }
        Ok(Outage { game: game.to_string(), start_s, duration_s })
    }
}

/// Why the simulator refused to start or to change its settings.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("invalid outage `{text}`: {reason} (expected GAME:START_S:DURATION_S)")]
    InvalidOutage { text: String, reason: String },
    #[error("log {}: {source}", path.display())]
    LogIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log {}: line {line}: {reason}", path.display())]
    LogCorrupt { path: PathBuf, line: u64, reason: String },
    /// [`testing::RunningSim`] could not bind its loopback port.
    #[error("bind the simulator's loopback port: {0}")]
    Bind(#[source] std::io::Error),
}

/// Serves the simulator on `listener` until `shutdown` completes, then waits for requests in
/// flight (a hanging "timeout" delivery holds shutdown up to `timeout_hang_ms`) and syncs the
/// delivery log to disk.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<GameSim>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = sim.router();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    sim.flush_log()
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data consistent at
/// each step (a panic mid-way is a bug that already failed its own request).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_parses_and_refuses_malformed_text() {
        let o: Outage = "lantern-heroes:60:30".parse().unwrap();
        assert_eq!(o, Outage { game: "lantern-heroes".into(), start_s: 60, duration_s: 30 });
        for bad in ["", "g", "g:1", ":1:2", "g:x:2", "g:1:-2", "g:1:0", "g:1:2.5"] {
            let err = bad.parse::<Outage>().unwrap_err();
            assert!(matches!(err, SimError::InvalidOutage { .. }), "{bad}: {err}");
        }
    }
}
