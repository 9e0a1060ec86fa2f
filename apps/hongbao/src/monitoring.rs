//! The node's monitor: installed before anything takes a metrics handle, its sampler, and the
//! readers of figures the parts already keep (queue depth and oldest age per game from the
//! dispatcher, stock left per gift and the store writer's batches and fsyncs from the store, the
//! role cache's hits per level), copied into handles once a second.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use hongbao_api::ApiState;
use hongbao_clock::SharedClock;
use hongbao_delivery::Dispatcher;
use hongbao_monitor::handles::{self, GameMetrics};
use hongbao_monitor::{Monitor, MonitorConfig, SeriesKv, catalog};
use hongbao_store::EmbeddedStore;

/// The monitor file beside a campaign file, used when `--monitor` names none.
pub const MONITOR_FILE: &str = "monitor.toml";

/// Reads the monitor file: `explicit`, else `monitor.toml` beside the campaign file, else the
/// shipped one.
pub fn load_config(explicit: Option<&Path>, campaign_file: Option<&Path>) -> Result<MonitorConfig> {
    let beside = campaign_file
        .and_then(Path::parent)
        .map(|dir| dir.join(MONITOR_FILE))
        .filter(|p| p.is_file());
    let path: Option<PathBuf> = explicit.map(Path::to_path_buf).or(beside);
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read the monitor file {}", path.display()))?;
            Ok(MonitorConfig::parse(&text, &path.display().to_string())?)
        }
        None => Ok(MonitorConfig::shipped()),
    }
}

/// Installs the process's monitor (call it first: handles taken before are inert), over the
/// fleet's shared series store when the node has one, else over an in-process one.
pub fn install(
    clock: SharedClock,
    config: MonitorConfig,
    fleet_series: Option<Arc<dyn SeriesKv>>,
) -> Result<Arc<Monitor>> {
    match fleet_series {
        Some(series) => Monitor::install_over(clock, config, series),
        None => Monitor::install(clock, config),
    }
    .context("install the monitor")
}

/// Copies the parts' own figures into handles, once a second of `clock`, until `stop`.
pub async fn read_parts(
    clock: SharedClock,
    state: ApiState,
    store: Option<Arc<EmbeddedStore>>,
    dispatcher: Option<Arc<Dispatcher>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let campaign = state.campaign.clone();
    let stock: Vec<_> = campaign
        .gifts
        .iter()
        .map(|g| (g.index, g.stock, handles::gauge(catalog::GIFT_STOCK, &[("gift", &g.id)])))
        .collect();
    let games: Vec<GameMetrics> = campaign.games.iter().map(|g| GameMetrics::new(&g.id)).collect();
    let store_metrics = handles::store();
    let cache = handles::role_cache();
    let mut stop = std::pin::pin!(stop);
    loop {
        // The embedded store's writer; a distributed node has none.
        if let Some(store) = &store {
            let stats = store.stats();
            store_metrics.batches.absolute(stats.batches);
            store_metrics.fsyncs.absolute(stats.fsyncs);
        }
        for (gift, total, gauge) in &stock {
            gauge.set(total.saturating_sub(state.claims.stock_taken(*gift)) as f64);
        }
        let roles = state.roles.stats().snapshot();
        cache.l1.absolute(roles.hits_l1 + roles.coalesced);
        cache.l2.absolute(roles.hits_l2);
        cache.idip.absolute(roles.misses);
        if let Some(dispatcher) = &dispatcher {
            // The status asks the queue for each game's depth: on JetStream one request per
            // game, each waiting out its timeout while NATS is gone. Stop does not wait for it.
            let status = tokio::select! {
                status = dispatcher.status() => status,
                () = &mut stop => return,
            };
            for game in status.games {
                let Some(m) = games.get(usize::from(game.index)) else { continue };
                m.queue_depth.set(game.queue_depth as f64);
                m.queue_oldest_age.set(game.oldest_queued_age_ms.unwrap_or(0) as f64 / 1000.0);
            }
        }
        let next_ms = (clock.now_ms() / 1000 + 1) * 1000;
        tokio::select! {
            () = clock.sleep_until(next_ms) => {}
            () = &mut stop => return,
        }
    }
}
