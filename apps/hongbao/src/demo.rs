//! `hongbao demo`: the whole campaign in one process, from nothing but the binary.
//!
//! It runs the example campaign (built into the binary) as if it had opened a minute ago, starts
//! the game-side simulator on a free loopback port (pointing every game at it), generates
//! synthetic users into the data directory, and serves the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use hongbao_domain::Campaign;
use hongbao_gamesim::{GameSim, SimConfig};
use tokio::net::TcpListener;

use crate::node::shutdown_signal;
use crate::{load_campaign, parse_addr, synthetic};

/// The shipped example campaign, so the demo needs no file beside the binary.
pub const EXAMPLE_CAMPAIGN: &str = include_str!("../../../config/spring-festival.toml");
/// Seconds the demo campaign has been open when the demo starts.
const OPENED_AGO_S: i64 = 60;

#[derive(Args)]
pub struct DemoArgs {
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Where the game-side simulator listens (default: a free loopback port).
    #[arg(long, value_parser = parse_addr)]
    pub sim_addr: Option<SocketAddr>,
    /// A campaign file instead of the built-in example.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (synthetic users, the game's delivery log).
    #[arg(long, default_value = "hongbao-demo-data")]
    pub data: PathBuf,
    /// Synthetic users to generate.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Seed of the synthetic users.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Do not run the gentle synthetic load.
    #[arg(long)]
    pub no_load: bool,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let campaign = match &args.config {
        Some(path) => load_campaign(path)?,
        None => {
            Campaign::parse(EXAMPLE_CAMPAIGN, "config/spring-festival.toml (built in)", &|name| {
                std::env::var(name).ok()
            })?
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("read the clock")?.as_secs();
    let mut campaign = campaign.with_start(i64::try_from(now)? - OPENED_AGO_S);

    // The game side first: the API's games must point at wherever it really listens.
    let sim_listener =
        TcpListener::bind(args.sim_addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()))
            .await
            .context("bind the game simulator")?;
    let sim_addr = sim_listener.local_addr()?;
    for game in &mut campaign.games {
        game.idip_url = format!("http://{sim_addr}");
    }

    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("create {}", args.data.display()))?;
    let report = synthetic::generate(&campaign, args.users, args.seed, &args.data)?;
    let sim = GameSim::new(
        &campaign,
        SimConfig {
            seed: args.seed,
            users: args.users,
            log_path: Some(args.data.join("game-delivery-log.jsonl")),
            ..SimConfig::default()
        },
    )
    .context("start the game simulator")?;

    let campaign = Arc::new(campaign);
    let state = hongbao_api::ApiState::new(campaign.clone());
    let api_listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("bind the API on {}", args.addr))?;
    let api_addr = api_listener.local_addr()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let sim_task =
        tokio::spawn(hongbao_gamesim::serve(sim_listener, sim, stopped(stop_rx.clone())));
    state.set_ready(true);
    let api_task = tokio::spawn(hongbao_api::serve(
        api_listener,
        hongbao_api::router(state.clone()),
        stopped(stop_rx.clone()),
    ));

    println!(
        "hongbao demo: campaign `{}` ({}) opened {OPENED_AGO_S} s ago",
        campaign.id, campaign.title
    );
    println!(
        "  users       {} synthetic users (seed {}) in {}",
        report.users,
        args.seed,
        args.data.display()
    );
    println!(
        "  game side   http://{sim_addr}/idip/v1/stats   (simulator of {} games)",
        campaign.games.len()
    );
    println!("  api         http://{api_addr}/healthz");
    println!("  catalog     http://{api_addr}/static/catalog/manifest.json");
    println!("  try         curl -s http://{api_addr}/static/catalog/manifest.json");
    println!(
        "              curl -s 'http://{sim_addr}/idip/v1/roles?user=10001&game=lantern-heroes'"
    );
    println!("Ctrl-C stops.");

    shutdown_signal().await;
    state.set_ready(false);
    let _ = stop_tx.send(true);
    api_task.await.context("api task")?.context("serve the API")?;
    sim_task.await.context("simulator task")?.context("serve the simulator")?;
    Ok(())
}
