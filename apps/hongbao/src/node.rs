//! Long-running roles: the API node (`serve`) and the game-side simulator (`game-sim`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use hongbao_api::ApiState;
use hongbao_clock::SharedClock;
use hongbao_delivery::{Dispatcher, DispatcherConfig};
use hongbao_distributed::{BackendConfig, SWEEP_GRACE_MS_DEFAULT, SweeperConfig};
use hongbao_domain::{Campaign, ProfileTable};
use hongbao_gamesim::{GameSim, Outage, SimConfig};
use hongbao_gateway::{IdipClient, RoleCache, RoleCacheConfig};
use hongbao_jetstream::JetStreamConfig;
use hongbao_store::{CampaignBinding, EmbeddedConfig, EmbeddedStore};
use tokio::net::TcpListener;

use crate::{admin, load_campaign, parse_addr, synthetic};

#[derive(Args)]
pub struct ServeArgs {
    /// The campaign file (TOML; check it first with `hongbao campaign check`).
    #[arg(long)]
    pub config: PathBuf,
    /// Where the API listens (host:port; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Directory holding `profiles.bin` (from `hongbao gen` or the registration export): which
    /// games each user plays, for eligibility and ranking. Required unless --no-profiles.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Run without --profiles: every user counts as new in every game (eligibility and ranking
    /// differ from the real campaign's). For tests and rehearsals only.
    #[arg(long, conflicts_with = "profiles")]
    pub no_profiles: bool,
    /// This is a rehearsal: accept ticket and coupon keys marked `example = true` (published,
    /// dev-only keys anyone can sign with), which a real night refuses.
    #[arg(long)]
    pub rehearsal: bool,
    /// Data directory of the embedded store (grants, orders, delivery queues, send log).
    #[arg(long, default_value = "hongbao-data")]
    pub data: PathBuf,
    /// Redis of the distributed mode (e.g. redis://10.0.0.5:6379, or a Redis Cluster as
    /// redis+cluster://10.0.0.5:6379,10.0.0.6:6379): grabs, claims, orders, the role cache's
    /// shared level and the game leases live there instead of in --data. Needs --nats.
    #[arg(long, requires = "nats", conflicts_with = "data")]
    pub redis: Option<String>,
    /// NATS with JetStream of the distributed mode (e.g. nats://10.0.0.6:4222): the deliveries'
    /// durable queue. Needs --redis.
    #[arg(long, requires = "redis")]
    pub nats: Option<String>,
    /// Prefix of this campaign's keys in Redis and of its stream and consumers in JetStream
    /// (distributed mode), so campaigns, rehearsals and demos sharing servers never meet.
    #[arg(long, default_value = "hongbao", requires = "redis")]
    pub namespace: String,
    /// How long an order recorded by a claim may stay unpublished before a worker's sweeper
    /// publishes it, in ms (distributed mode): longer than a claim's own publish takes, so the
    /// sweeper meets only the orders of a node that died or lost JetStream in between.
    #[arg(long, default_value_t = SWEEP_GRACE_MS_DEFAULT, requires = "redis",
          value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub sweep_grace_ms: u64,
    /// Claim shards to split the campaign's claim state into (distributed mode; 1..=128): each
    /// is its own Redis Cluster slot, so one campaign's claims spread over that many masters.
    /// Fixed when the campaign's first claim state is written; later nodes may leave it out
    /// (they take the stored layout) and are refused if they ask for another. [default: the
    /// stored layout, or 1]
    #[arg(long, requires = "redis", value_parser = clap::value_parser!(u16).range(1..=128))]
    pub claim_shards: Option<u16>,
    /// The only directory `POST /admin/v1/reconcile` reads game logs from and writes reports
    /// into; request paths are relative to it, and paths outside it are refused
    /// [default: DATA/reconcile; a distributed node has none unless given, and its
    /// reconciliation then answers with the summary only].
    #[arg(long)]
    pub reconcile_dir: Option<PathBuf>,
    /// Operator endpoints (`/admin/v1/…`), every request signed with an operator key.
    #[arg(long, default_value = "127.0.0.1:8081", value_parser = parse_addr)]
    pub admin_addr: SocketAddr,
    /// The operator keys file (TOML: `[[keys]]` with id, secret, scopes; docs/SECURITY.md);
    /// several keys may be active at once, for rotation [default: the keys file's text in
    /// $HONGBAO_OPERATOR_KEYS].
    #[arg(long)]
    pub operator_keys: Option<PathBuf>,
    /// Serve the admin endpoints without signatures: anyone who reaches the admin address may
    /// pause delivery and reconcile. For tests only; a node without keys refuses to start
    /// otherwise.
    #[arg(long, conflicts_with = "operator_keys")]
    pub admin_unsigned: bool,
    /// Networks whose clients may connect to the admin address (CIDR, comma-separated; a bare
    /// address is itself); others are closed at accept, before a byte is read.
    #[arg(long, default_value = crate::admin_listener::ADMIN_ALLOW_DEFAULT)]
    pub admin_allow: crate::admin_listener::AllowList,
    /// mTLS on the admin address: the node's certificate chain (PEM). Needs --admin-tls-key and
    /// --admin-client-ca; clients must then present a certificate from that CA.
    #[arg(long, requires_all = ["admin_tls_key", "admin_client_ca"])]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --admin-tls-cert.
    #[arg(long, requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// The CA (PEM) that admin clients' certificates must chain to.
    #[arg(long, requires = "admin_tls_cert")]
    pub admin_client_ca: Option<PathBuf>,
    /// What this node runs: the API, the delivery workers, or both.
    #[arg(long, value_enum, default_value_t = NodeRole::All)]
    pub role: NodeRole,
    /// Multiplies every game's delivery capacity (e.g. 0.1 against a scaled-down game side).
    #[arg(long, default_value_t = 1.0)]
    pub capacity_scale: f64,
    /// Share of each game's capacity the delivery pacer uses, in (0, 1].
    #[arg(long, default_value_t = hongbao_delivery::PACING_HEADROOM_DEFAULT)]
    pub pacing_headroom: f64,
    /// Most store commands committed together with one fsync (group commit), 1 to 65536.
    #[arg(long, default_value_t = hongbao_store::embedded::BATCH_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=hongbao_store::embedded::BATCH_MAX_LIMIT as u64))]
    pub store_batch_max: usize,
    /// Longest wait of the store writer for a busy runtime to go idle before it commits a
    /// batch, in milliseconds (larger batches, fewer fsyncs under load); 0 never waits, at most
    /// 1000.
    #[arg(long, default_value_t = STORE_LINGER_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=STORE_LINGER_MS_MAX))]
    pub store_linger_ms: u64,
    /// Log one line per API request (method, route, status, latency in ms; never the ticket)
    /// under the target `hongbao::access`, at INFO.
    #[arg(long)]
    pub access_log: bool,
    /// Longest an API request may take before it is answered 408 `request_timeout`, in
    /// milliseconds.
    #[arg(long, default_value_t = hongbao_api::REQUEST_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Proxies (CIDRs or addresses, comma-separated) whose `X-Forwarded-For` names the client
    /// for the per-address rate limit; without it the socket's peer is the client.
    #[arg(long, value_name = "CIDR[,…]",
          value_parser = |s: &str| hongbao_api::limits::parse_trusted_proxies(s))]
    pub trusted_proxy: Option<Vec<ipnet::IpNet>>,
    /// Serve without the campaign's per-user and per-address request rates (`[limits]`): for
    /// benchmarks that measure what they cost.
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Most open API connections; more are closed on accept.
    #[arg(long, default_value_t = hongbao_api::CONNECTIONS_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub connections_max: usize,
    /// Most open API connections from one client address; more are closed on accept.
    #[arg(long, default_value_t = hongbao_api::CONNECTIONS_PER_ADDR_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub connections_per_addr_max: usize,
    /// Most API requests handled at once; more are answered 503 `overloaded`.
    #[arg(long, default_value_t = hongbao_api::IN_FLIGHT_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub in_flight_max: usize,
    /// Longest a connection may take to send a request head, and longest an idle keep-alive
    /// connection is held, in milliseconds; then it is closed.
    #[arg(long, default_value_t = hongbao_api::HEADER_READ_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// The monitor file (dashboard panels, funnel, alert thresholds) [default: `monitor.toml`
    /// beside --config if there is one, else the shipped config/monitor.toml].
    #[arg(long)]
    pub monitor: Option<PathBuf>,
}

