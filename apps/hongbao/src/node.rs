//! Long-running roles: the API node (`serve`) and the game-side simulator (`game-sim`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use hongbao_api::ApiState;
use hongbao_domain::{Campaign, ProfileTable};
use hongbao_gamesim::{GameSim, Outage, SimConfig};
use hongbao_gateway::{IdipClient, RoleCache, RoleCacheConfig};
use hongbao_store::{EmbeddedConfig, EmbeddedStore};
use tokio::net::TcpListener;

use crate::{load_campaign, parse_addr, synthetic};

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Directory holding `profiles.bin` from `hongbao gen`; without it every user is new.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Data directory of the embedded store (coupon grants; later claims and queues).
    #[arg(long, default_value = "hongbao-data")]
    pub data: PathBuf,
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
    let profiles = match &args.profiles {
        Some(dir) => synthetic::load_profiles(dir, &campaign)?,
        None => ProfileTable::empty(campaign.games.iter().map(|g| g.id.clone()).collect()),
    };
    let node = ApiNode::open(campaign, profiles, &args.data)?;
    let listener =
        TcpListener::bind(args.addr).await.with_context(|| format!("bind {}", args.addr))?;
    println!("api listening on http://{}", listener.local_addr()?);
    node.run(listener, shutdown_signal()).await
}

/// An API node's parts, opened once: state for the handlers and the store it owns.
pub struct ApiNode {
    pub state: ApiState,
    store: Arc<EmbeddedStore>,
}

impl ApiNode {
    pub fn open(campaign: Arc<Campaign>, profiles: ProfileTable, data: &Path) -> Result<ApiNode> {
        std::fs::create_dir_all(data).with_context(|| format!("create {}", data.display()))?;
        let store_dir = data.join("store");
        let store = Arc::new(
            EmbeddedStore::open(&store_dir, EmbeddedConfig::default())
                .with_context(|| format!("open the store in {}", store_dir.display()))?,
        );
        let idip = IdipClient::new(&campaign).context("build the game-side client")?;
        let roles = Arc::new(RoleCache::new(Arc::new(idip), None, RoleCacheConfig::default()));
        let state = ApiState::new(campaign)
            .with_profiles(Arc::new(profiles))
            .with_roles(roles)
            .with_grants(store.clone());
        Ok(ApiNode { state, store })
    }

    /// Serves until `shutdown`, then stops taking traffic, drains requests and closes the store.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let ApiNode { state, store } = self;
        state.set_ready(true);
        let ready = state.clone();
        let served = hongbao_api::serve(listener, hongbao_api::router(state), async move {
            shutdown.await;
            ready.set_ready(false);
        })
        .await;
        // Handlers are gone once serving returns; if a straggler still holds the store, its
        // Drop closes it the same way when released.
        if let Ok(store) = Arc::try_unwrap(store) {
            tokio::task::spawn_blocking(move || store.close())
                .await
                .context("close the store")?
                .context("close the store")?;
        }
        served.context("serve the API")
    }
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
