//! `hongbao demo`: the whole campaign in one process, from nothing but the binary.
//!
//! It runs the example campaign (built into the binary) as if it had opened a minute ago (on a
//! new data directory; a restart on the same one keeps that start), binds every port, then
//! generates synthetic users into the data directory, starts the game-side simulator (pointing
//! every game at it) and serves the API. It prints shell lines a newcomer can paste in order,
//! from a red packet to a delivered gift, and the operators' commands. It is a rehearsal by
//! definition: the example campaign's keys are the published ones.
//!
//! With `--redis URL --nats URL` the same node runs on the distributed backend (as `serve
//! --redis --nats` does) against servers already running, under a namespace of its own
//! (`demo-<random>` unless `--namespace`), which must be empty when the demo starts and whose
//! keys and stream are removed when it stops cleanly (Ctrl-C) unless `--keep`: the demo never
//! touches keys it did not make.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hongbao_clock::SystemClock;

use anyhow::{Context, Result, bail};
use clap::Args;
use hongbao_distributed::{BackendConfig, SweeperConfig};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{
    Campaign, Role, RoleContext, Subject, eligibility, gift_list, release, sign_ticket,
};
use hongbao_gamesim::{GameSim, SimConfig};
use hongbao_jetstream::JetStreamConfig;
use hongbao_store::CampaignBinding;
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
    /// Redis of the distributed backend (e.g. redis://127.0.0.1:6379): the node keeps its
    /// grabs, claims and orders there instead of the embedded store. Needs --nats.
    #[arg(long, requires = "nats")]
    pub redis: Option<String>,
    /// NATS with JetStream of the distributed backend (e.g. nats://127.0.0.1:4222): the
    /// deliveries' queue. Needs --redis.
    #[arg(long, requires = "redis")]
    pub nats: Option<String>,
    /// Namespace of the demo's Redis keys and JetStream stream; must hold nothing yet
    /// (default: `demo-` and a random part).
    #[arg(long, requires = "redis")]
    pub namespace: Option<String>,
    /// Keep the namespace's keys and stream when the demo stops (default: removed).
    #[arg(long, requires = "redis")]
    pub keep: bool,
    /// Claim shards to split the demo campaign's claim state into (1..=128; see `serve
    /// --help`). [default: 1]
    #[arg(long, requires = "redis", value_parser = clap::value_parser!(u16).range(1..=128))]
    pub claim_shards: Option<u16>,
}

/// Where the demo's node keeps its state.
enum Backing {
    /// The embedded store in the data directory.
    Embedded,
    /// Redis + JetStream under a namespace of the demo's own.
    Distributed { config: BackendConfig, keep: bool },
}

impl Backing {
    /// From the flags; for the distributed backend, checks that Redis answers and the
    /// namespace holds nothing (so removing it at exit removes only what the demo made).
    async fn from_args(args: &DemoArgs, campaign: &Campaign) -> Result<Backing> {
        let (Some(redis), Some(nats)) = (&args.redis, &args.nats) else {
            return Ok(Backing::Embedded);
        };
        let namespace = match &args.namespace {
            Some(name) => name.clone(),
            None => {
                use rand::{Rng, SeedableRng};
                let random: u32 = rand::rngs::StdRng::from_os_rng().random();
                format!("demo-{random:08x}")
            }
        };
        // The stream's names are the stricter rule (no `.`): checked before anything is asked.
        let games: Vec<String> = campaign.games.iter().map(|g| g.id.clone()).collect();
        hongbao_jetstream::Names::new(&namespace, &campaign.id, &games)
            .with_context(|| format!("--namespace `{namespace}`"))?;
        let keys =
            hongbao_distributed::namespace_keys(redis, &namespace).await.with_context(|| {
                format!("reach Redis at {redis} (--redis) to check namespace `{namespace}`")
            })?;
        if keys > 0 {
            bail!(
                "namespace `{namespace}` already holds {keys} Redis keys: the demo removes its \
                 namespace when it stops, so it runs only on an empty one; choose another \
                 --namespace (or leave it out for a random one)"
            );
        }
        let config = BackendConfig {
            redis_url: redis.clone(),
            nats_url: nats.clone(),
            namespace,
            jetstream: JetStreamConfig::default(),
            sweeper: SweeperConfig::default(),
            claim_shards: args.claim_shards,
        };
        Ok(Backing::Distributed { config, keep: args.keep })
    }