/// File descriptors kept for everything but API connections: the store's files, the admin
/// listener and its connections, the game-side client's pool, logs.
pub const FILES_RESERVED: usize = 1_024;

/// `wanted` API connections, or fewer if the process's open-file limit (raised at start) could
/// not hold them beside [`FILES_RESERVED`]: past the file limit `accept` fails for everyone,
/// while the cap closes only the excess.
fn connections_within_file_limit(wanted: usize) -> usize {
    #[cfg(unix)]
    if let Some(files) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        let room =
            usize::try_from(files).unwrap_or(usize::MAX).saturating_sub(FILES_RESERVED).max(1);
        if wanted > room {
            tracing::warn!(
                wanted,
                room,
                files,
                "--connections-max lowered to fit the open-file limit"
            );
            return room;
        }
    }
    wanted
}

/// Largest `--store-linger-ms`: every claim of a busy node may wait this long on top of its
/// fsync, so more than a second is a mistake, not a setting.
pub const STORE_LINGER_MS_MAX: u64 = 1000;

/// Default `--store-linger-ms`: under the fsync's own 1–2.5 ms on this class of disk, so a
/// lingering batch waits at most about one more commit's time.
pub const STORE_LINGER_MS_DEFAULT: u64 = 2;

/// The store settings of a node: group commit up to `batch_max`, lingering up to `linger_ms`
/// for the runtime to go idle.
pub fn store_config(batch_max: usize, linger_ms: u64) -> EmbeddedConfig {
    let linger = (linger_ms > 0).then(|| hongbao_store::CommitLinger {
        max: std::time::Duration::from_millis(linger_ms),
        idle: crate::RUNTIME_IDLE.clone(),
    });
    EmbeddedConfig { batch_max, linger, ..EmbeddedConfig::default() }
}

