//! `hongbao demo`: the whole campaign in one process, from nothing but the binary.
//!
//! It runs the example campaign (built into the binary) as if it had opened a minute ago, starts
//! the game-side simulator on a free loopback port (pointing every game at it), generates
//! synthetic users into the data directory, and serves the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hongbao_clock::SystemClock;

use anyhow::{Context, Result};
use clap::Args;
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, release, sign_ticket};
use hongbao_gamesim::{GameSim, SimConfig};
use tokio::net::TcpListener;

use crate::node::{Node, NodeRole, shutdown_signal};
use crate::{load_campaign, parse_addr, synthetic};

/// The shipped example campaign, so the demo needs no file beside the binary.
pub const EXAMPLE_CAMPAIGN: &str = include_str!("../../../config/spring-festival.toml");
/// Seconds the demo campaign has been open when the demo starts.
const OPENED_AGO_S: i64 = 60;
/// The demo's gentle load: journeys started per second, and for how long at most.
const DEMO_LOAD_PER_S: f64 = 5.0;
const DEMO_LOAD_DURATION_S: u64 = 24 * 3600;

#[derive(Args)]
pub struct DemoArgs {
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Operator endpoints (default: a free loopback port).
    #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
    pub admin_addr: SocketAddr,
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
    let clock = SystemClock::shared();
    let now = clock.now_unix_s();
    let mut campaign = campaign.with_start(now - OPENED_AGO_S);

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

    let profiles = synthetic::load_profiles(&args.data, &campaign)?;
    let campaign = Arc::new(campaign);
    let node = Node::open(
        campaign.clone(),
        profiles,
        &args.data,
        NodeRole::All,
        hongbao_delivery::DispatcherConfig::default(),
        crate::node::store_config(
            hongbao_store::embedded::BATCH_MAX_DEFAULT,
            crate::node::STORE_LINGER_MS_DEFAULT,
        ),
        clock,
    )?;
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
    let admin_listener = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("bind the admin endpoints on {}", args.admin_addr))?;
    let admin_addr = admin_listener.local_addr()?;
    let api_task =
        tokio::spawn(node.run(Some(api_listener), admin_listener, stopped(stop_rx.clone())));

    // A sample user who plays several games, with a ticket, so the curl lines work as printed.
    let sample_user = sample_user(&campaign, args.seed, args.users, now);
    let ticket = sign_ticket(&campaign.auth.ticket_keys[0], sample_user, now, 3600);
    let first_game = &campaign.games[0].id;

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
    println!(
        "  delivery    http://{admin_addr}/admin/v1/delivery   (per-game queue, rate, delivered)"
    );
    println!("  sample user {sample_user}; a login ticket for it (1 h):");
    println!("  export T={ticket}");
    println!(
        "  grab        curl -s -XPOST -H \"authorization: Bearer $T\" -H 'content-type: application/json' -d '{{\"channel\":\"swipe\"}}' http://{api_addr}/v1/coupons"
    );
    println!(
        "  gift list   curl -s -H \"authorization: Bearer $T\" http://{api_addr}/v1/coupons/$COUPON/gifts"
    );
    println!(
        "  roles       curl -s 'http://{sim_addr}/idip/v1/roles?user={sample_user}&game={first_game}'"
    );
    println!(
        "  claim       curl -s -XPOST -H \"authorization: Bearer $T\" -H 'content-type: application/json' -d '{{\"coupon\":\"'$COUPON'\",\"gift_id\":\"<a listed gift>\",\"zone_id\":<zone>,\"role_id\":<role>}}' http://{api_addr}/v1/claims"
    );
    println!("  orders      curl -s -H \"authorization: Bearer $T\" http://{api_addr}/v1/orders");
    // A gentle synthetic load: a few users a second walk the whole journey (grab, list, claim,
    // wait for delivery), so the delivery status moves. Those whose release wave is not open yet
    // are refused (`wave_not_open`), as they would be in the real campaign.
    let load_task = (!args.no_load).then(|| {
        let mut load = hongbao_loadgen::LoadConfig::new(
            format!("http://{api_addr}"),
            campaign.clone(),
            hongbao_loadgen::Scenario::Journey,
            DEMO_LOAD_PER_S,
            Duration::from_secs(DEMO_LOAD_DURATION_S),
        );
        load.users = args.users;
        load.user_dist = hongbao_loadgen::UserDist::Uniform;
        load.progress = false;
        println!("  load        {DEMO_LOAD_PER_S} journeys/s (grab, list, claim, wait for delivery); --no-load turns it off");
        tokio::spawn(hongbao_loadgen::run(load))
    });
    println!("Ctrl-C stops.");

    shutdown_signal().await;
    if let Some(task) = load_task {
        task.abort();
    }
    let _ = stop_tx.send(true);
    api_task.await.context("api task")??;
    sim_task.await.context("simulator task")?.context("serve the simulator")?;
    Ok(())
}

/// The first synthetic user registered in at least three games whose release wave is open: a
/// list worth looking at, right now.
fn sample_user(campaign: &Campaign, seed: u64, users: u64, now: i64) -> u64 {
    let model = SynthModel::new(seed, users, campaign.games.len());
    (FIRST_USER_ID..FIRST_USER_ID + users)
        .find(|&u| {
            model.profile(u).registered.0.count_ones() >= 3 && release::opens_at(campaign, u) <= now
        })
        .unwrap_or(FIRST_USER_ID)
}