    /// Removes the namespace unless it is to be kept; says what it did.
    async fn finish(&self, campaign: &Campaign) -> Result<()> {
        let Backing::Distributed { config, keep } = self else { return Ok(()) };
        let ns = &config.namespace;
        if *keep {
            println!(
                "kept namespace {ns}: Redis keys {ns}:* and the JetStream stream {ns}_{}",
                campaign.id
            );
            return Ok(());
        }
        let removed = hongbao_distributed::remove_namespace(config, &CampaignBinding::of(campaign))
            .await
            .with_context(|| format!("remove namespace {ns} (its keys are {ns}:* in Redis)"))?;
        println!(
            "removed namespace {ns}: {} Redis keys{}",
            removed.keys,
            if removed.stream { " and its JetStream stream" } else { "" }
        );
        Ok(())
    }
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
    let monitor_config = crate::monitoring::load_config(None, args.config.as_deref())?;
    let shutdown = shutdown_signal();
    // Every port first: a clash fails in a second, naming the address, not after the users are
    // generated. Then the servers of the distributed backend, for the same reason.
    let (sim_listener, api_listener, admin_listener) = bind_ports(&args).await?;
    let (sim_addr, api_addr, admin_addr) =
        (sim_listener.local_addr()?, api_listener.local_addr()?, admin_listener.local_addr()?);
    let backing = Backing::from_args(&args, &campaign).await?;

    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("create {}", args.data.display()))?;
    let clock = SystemClock::shared();
    // On the distributed backend the readings go where a fleet's would.
    let fleet_series = match &backing {
        Backing::Embedded => None,
        Backing::Distributed { config, .. } => {
            Some(crate::fleet::series_store(&config.redis_url, &config.namespace).await?)
        }
    };
    // Before the node is built: its parts take their metrics handles when they start.
    let monitor = crate::monitoring::install(
        clock.clone(),
        monitor_config,
        fleet_series.clone().map(|s| s as Arc<dyn hongbao_monitor::SeriesKv>),
    )?;
    let now = clock.now_unix_s();
    // The campaign's clock survives a restart on the same data: orders, coupons and release
    // waves keep meaning what they meant. A distributed demo starts on an empty namespace, so
    // its campaign starts anew.
    let (starts_at, clock_kept) = match backing {
        Backing::Embedded => campaign_start(&args.data, now)?,
        Backing::Distributed { .. } => (now - OPENED_AGO_S, false),
    };
    let mut campaign = campaign.with_start(starts_at);
    // The API's games must point at wherever the simulator really listens.
    for game in &mut campaign.games {
        game.idip_url = format!("http://{sim_addr}");
    }

    let report = synthetic::generate(&campaign, args.users, args.seed, &args.data)?;
    let sim = game_sim(&args, &campaign)?;

    let profiles = synthetic::load_profiles(&args.data, &campaign)?;
    let campaign = Arc::new(campaign);
    let mut node = open_node(&backing, &campaign, profiles, &args.data, clock).await?;
    node.monitor = Some(monitor);
    if let Some(fleet) = &mut node.fleet {
        fleet.series = fleet_series;
    }
    // The campaign page signs visitors in as any user and creates roles on the simulator: only
    // here, never on `serve`.
    node.router_options.demo = true;

    let keys_file = args.data.join(OPERATOR_KEYS_FILE);
    node.admin_auth = crate::admin::AdminAuth::signed(demo_operator_key(&keys_file)?);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let sim_task =
        tokio::spawn(hongbao_gamesim::serve(sim_listener, sim, stopped(stop_rx.clone())));
    let api_task =
        tokio::spawn(node.run(Some(api_listener), admin_listener, stopped(stop_rx.clone())));

    let sample = sample(&campaign, args.seed, args.users, now);
    let ticket = sign_ticket(&campaign.auth.ticket_keys[0], sample.user, now, 3600);
    let clock_line = match &backing {
        Backing::Embedded => {
            let opened = if clock_kept { "kept from the last run" } else { "new" };
            format!(
                "clock {opened}: {}; delete it to start over",
                args.data.join(CLOCK_FILE).display()
            )
        }
        Backing::Distributed { .. } => "a new namespace, a new clock".to_string(),
    };
    // The dashboard first: it is what shows the campaign moving.
    println!(
        "hongbao demo: dashboard http://{api_addr}/dashboard · campaign `{}` ({}) opened {} s \
         ago ({clock_line})",
        campaign.id,
        campaign.title,
        now - campaign.starts_at_unix_s,
    );
    println!(
        "  users       {} synthetic users (seed {}) in {}",
        report.users,
        args.seed,
        args.data.display()
    );
    if let Backing::Distributed { config, keep } = &backing {
        let at_exit = if *keep { "kept at exit (--keep)" } else { "removed at Ctrl-C" };
        println!(
            "  backend     Redis {} + JetStream {}, namespace {} ({at_exit})",
            config.redis_url, config.nats_url, config.namespace
        );
    }
    println!(
        "  game side   http://{sim_addr}/idip/v1/stats   (simulator of {} games)",
        campaign.games.len()
    );
    println!("  dashboard   http://{api_addr}/dashboard   (live; /metrics for Prometheus)");
    println!("  page        http://{api_addr}/   (the campaign page: sign in as any user)");
    println!("  api         http://{api_addr}/healthz");
    println!("  catalog     http://{api_addr}/static/catalog/manifest.json");
    println!(
        "  admin       http://{admin_addr}/admin/v1/delivery   (operators only: signed requests, see below)"
    );
    let load_task = (!args.no_load).then(|| start_load(&args, &campaign, api_addr));
    println!();
    println!("{PASTE_MARKER}");
    print!("{}", walkthrough(&sample, &ticket, api_addr, sim_addr));
    println!();
    print_operators(&campaign, admin_addr, &args.data, &backing);

    shutdown.await;
    if let Some(task) = load_task {
        task.abort();
    }
    let _ = stop_tx.send(true);
    let served = api_task.await.context("api task");
    let simulated = sim_task.await.context("simulator task");
    // Only once the node has stopped: nothing writes to the namespace any more.
    backing.finish(&campaign).await?;
    served??;
    simulated?.context("serve the simulator")?;
    Ok(())
}