/// The reconciliation directory under a node's data directory, unless `--reconcile-dir` says.
pub const RECONCILE_DIR: &str = "reconcile";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeRole {
    All,
    Api,
    Worker,
}

#[derive(Args)]
pub struct GameSimArgs {
    /// The campaign file: its games (ids, delivery capacities) are the simulated ones.
    #[arg(long)]
    pub config: PathBuf,
    /// Where the simulator listens (host:port; port 0 picks a free one).
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
    /// The roles players created (JSON lines), replayed at start so a restart keeps them.
    /// Without it created roles live in memory only.
    #[arg(long)]
    pub roles_log: Option<PathBuf>,
    /// Multiplies every game's delivery capacity.
    #[arg(long, default_value_t = 1.0)]
    pub capacity_scale: f64,
    /// Delay of every role look-up, in milliseconds (a real game side's typical answer time).
    #[arg(long, default_value_t = 30)]
    pub role_latency_ms: u64,
    /// Delay of every delivery, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub deliver_latency_ms: u64,
    /// Share of deliveries answered `error` and not applied.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of deliveries that hang past the caller's timeout (then applied or not).
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// How long a delivery picked by --timeout-rate hangs, in milliseconds.
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
            roles_log_path: self.roles_log.clone(),
        }
    }
}

