//! Long-running roles: the API node (`serve`) and the game-side simulator (`game-sim`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use hongbao_gamesim::{GameSim, Outage, SimConfig};
use tokio::net::TcpListener;

use crate::{load_campaign, parse_addr};

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Directory holding `profiles.bin` from `hongbao gen`; without it every user is new.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
}

#[derive(Args)]
pub struct GameSimArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9100", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Seed of the synthetic users; the same as `hongbao gen --seed` gives the same roles.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of synthetic users (the same as `hongbao gen --users`).
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,
    /// The game's own delivery log (JSON lines), replayed at start so serials stay unique.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Multiplies every game's delivery capacity.
    #[arg(long, default_value_t = 1.0)]
    pub capacity_scale: f64,
    #[arg(long, default_value_t = 30)]
    pub role_latency_ms: u64,
    #[arg(long, default_value_t = 2)]
    pub deliver_latency_ms: u64,
    /// Share of deliveries answered `error` and not applied.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of deliveries that hang past the caller's timeout (then applied or not).
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    #[arg(long, default_value_t = 2000)]
    pub timeout_hang_ms: u64,
    /// Share of deliveries acknowledged but then lost by the game (for reconciliation tests).
    #[arg(long, default_value_t = 0.0)]
    pub lose_rate: f64,
    /// A game outage, `GAME:START_S:DURATION_S` after start; repeatable.
    #[arg(long)]
    pub outage: Vec<Outage>,
}

impl GameSimArgs {
    fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            users: self.users,
            capacity_scale: self.capacity_scale,
            role_latency_ms: self.role_latency_ms,
            deliver_latency_ms: self.deliver_latency_ms,
            error_rate: self.error_rate,
            timeout_rate: self.timeout_rate,
            timeout_hang_ms: self.timeout_hang_ms,
            lose_rate: self.lose_rate,
            outages: self.outage.clone(),
            log_path: self.log.clone(),
        }
    }
}

pub async fn game_sim(args: GameSimArgs) -> Result<()> {
    let campaign = load_campaign(&args.config)?;
    let sim = GameSim::new(&campaign, args.sim_config()).context("start the game simulator")?;
    let listener =
        TcpListener::bind(args.addr).await.with_context(|| format!("bind {}", args.addr))?;
    println!("game-sim listening on http://{}", listener.local_addr()?);
    hongbao_gamesim::serve(listener, sim, shutdown_signal()).await.context("serve the simulator")
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let campaign = Arc::new(load_campaign(&args.config)?);
    let state = hongbao_api::ApiState::new(campaign);
    let listener =
        TcpListener::bind(args.addr).await.with_context(|| format!("bind {}", args.addr))?;
    println!("api listening on http://{}", listener.local_addr()?);
    let _ = &args.profiles;
    state.set_ready(true);
    let ready = state.clone();
    hongbao_api::serve(listener, hongbao_api::router(state), async move {
        shutdown_signal().await;
        ready.set_ready(false);
    })
    .await
    .context("serve the API")
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