/// The demo's node on its backing, with delivery workers.
async fn open_node(
    backing: &Backing,
    campaign: &Arc<Campaign>,
    profiles: hongbao_domain::ProfileTable,
    data: &Path,
    clock: hongbao_clock::SharedClock,
) -> Result<Node> {
    let delivery = hongbao_delivery::DispatcherConfig::default();
    let config = match backing {
        Backing::Embedded => {
            let store = crate::node::store_config(
                hongbao_store::embedded::BATCH_MAX_DEFAULT,
                crate::node::STORE_LINGER_MS_DEFAULT,
            );
            let role = NodeRole::All;
            return Node::open(campaign.clone(), profiles, data, role, delivery, store, clock);
        }
        Backing::Distributed { config, .. } => config,
    };
    let node =
        Node::open_distributed(campaign.clone(), profiles, config, NodeRole::All, delivery, clock)
            .await
            .and_then(|mut node| {
                // Where the simulator writes the game's log, as on the embedded backend.
                node.set_reconcile_dir(&data.join(crate::node::RECONCILE_DIR))?;
                Ok(node)
            });
    if node.is_err() {
        // Whatever it made before failing (the stream) goes too; the error says why.
        let _ = backing.finish(campaign).await;
    }
    node
}

/// Binds the simulator's, the API's and the admin listeners, each refusal naming its flag.
async fn bind_ports(args: &DemoArgs) -> Result<(TcpListener, TcpListener, TcpListener)> {
    let sim_addr = args.sim_addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
    let sim = TcpListener::bind(sim_addr)
        .await
        .with_context(|| format!("bind the game simulator on {sim_addr} (--sim-addr)"))?;
    let api = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("bind the API on {} (--addr)", args.addr))?;
    let admin = TcpListener::bind(args.admin_addr).await.with_context(|| {
        format!("bind the admin endpoints on {} (--admin-addr)", args.admin_addr)
    })?;
    Ok((sim, api, admin))
}

/// The game-side simulator, its delivery log where the node's reconciliation may read it.
fn game_sim(args: &DemoArgs, campaign: &Campaign) -> Result<Arc<GameSim>> {
    let reconcile_dir = args.data.join(crate::node::RECONCILE_DIR);
    std::fs::create_dir_all(&reconcile_dir)
        .with_context(|| format!("create {}", reconcile_dir.display()))?;
    let config = SimConfig {
        seed: args.seed,
        users: args.users,
        log_path: Some(reconcile_dir.join(GAME_LOG)),
        roles_log_path: Some(args.data.join(GAME_ROLES_LOG)),
        ..SimConfig::default()
    };
    GameSim::new(campaign, config).context("start the game simulator")
}

/// The gentle synthetic journey load that shows the campaign moving.
fn start_load(
    args: &DemoArgs,
    campaign: &Arc<Campaign>,
    api_addr: SocketAddr,
) -> tokio::task::JoinHandle<Result<hongbao_loadgen::Report, hongbao_loadgen::LoadError>> {
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
    println!(
        "  load        {DEMO_LOAD_PER_S} journeys/s (grab, list, claim, wait for delivery); \
         --no-load turns it off"
    );
    tokio::spawn(hongbao_loadgen::run(load))
}