pub async fn game_sim(args: GameSimArgs) -> Result<()> {
    let campaign = load_campaign(&args.config)?;
    let sim = GameSim::new(&campaign, args.sim_config()).context("start the game simulator")?;
    let shutdown = shutdown_signal();
    let listener =
        TcpListener::bind(args.addr).await.with_context(|| format!("bind {}", args.addr))?;
    println!("game-sim listening on http://{}", listener.local_addr()?);
    hongbao_gamesim::serve(listener, sim, shutdown).await.context("serve the simulator")
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let campaign = Arc::new(load_campaign(&args.config)?);
    refuse_example_keys(&campaign, &args.config, args.rehearsal)?;
    if args.profiles.is_none() && !args.no_profiles && args.role != NodeRole::Worker {
        bail!(
            "no --profiles: without the users' registrations every user counts as new in every \
             game, and gift lists and ranking come out wrong; give --profiles DIR (from \
             `hongbao gen` or the registration export), or --no-profiles to run without them"
        );
    }
    let profiles = match &args.profiles {
        Some(dir) => synthetic::load_profiles(dir, &campaign)?,
        None => ProfileTable::empty(campaign.games.iter().map(|g| g.id.clone()).collect()),
    };
    let store_config = store_config(args.store_batch_max, args.store_linger_ms);
    let delivery = DispatcherConfig {
        capacity_scale: args.capacity_scale,
        pacing_headroom: args.pacing_headroom,
        ..DispatcherConfig::default()
    };
    // Before anything is opened: a bad flag must not create the data directory or bump the
    // store's incarnation. (The dispatcher checks again when it starts.)
    delivery.validate().context("check the delivery settings")?;
    let monitor_config =
        crate::monitoring::load_config(args.monitor.as_deref(), Some(&args.config))?;
    let admin_auth = admin_auth(args.operator_keys.as_deref(), args.admin_unsigned)?;
    let tls = match (&args.admin_tls_cert, &args.admin_tls_key, &args.admin_client_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(crate::admin_tls::acceptor(cert, key, ca)?),
        _ => None,
    };
    let admin_access =
        crate::admin_listener::ListenerAccess { allow: args.admin_allow.clone(), tls };
    let shutdown = shutdown_signal();
    let clock = hongbao_clock::SystemClock::shared();
    // On a fleet every node writes its readings into, and answers queries from, the same store.
    let fleet_series = match &args.redis {
        Some(url) => Some(crate::fleet::series_store(url, &args.namespace).await?),
        None => None,
    };
    // Before the node is built: its parts take their metrics handles when they start.
    let monitor = crate::monitoring::install(
        clock.clone(),
        monitor_config,
        fleet_series.clone().map(|s| s as Arc<dyn hongbao_monitor::SeriesKv>),
    )?;
    let mut node = match (&args.redis, &args.nats) {
        (Some(redis), Some(nats)) => {
            let backend = BackendConfig {
                redis_url: redis.clone(),
                nats_url: nats.clone(),
                namespace: args.namespace.clone(),
                jetstream: JetStreamConfig::default(),
                sweeper: SweeperConfig {
                    grace_ms: args.sweep_grace_ms,
                    ..SweeperConfig::default()
                },
                claim_shards: args.claim_shards,
            };
            let mut node =
                Node::open_distributed(campaign, profiles, &backend, args.role, delivery, clock)
                    .await?;
            if let Some(fleet) = &mut node.fleet {
                fleet.series = fleet_series;
            }
            node
        }
        _ => Node::open(campaign, profiles, &args.data, args.role, delivery, store_config, clock)?,
    };
    if let Some(dir) = &args.reconcile_dir {
        node.set_reconcile_dir(dir)?;
    }
    node.monitor = Some(monitor);
    node.admin_auth = admin_auth;
    if let Some(fleet) = &node.fleet {
        node.admin_auth.nonces = fleet.nonces.clone();
    }
    node.admin_access = admin_access;
    node.router_options = hongbao_api::RouterOptions {
        access_log: args.access_log,
        request_timeout_ms: args.request_timeout_ms,
        // The demo-only routes (tickets for anyone) never on a real node.
        demo: false,
    };
    node.serve_options = hongbao_api::ServeOptions {
        connections_max: connections_within_file_limit(args.connections_max),
        connections_per_addr_max: args.connections_per_addr_max,
        in_flight_max: args.in_flight_max,
        header_read_timeout_ms: args.header_read_timeout_ms,
    };
    if args.no_rate_limits {
        node.rate_limits = None;
    } else {
        let trusted = args.trusted_proxy.clone().unwrap_or_default();
        node.rate_limits = Some(node.rate_limits_trusting(trusted));
    }
    let api = match args.role {
        NodeRole::Worker => None,
        NodeRole::All | NodeRole::Api => {
            let listener = TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("bind {}", args.addr))?;
            println!("api listening on http://{}", listener.local_addr()?);
            Some(listener)
        }
    };
    let admin = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("bind {}", args.admin_addr))?;
    let scheme = if node.admin_access.tls.is_some() { "https" } else { "http" };
    println!("admin listening on {scheme}://{}", admin.local_addr()?);
    let backend = match &args.redis {
        Some(_) => format!("distributed, namespace {}", args.namespace),
        None => args.data.display().to_string(),
    };
    tracing::info!(
        campaign = %node.state.campaign.id,
        role = ?args.role,
        %backend,
        admin = %admin.local_addr()?,
        "node serving"
    );
    node.run(api, admin, shutdown).await
}

/// The admin endpoints' keys: from `file`, else the environment; with neither, a refusal naming
/// the flags unless `unsigned` says to serve without signatures.
pub fn admin_auth(file: Option<&Path>, unsigned: bool) -> Result<admin::AdminAuth> {
    if unsigned {
        tracing::warn!("--admin-unsigned: the admin endpoints answer anyone who reaches them");
        return Ok(admin::AdminAuth::unsigned());
    }
    match crate::operator_client::load_ring(file)? {
        Some(ring) => {
            let ids: Vec<&str> = ring.keys().map(|k| k.id.as_str()).collect();
            tracing::info!(keys = ?ids, "operator keys loaded");
            Ok(admin::AdminAuth::signed(ring))
        }
        None => bail!(
            "no operator keys: the admin endpoints (pause delivery, reconcile) need signed \
             requests; give --operator-keys FILE (or the file's text in ${}), or pass \
             --admin-unsigned to serve them to anyone who reaches the admin address (tests only)",
            crate::operator_client::KEYS_ENV
        ),
    }
}

/// Refuses keys the campaign file marks as examples unless this is a rehearsal: a node that
/// signs with a published key accepts tickets and coupons anyone can make.
pub fn refuse_example_keys(campaign: &Campaign, file: &Path, rehearsal: bool) -> Result<()> {
    if rehearsal || campaign.auth.example_keys.is_empty() {
        return Ok(());
    }
    bail!(
        "{}: {} marked `example = true`: a published, dev-only key anyone can sign tickets and \
         coupons with; give the campaign its own keys (e.g. `secret_env`), or pass --rehearsal \
         if this is a rehearsal",
        file.display(),
        campaign.auth.example_keys.join(" and ")
    )
}

/// The API's state as a node builds it, but for its store: the users' profiles and the role
/// cache over the game side. The store (grants and claims) is [`ApiState::new`]'s in-memory one
/// until the caller replaces it (`bench in-memory` keeps it).
pub fn api_state(
    campaign: Arc<Campaign>,
    profiles: ProfileTable,
    idip: IdipClient,
    clock: SharedClock,
) -> ApiState {
    let roles = Arc::new(RoleCache::new(Arc::new(idip), None, RoleCacheConfig::default()));
    ApiState::new(campaign, roles, clock).with_profiles(Arc::new(profiles))
}

/// A node's parts, opened once: the API state, the store it owns and, when it delivers, the
/// delivery workers.
pub struct Node {
    pub state: ApiState,
    /// The embedded store, on an embedded node.
    pub(crate) store: Option<Arc<EmbeddedStore>>,
    /// The distributed backend's running parts, on a distributed node.
    pub(crate) fleet: Option<crate::fleet::FleetParts>,
    pub(crate) dispatcher: Option<Arc<Dispatcher>>,
    /// Canonical: the admin endpoint's reconciliation reads and writes only under it.
    pub(crate) reconcile_dir: PathBuf,
    /// How the API's router is built (access log, request timeout).
    pub router_options: hongbao_api::RouterOptions,
    /// The process's monitor: its routes join the API's, its sampler runs with the node.
    pub monitor: Option<Arc<hongbao_monitor::Monitor>>,
    /// Who may use the admin endpoints; by default nobody (no keys).
    pub admin_auth: admin::AdminAuth,
    /// Which machines may connect to the admin address (default: loopback), and over mTLS?
    pub admin_access: crate::admin_listener::ListenerAccess,
    /// How the API's listener holds connections and requests.
    pub serve_options: hongbao_api::ServeOptions,
    /// The campaign's request rates; `None` serves without them.
    pub rate_limits: Option<Arc<hongbao_api::RateLimits>>,
}