/// The operators' commands, each with this demo's admin address, and what a restart keeps.
fn print_operators(campaign: &Campaign, admin_addr: SocketAddr, data: &Path, backing: &Backing) {
    let exe = std::env::current_exe()
        .ok()
        .map_or_else(|| "hongbao".to_string(), |p| p.display().to_string());
    let keys = data.join(OPERATOR_KEYS_FILE);
    let key = format!("--key-file {}", keys.display());
    println!(
        "Operators (loopback only; requests signed with this run's key in {}):",
        keys.display()
    );
    println!("  {exe} delivery status --admin http://{admin_addr} {key}");
    println!(
        "  {exe} delivery pause --admin http://{admin_addr} --game {} {key}",
        campaign.games[0].id
    );
    println!(
        "  {exe} reconcile --node http://{admin_addr} --game-log {GAME_LOG} {key}   \
         # a dry run against the game's log"
    );
    println!();
    match backing {
        Backing::Embedded => {
            println!(
                "Kept across restarts on {}: the campaign's clock, users, orders, delivery \
                 queues and the roles created on the simulator.",
                data.display()
            );
        }
        Backing::Distributed { config, .. } => {
            let ns = &config.namespace;
            println!(
                "Orders and delivery queues live in namespace {ns} (Redis keys {ns}:*, JetStream \
                 stream {ns}_{}); users and the simulator's roles in {}.",
                campaign.id,
                data.display()
            );
        }
    }
    println!("Ctrl-C stops.");
}

/// The line before the walkthrough's shell lines (tests find them by it).
pub const PASTE_MARKER: &str = "Paste these lines into bash, in order:";
/// This run's operator key, in the data directory (only its owner may read it).
const OPERATOR_KEYS_FILE: &str = "operator-keys.toml";

/// A new operator key with every scope for this run, written to `path` (mode 0600): the printed
/// operator commands sign with it. A new one each run, so a copied old file stops working.
fn demo_operator_key(path: &Path) -> Result<hongbao_auth::KeyRing> {
    use rand::{RngCore, SeedableRng};
    let mut secret = vec![0u8; 32];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut secret);
    let mut ring = hongbao_auth::KeyRing::default();
    ring.insert(hongbao_auth::OperatorKey {
        id: "demo".to_string(),
        secret: hongbao_auth::Secret::from_bytes(secret).context("a 32-byte secret")?,
        scopes: vec![
            hongbao_auth::Scope::Read,
            hongbao_auth::Scope::Operate,
            hongbao_auth::Scope::Admin,
        ],
    })
    .context("the demo key")?;
    write_private(path, &ring.to_toml())?;
    Ok(ring)
}

/// Writes `text` to `path`, readable and writable by the owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("create {}", path.display()))?;
    // `mode` applies only when the file is created: an older file keeps its permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restrict {}", path.display()))?;
    }
    file.write_all(text.as_bytes()).with_context(|| format!("write {}", path.display()))
}

/// The simulator's delivery log, in the node's reconciliation directory.
const GAME_LOG: &str = "game-delivery-log.jsonl";
/// The roles players created on the simulator, replayed when the demo restarts.
const GAME_ROLES_LOG: &str = "game-created-roles.jsonl";
/// The campaign's start (Unix seconds) of this data directory's demo.
const CLOCK_FILE: &str = "demo-campaign-start";