impl Node {
    /// Opens the store and starts the delivery workers (for `All` and `Worker`); must run inside
    /// the runtime.
    pub fn open(
        campaign: Arc<Campaign>,
        profiles: ProfileTable,
        data: &Path,
        role: NodeRole,
        delivery: DispatcherConfig,
        store_config: EmbeddedConfig,
        clock: SharedClock,
    ) -> Result<Node> {
        std::fs::create_dir_all(data).with_context(|| format!("create {}", data.display()))?;
        let store_dir = data.join("store");
        // One clock for the whole node: the store's expiry, the workers and the API.
        let store_config = EmbeddedConfig { clock: clock.clone(), ..store_config };
        let store = Arc::new(
            EmbeddedStore::open_with(&store_dir, store_config, CampaignBinding::of(&campaign))
                .with_context(|| format!("open the store in {}", store_dir.display()))?,
        );
        let idip = IdipClient::new(&campaign).context("build the game-side client")?;
        let dispatcher = match role {
            NodeRole::Api => None,
            NodeRole::All | NodeRole::Worker => {
                // The store's queues are the delivery-queue port; its binding carries the items.
                let queue = Arc::clone(&store);
                let dispatcher =
                    Dispatcher::start(&campaign, idip.clone(), queue, delivery, clock.clone())
                        .context("start the delivery workers")?;
                Some(Arc::new(dispatcher))
            }
        };
        let state = api_state(campaign, profiles, idip, clock)
            .with_grants(store.clone())
            .with_claims(store.clone());
        state.mark_store_open();
        let mut node = Node {
            state,
            store: Some(store),
            fleet: None,
            dispatcher,
            reconcile_dir: PathBuf::new(),
            router_options: hongbao_api::RouterOptions::default(),
            monitor: None,
            admin_auth: admin::AdminAuth::default(),
            admin_access: crate::admin_listener::ListenerAccess::default(),
            serve_options: hongbao_api::ServeOptions::default(),
            rate_limits: None,
        };
        node.rate_limits = Some(node.rate_limits_trusting(Vec::new()));
        node.set_reconcile_dir(&data.join(RECONCILE_DIR))?;
        Ok(node)
    }

    /// The campaign's request rates on this node's clock, believing `X-Forwarded-For` from
    /// `trusted` proxies only.
    pub fn rate_limits_trusting(&self, trusted: Vec<ipnet::IpNet>) -> Arc<hongbao_api::RateLimits> {
        let limits = &self.state.campaign.limits;
        Arc::new(hongbao_api::RateLimits::new(limits, trusted, self.state.clock.clone()))
    }

    /// Confines the admin endpoint's reconciliation to `dir` (created if missing).
    pub fn set_reconcile_dir(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        self.reconcile_dir =
            dir.canonicalize().with_context(|| format!("resolve {}", dir.display()))?;
        Ok(())
    }

    /// Serves until `shutdown`; then stops taking traffic, drains requests, stops the workers
    /// (in-flight deliveries are awaited and recorded) and closes the store.
    pub async fn run(
        self,
        api: Option<TcpListener>,
        admin: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Node {
            state,
            store,
            fleet,
            dispatcher,
            reconcile_dir,
            router_options,
            monitor,
            admin_auth,
            admin_access,
            serve_options,
            rate_limits,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let admin_router = admin::router(admin::AdminState {
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            fleet: fleet.as_ref().map(|f| f.reconcile.clone()),
            campaign: state.campaign.clone(),
            clock: state.clock.clone(),
            reconcile_dir,
            auth: admin_auth,
        });
        let admin_task = tokio::spawn(crate::admin_listener::serve(
            admin,
            admin_router,
            admin_access,
            stopped(),
        ));
        let monitor_tasks = monitor.clone().map(|monitor| {
            let readers = crate::monitoring::read_parts(
                state.clock.clone(),
                state.clone(),
                store.clone(),
                dispatcher.clone(),
                stopped(),
            );
            (tokio::spawn(monitor.run(stopped())), tokio::spawn(readers))
        });
        let api_task = api.map(|listener| {
            state.set_ready(true);
            let extra = api_extra(monitor);
            let mut router = hongbao_api::router_with_extra(state.clone(), router_options, extra);
            if let Some(limits) = &rate_limits {
                router = hongbao_api::with_rate_limits(router, Arc::clone(limits));
            }
            tokio::spawn(hongbao_api::serve_with(listener, router, serve_options, stopped()))
        });
        // Keeps the limiters' keyed state bounded; stops with the node.
        let limits_task = rate_limits.map(|limits| tokio::spawn(limits.maintain(stopped())));
        shutdown.await;
        state.set_ready(false);
        let _ = stop_tx.send(true);
        let mut served = Ok(());
        if let Some(task) = api_task {
            served = task.await.context("api task")?.context("serve the API");
        }
        admin_task.await.context("admin task")?.context("serve the admin endpoints")?;
        if let Some((sampler, readers)) = monitor_tasks {
            sampler.await.context("monitor sampler task")?;
            readers.await.context("monitor readers task")?;
        }
        if let Some(task) = limits_task {
            task.await.context("rate-limit maintenance task")?;
        }
        let on_fleet = fleet.is_some();
        let workers_and_fleet = async move {
            if let Some(dispatcher) = dispatcher {
                match Arc::try_unwrap(dispatcher) {
                    Ok(d) => d.shutdown().await,
                    Err(_) => {
                        tracing::warn!(
                            "delivery workers still referenced at shutdown; dropping them"
                        )
                    }
                }
            }
            drop(state);
            if let Some(fleet) = fleet {
                fleet.shutdown().await;
            }
        };
        if on_fleet {
            stop_fleet_parts(workers_and_fleet).await;
        } else {
            workers_and_fleet.await;
        }
        // Handlers are gone once serving returns; if a straggler still holds the store, its
        // Drop closes it the same way when released.
        if let Some(Ok(store)) = store.map(Arc::try_unwrap) {
            tokio::task::spawn_blocking(move || store.close())
                .await
                .context("close the store")?
                .context("close the store")?;
        }
        served
    }
}

/// Longest a distributed node waits, once told to stop, for its delivery workers, sweeper,
/// publisher and series writer to stop cleanly. They wait on Redis and NATS (a call's outcome
/// recorded, a pass finished, a last second written), and with those gone each wait runs
/// through reconnection attempts; past this the parts are dropped as a crash would drop them
/// (a leased order comes back after its ack wait; a call that reached the game is answered
/// `duplicate` when redelivered).
pub const FLEET_STOP_GRACE_MS: u64 = 10_000;

/// Awaits `parts` stopping for at most [`FLEET_STOP_GRACE_MS`].
async fn stop_fleet_parts(parts: impl Future<Output = ()>) {
    let grace = std::time::Duration::from_millis(FLEET_STOP_GRACE_MS);
    if tokio::time::timeout(grace, parts).await.is_err() {
        tracing::warn!(
            "delivery workers, sweeper or series writer not stopped {FLEET_STOP_GRACE_MS} ms \
             after the signal (Redis or NATS not answering?); dropped"
        );
    }
}

/// What the API listener serves besides the API's own routes: the monitor's routes (when the
/// node runs one) with their part of the contract, and the operator API's part (served on the
/// admin listener, described in the same `/openapi.json`).
pub fn api_extra(monitor: Option<Arc<hongbao_monitor::Monitor>>) -> hongbao_api::Extra {
    use utoipa::OpenApi;
    let (router, openapi) = match monitor {
        Some(monitor) => (
            hongbao_monitor::http::routes(monitor),
            Some(hongbao_monitor::http::MonitorApi::openapi()),
        ),
        None => (axum::Router::new(), None),
    };
    hongbao_api::Extra { router, openapi, elsewhere: Some(admin::openapi()) }
}

/// Completes on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        // Registered now, not at the first await: a signal that arrives between the listening
        // line and the serve loop still stops the node gracefully instead of killing it.
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            async fn received(signal: Option<Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = received(term) => {},
                () = received(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