/// The demo campaign's start: the one this data directory's last run recorded, or a minute ago
/// (then recorded). Returns it and whether it was kept.
fn campaign_start(data: &Path, now: i64) -> Result<(i64, bool)> {
    let path = data.join(CLOCK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let start = text.trim().parse::<i64>().with_context(|| {
                format!("{} holds no Unix time; delete it to start over", path.display())
            })?;
            Ok((start, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let start = now - OPENED_AGO_S;
            std::fs::write(&path, format!("{start}\n"))
                .with_context(|| format!("write {}", path.display()))?;
            Ok((start, false))
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// The user the printed lines are for, and what they will meet.
struct Sample {
    user: u64,
    /// A game the user plays no role in: where the lines show how a new user creates one.
    unplayed_game: Option<String>,
}

/// The first synthetic user registered in at least three games whose release wave is open and
/// whose first listed gift the best role (highest level, the first of equals: what the printed
/// lines pick) can claim with a ticket of any age: the lines then work as pasted.
fn sample(campaign: &Campaign, seed: u64, users: u64, now: i64) -> Sample {
    let model = SynthModel::new(seed, users, campaign.games.len());
    let fits = |user: u64| {
        let profile = model.profile(user);
        if profile.registered.0.count_ones() < 3 || release::opens_at(campaign, user) > now {
            return false;
        }
        let roles: Vec<Vec<Role>> =
            campaign.games.iter().map(|g| model.roles(user, g.index)).collect();
        let subject = Subject { user, profile: &profile, ticket_issued_at_unix_s: now };
        let list = gift_list(
            campaign,
            &subject,
            |game| RoleContext::AnyOf(&roles[usize::from(game.0)]),
            |_| false,
            now,
        );
        let Some(first) = list.gifts.first() else { return false };
        let gift = &campaign.gifts[usize::from(first.0)];
        let best = roles[usize::from(gift.game.0)].iter().rev().max_by_key(|r| r.level);
        !gift.high_value && best.is_some_and(|role| eligibility::role_qualifies(gift, role))
    };
    let user = (FIRST_USER_ID..FIRST_USER_ID + users).find(|&u| fits(u)).unwrap_or(FIRST_USER_ID);
    let registered = model.profile(user).registered;
    let unplayed_game =
        campaign.games.iter().find(|g| !registered.contains(g.index)).map(|g| g.id.clone());
    Sample { user, unplayed_game }
}

/// The shell lines of the walkthrough: each runs in bash after the ones before it (curl and
/// python3 only), from a red packet to a delivered gift.
fn walkthrough(sample: &Sample, ticket: &str, api: SocketAddr, sim: SocketAddr) -> String {
    let user = sample.user;
    let json = |expr: &str| format!("python3 -c 'import json,sys; b=json.load(sys.stdin); {expr}'");
    let auth = "-H \"authorization: Bearer $T\"";
    let post = "-XPOST -H 'content-type: application/json'";
    let mut lines = vec![
        format!("# a login ticket for synthetic user {user} (1 h), as the login service issues"),
        format!("export T={ticket}"),
        "# grab a red packet from the swipe channel".to_string(),
        format!(
            "COUPON=$(curl -s {post} {auth} -d '{{\"channel\":\"swipe\"}}' http://{api}/v1/coupons | {}); echo $COUPON",
            json("print(b[\"coupon\"])")
        ),
        "# the gifts it may open, ranked for this user; take the first".to_string(),
        format!("LIST=$(curl -s {auth} http://{api}/v1/coupons/$COUPON/gifts); echo \"$LIST\""),
        format!("GIFT=$(echo \"$LIST\" | {})", json("print(b[\"gifts\"][0][\"gift_id\"])")),
        format!(
            "GAME=$(echo \"$LIST\" | {}); echo $GIFT in $GAME",
            json("print(b[\"gifts\"][0][\"game_id\"])")
        ),
        "# the user's roles in that game (the game side, IDIP); the claim names one".to_string(),
        format!("curl -s \"http://{sim}/idip/v1/roles?user={user}&game=$GAME\"; echo"),
        format!(
            "R=$(curl -s \"http://{sim}/idip/v1/roles?user={user}&game=$GAME\" | {}); read ZONE ROLE <<< \"$R\"",
            json(
                "r=max(b[\"roles\"], key=lambda r: r[\"level\"]); print(r[\"zone_id\"], r[\"role_id\"])"
            )
        ),
    ];
    if let Some(game) = &sample.unplayed_game {
        lines.push(format!(
            "# a new user has no role in {game}: it creates one (level 1) before claiming a new-user pack"
        ));
        lines.push(format!(
            "curl -s {post} -d '{{\"user\":{user},\"game\":\"{game}\",\"zone_id\":1}}' http://{sim}/idip/v1/roles; echo"
        ));
    }
    lines.extend([
        "# claim: 202 once durable and queued for delivery".to_string(),
        format!(
            "CLAIM=$(curl -s {post} {auth} -d '{{\"coupon\":\"'$COUPON'\",\"gift_id\":\"'$GIFT'\",\"zone_id\":'$ZONE',\"role_id\":'$ROLE'}}' http://{api}/v1/claims); echo $CLAIM"
        ),
        format!("ORDER=$(echo \"$CLAIM\" | {})", json("print(b[\"order_id\"])")),
        "# the order: queued, then delivered to the role in the game".to_string(),
        format!("curl -s {auth} http://{api}/v1/orders/$ORDER; echo"),
    ]);
    lines.iter().map(|l| format!("{l}\n")).collect()
}
