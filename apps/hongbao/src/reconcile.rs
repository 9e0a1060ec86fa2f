//! Reconciliation from the CLI (`hongbao reconcile`, over a stopped node's store, over a
//! fleet's Redis and JetStream with `--redis --nats`, or with `--node` through a running node's
//! admin address, signed), from the admin address (`POST /admin/v1/reconcile`, over the running
//! node's store handle or its fleet's), and the benchmark's data (`hongbao bench
//! seed-orders`). The engine is `hongbao-reconcile`; the backend is chosen once, and every
//! path below runs over the engine's `Ledger` trait.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hongbao_clock::{Clock, SystemClock};

use anyhow::{Context, Result, bail};
use axum::http::StatusCode;
use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hongbao_api::ApiError;
use hongbao_distributed::{BackendConfig, DistributedLedger, SweeperConfig};
use hongbao_domain::{Campaign, Channel, Coupon, RoleId, ZoneId};
use hongbao_jetstream::JetStreamConfig;
use hongbao_queue::{DeliveryQueue, FinalState, Finish, QueueError};
use hongbao_reconcile::{Ledger, Options, ReconcileError, ReconcileRequest, Summary};
use hongbao_store::{
    CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest, EmbeddedConfig, EmbeddedStore,
    LEASE_BATCH_MAX, LedgerRepair, StoreError,
};

use crate::load_campaign;

#[derive(Args)]
pub struct ReconcileArgs {
    /// The campaign file the node serves (not needed with --node).
    #[arg(long, required_unless_present = "node")]
    pub config: Option<PathBuf>,
    /// The node's data directory (its store is `DIR/store`); the node must be stopped — while
    /// it runs, use --node.
    #[arg(long, default_value = "hongbao-data")]
    pub data: PathBuf,
    /// A fleet's Redis (distributed mode, e.g. redis://10.0.0.5:6379): reconcile its orders,
    /// send log and JetStream stream instead of a --data store. The fleet keeps running; the
    /// pass re-checks what moves under it. Needs --nats.
    #[arg(long, requires = "nats", conflicts_with = "node")]
    pub redis: Option<String>,
    /// The fleet's NATS with JetStream (e.g. nats://10.0.0.6:4222). Needs --redis.
    #[arg(long, requires = "redis")]
    pub nats: Option<String>,
    /// The fleet's namespace (its `serve --namespace`).
    #[arg(long, default_value = "hongbao", requires = "redis")]
    pub namespace: String,
    /// A running node's admin address (URL): the pass runs there (`POST /admin/v1/reconcile`,
    /// signed with --key-file); --game-log and --out are then relative to the node's
    /// --reconcile-dir.
    #[arg(long, conflicts_with_all = ["apply_list", "deliver_within_s", "config"])]
    pub node: Option<String>,
    #[command(flatten)]
    pub key: crate::operator_client::KeyArgs,
    /// Only orders created at or after this time (Unix ms or RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<u64>,
    /// Only orders created before this time (Unix ms or RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<u64>,
    /// The game side's delivery log (JSON lines: serial, game, user, applied_at_ms), e.g. the
    /// simulator's `--log`. Without it, losses at the game cannot be seen.
    #[arg(long)]
    pub game_log: Option<PathBuf>,
    /// The game log is complete up to this time (default: now). Set it for a copy taken
    /// earlier, or deliveries after the copy look lost.
    #[arg(long, value_parser = parse_time)]
    pub game_log_until: Option<u64>,
    /// Where the files go (default: DATA/reconcile/<unix ms>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Requeue the resend list and record what the game has as delivered (without it: a dry
    /// run that reports what it would do and changes nothing).
    #[arg(long)]
    pub apply: bool,
    /// `--apply` refuses to deliver again more than this share of the delivered orders
    /// (0 to 1); a larger share usually means the wrong game log, not lost gifts.
    #[arg(long, default_value_t = hongbao_reconcile::MAX_REQUEUE_SHARE_DEFAULT)]
    pub max_requeue_share: f64,
    /// Apply even when a guard refuses (the game log does not cover the deliveries, or the
    /// share above is exceeded): only after reviewing the dry run's resend list.
    #[arg(long, requires = "apply")]
    pub force: bool,
    /// Orders waiting and due longer than this are listed as stuck.
    #[arg(long, default_value_t = 600)]
    pub stuck_after_s: u64,
    /// Resend dead orders too (not done by default: dead means a permanent refusal).
    #[arg(long)]
    pub include_dead: bool,
    /// Resend expired orders too, with a new deadline.
    #[arg(long)]
    pub include_expired: bool,
    /// A resent order's new deadline, from now (default: the campaign's delivery deadline).
    #[arg(long)]
    pub deliver_within_s: Option<u64>,
    /// Instead of a pass: requeue the order ids of this reviewed `resend.jsonl`.
    #[arg(long, conflicts_with_all = ["apply", "game_log"])]
    pub apply_list: Option<PathBuf>,
    /// Print the summary as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Records per sorted run of the game log (memory: 40 bytes each).
    #[arg(long, default_value_t = hongbao_reconcile::SORT_RUN_LEN_DEFAULT, hide = true)]
    pub sort_run_len: usize,
    /// Where the game log's sorted runs go (default: the system's temporary directory).
    #[arg(long, hide = true)]
    pub temp_dir: Option<PathBuf>,
}

/// Unix milliseconds, or an RFC 3339 time such as `2027-02-10T00:00:00+08:00`.
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is neither Unix ms nor an RFC 3339 time ({e})"))?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("`{text}` is before 1970"))
}

/// The message the embedded store's error carries when another process holds its lock.
const LOCKED_MARKER: &str = "is open in another process";

/// Opens a stopped node's store, or says that the node runs.
fn open_store(campaign: &Campaign, data: &Path) -> Result<EmbeddedStore> {
    let dir = data.join("store");
    if !dir.exists() {
        bail!("no store in {} (is --data the node's data directory?)", data.display());
    }
    match EmbeddedStore::open_with(&dir, EmbeddedConfig::default(), CampaignBinding::of(campaign)) {
        Ok(store) => Ok(store),
        Err(StoreError::Unavailable(message)) if message.contains(LOCKED_MARKER) => bail!(
            "the node is running: use the admin endpoint (POST /admin/v1/reconcile on its \
             --admin-addr); {} is locked by it",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("open the store in {}", dir.display())),
    }
}

fn game_ids(campaign: &Campaign) -> Vec<String> {
    campaign.games.iter().map(|g| g.id.clone()).collect()
}

/// Connects to a fleet's Redis and stream for reconciliation (no workers, no publisher).
async fn open_fleet(
    campaign: &Campaign,
    redis: &str,
    nats: &str,
    namespace: &str,
) -> Result<DistributedLedger> {
    let config = BackendConfig {
        redis_url: redis.to_string(),
        nats_url: nats.to_string(),
        namespace: namespace.to_string(),
        // The fleet's own settings (`serve` uses the defaults): opening updates nothing.
        jetstream: JetStreamConfig::default(),
        sweeper: SweeperConfig::default(),
        claim_shards: None,
    };
    DistributedLedger::connect(&config, campaign)
        .await
        .with_context(|| format!("connect to the fleet (--redis {redis}, --nats {nats})"))
}

/// `hongbao reconcile`: a pass over a stopped node's store or a fleet's, at `clock`'s time.
pub async fn run(args: ReconcileArgs, clock: &dyn Clock) -> Result<()> {
    if let Some(node) = &args.node {
        return on_node(&args, node).await;
    }
    let config = args.config.as_deref().context("--config is needed without --node")?;
    let campaign = load_campaign(config)?;
    let opening = Instant::now();
    if let (Some(redis), Some(nats)) = (&args.redis, &args.nats) {
        let ledger = open_fleet(&campaign, redis, nats, &args.namespace).await?;
        eprintln!("connected to the fleet in {:.1} s", opening.elapsed().as_secs_f64());
        return run_over(&ledger, &campaign, &args, clock.now_ms()).await;
    }
    let store = open_store(&campaign, &args.data)?;
    eprintln!("opened the store in {:.1} s", opening.elapsed().as_secs_f64());
    let result = run_over(&store, &campaign, &args, clock.now_ms()).await;
    tokio::task::spawn_blocking(move || store.close())
        .await
        .context("close the store")?
        .context("close the store")?;
    result
}

/// A pass, or `--apply-list`, over whichever backend was opened.
async fn run_over<L: Ledger>(
    store: &L,
    campaign: &Campaign,
    args: &ReconcileArgs,
    now: u64,
) -> Result<()> {
    let deliver_within_ms =
        args.deliver_within_s.unwrap_or(campaign.delivery_deadline_s).saturating_mul(1000);
    match &args.apply_list {
        Some(list) => apply_list(store, list, deliver_within_ms, now).await,
        None => pass(store, campaign, args, deliver_within_ms, now).await,
    }
}

/// `hongbao reconcile --node URL`: the same pass on a running node, through its signed admin
/// endpoint; prints the node's summary as JSON.
async fn on_node(args: &ReconcileArgs, node: &str) -> Result<()> {
    let body = serde_json::json!({
        "apply": args.apply,
        "force": args.force,
        "max_requeue_share": args.max_requeue_share,
        "game_log": args.game_log,
        "game_log_until_ms": args.game_log_until,
        "out": args.out,
        "from_ms": args.from,
        "to_ms": args.to,
        "stuck_after_s": args.stuck_after_s,
        "include_dead": args.include_dead,
        "include_expired": args.include_expired,
    });
    let url = format!("{}/admin/v1/reconcile", node.trim_end_matches('/'));
    let (status, answer) =
        crate::operator_client::call(&args.key, reqwest::Method::POST, &url, Some(&body)).await?;
    if !(200..300).contains(&status) {
        bail!(
            "{status} {}: {}",
            answer["error"]["code"].as_str().unwrap_or("error"),
            answer["error"]["message"].as_str().unwrap_or("unknown error")
        );
    }
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

async fn pass<L: Ledger>(
    store: &L,
    campaign: &Campaign,
    args: &ReconcileArgs,
    deliver_within_ms: u64,
    now: u64,
) -> Result<()> {
    let mut options = Options::new(now, game_ids(campaign), deliver_within_ms);
    options.from_ms = args.from;
    options.to_ms = args.to;
    options.game_log = args.game_log.clone();
    options.game_log_until_ms = args.game_log_until;
    options.stuck_after_ms = args.stuck_after_s.saturating_mul(1000);
    options.include_dead = args.include_dead;
    options.include_expired = args.include_expired;
    options.apply = args.apply;
    options.guards =
        hongbao_reconcile::Guards { max_requeue_share: args.max_requeue_share, force: args.force };
    options.out =
        Some(args.out.clone().unwrap_or_else(|| args.data.join("reconcile").join(now.to_string())));
    options.temp_dir = args.temp_dir.clone();
    options.sort_run_len = args.sort_run_len;
    let summary = match hongbao_reconcile::reconcile(store, &options).await {
        Err(ReconcileError::Refused(refusal)) => {
            bail!("--apply refused, nothing changed: {refusal}; --force applies anyway")
        }
        other => other.context("reconcile")?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    if let Some(tally) = &summary.applied {
        anyhow::ensure!(tally.errors == 0, "{} repairs failed (see the files)", tally.errors);
    }
    Ok(())
}

async fn apply_list<L: LedgerRepair>(
    store: &L,
    list: &Path,
    deliver_within_ms: u64,
    now: u64,
) -> Result<()> {
    let ids = hongbao_reconcile::read_order_ids(list)
        .with_context(|| format!("read the resend list {}", list.display()))?;
    let tally =
        hongbao_reconcile::requeue_list(store, ids, now, now.saturating_add(deliver_within_ms))
            .await;
    println!("{}", serde_json::to_string_pretty(&tally)?);
    anyhow::ensure!(tally.errors == 0, "{} requeues failed", tally.errors);
    Ok(())
}

/// One pass at a time per node: two would race each other's repairs (harmlessly, but their
/// reports would disagree) and double the load on the store.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a node's admin endpoint reconciles: its embedded store, or its fleet's Redis and
/// stream.
#[derive(Clone)]
pub enum NodeLedger {
    Embedded(Arc<EmbeddedStore>),
    Fleet(Arc<DistributedLedger>),
}

/// `POST /admin/v1/reconcile`: a pass over the running node's store, or on a distributed node
/// over the fleet's (the same engine as the CLI; the workers keep delivering while it runs, and
/// the pass re-checks what moved).
pub async fn admin(
    ledger: &NodeLedger,
    campaign: &Campaign,
    reconcile_dir: &Path,
    req: ReconcileRequest,
    clock: &dyn Clock,
) -> Result<Summary, ApiError> {
    match ledger {
        NodeLedger::Embedded(store) => admin_over(store, campaign, reconcile_dir, req, clock).await,
        NodeLedger::Fleet(fleet) => admin_over(fleet, campaign, reconcile_dir, req, clock).await,
    }
}

async fn admin_over<L: Ledger>(
    store: &Arc<L>,
    campaign: &Campaign,
    reconcile_dir: &Path,
    req: ReconcileRequest,
    clock: &dyn Clock,
) -> Result<Summary, ApiError> {
    if reconcile_dir.as_os_str().is_empty() && (req.game_log.is_some() || req.out.is_some()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_reconcile_dir",
            "this node has no reconciliation directory (serve --reconcile-dir): it reads no \
             game log and writes no report; ask without game_log and out for the summary only",
        ));
    }
    let game_log = req.game_log.as_deref().map(|p| confine(reconcile_dir, p)).transpose()?;
    let out = req.out.as_deref().map(|p| confine(reconcile_dir, p)).transpose()?;
    let Ok(_running) = RUNNING.try_lock() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "reconcile_running",
            "a reconciliation is already running on this node",
        ));
    };
    let now = clock.now_ms();
    let mut options =
        Options::new(now, game_ids(campaign), campaign.delivery_deadline_s.saturating_mul(1000));
    options.apply = req.apply;
    options.guards = hongbao_reconcile::Guards {
        max_requeue_share: req
            .max_requeue_share
            .unwrap_or(hongbao_reconcile::MAX_REQUEUE_SHARE_DEFAULT),
        force: req.force,
    };
    options.game_log = game_log;
    options.game_log_until_ms = req.game_log_until_ms;
    options.out = out;
    options.from_ms = req.from_ms;
    options.to_ms = req.to_ms;
    if let Some(s) = req.stuck_after_s {
        options.stuck_after_ms = s.saturating_mul(1000);
    }
    options.include_dead = req.include_dead;
    options.include_expired = req.include_expired;
    // On a blocking thread with its own `block_on`: a pass is minutes of CPU at 10M orders, and
    // the store's scans do not suspend; the API's and the workers' async threads stay free.
    let handle = tokio::runtime::Handle::current();
    let store: Arc<L> = Arc::clone(store);
    let pass = tokio::task::spawn_blocking(move || {
        handle.block_on(hongbao_reconcile::reconcile(&store, &options))
    });
    let result = pass.await.map_err(|e| ApiError::internal(format!("the pass failed: {e}")))?;
    result.map_err(|e| match e {
        ReconcileError::GameLog { .. } | ReconcileError::InvalidOptions(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_reconcile_request", e.to_string())
        }
        ReconcileError::Refused(refusal) => ApiError::new(
            StatusCode::CONFLICT,
            refusal.code(),
            format!("apply refused, nothing changed: {refusal}; `\"force\": true` applies anyway"),
        ),
        ReconcileError::Store(StoreError::Unavailable(_)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
        }
        e => ApiError::internal(e.to_string()),
    })
}

/// `requested` resolved under `dir` (canonical): relative paths are taken from it, `..` is
/// refused, and symbolic links are followed before the check, so no path leads outside it.
fn confine(dir: &Path, requested: &Path) -> Result<PathBuf, ApiError> {
    let refuse = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "path_outside_reconcile_dir",
            format!(
                "{} is outside the node's reconciliation directory {} (its --reconcile-dir); \
                 give a path relative to it",
                requested.display(),
                dir.display()
            ),
        )
    };
    if requested.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(refuse());
    }
    let joined = dir.join(requested);
    // The longest part that exists, resolved; the rest (a report directory still to be made)
    // holds no `..` and no link, so it cannot leave.
    let mut existing = joined.as_path();
    let mut missing = Vec::new();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(path) => break path,
            Err(_) => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(refuse());
                };
                missing.push(name.to_os_string());
                existing = parent;
            }
        }
    };
    let resolved = missing.iter().rev().fold(resolved, |path, name| path.join(name));
    if resolved.starts_with(dir) { Ok(resolved) } else { Err(refuse()) }
}

// --- benchmark data ------------------------------------------------------------------------

#[derive(Args)]
pub struct SeedArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// A new data directory: the store goes to DIR/store, the game log to DIR/game.log.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub orders: u64,
    /// Share of the orders left queued (accepted, not delivered).
    #[arg(long, default_value_t = 0.01)]
    pub queued_share: f64,
    /// Share of the delivered orders the game log lacks (lost at the game).
    #[arg(long, default_value_t = 0.001)]
    pub lost_share: f64,
    /// Share of the queued orders the game log has (a worker died before recording them).
    #[arg(long, default_value_t = 0.1)]
    pub unrecorded_share: f64,
}

/// Claims in flight while seeding: enough to fill the writer's group commits.
const SEED_CLAIMS_IN_FLIGHT: usize = 4_096;

/// SplitMix64: a fixed, well-mixed function of the order number, so the shares are exact
/// enough and the same on every run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn draw(n: u64, salt: u64) -> f64 {
    (mix(n ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `hongbao bench seed-orders`: N orders straight through the store API (claims, leases,
/// finishes: the same writes a node makes), most delivered, and the matching game log in
/// delivery-time order, with small known shares lost at the game and unrecorded by us.
pub async fn seed_orders(args: SeedArgs) -> Result<()> {
    for (name, share) in [
        ("--queued-share", args.queued_share),
        ("--lost-share", args.lost_share),
        ("--unrecorded-share", args.unrecorded_share),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&share), "{name} must be within 0..=1");
    }
    let campaign = load_campaign(&args.config)?;
    let store_dir = args.data.join("store");
    anyhow::ensure!(
        !store_dir.exists(),
        "{} exists: seed a new data directory",
        store_dir.display()
    );
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("create {}", args.data.display()))?;
    let store = EmbeddedStore::open_with(
        &store_dir,
        EmbeddedConfig::default(),
        CampaignBinding::of(&campaign),
    )
    .with_context(|| format!("open the store in {}", store_dir.display()))?;
    let log_path = args.data.join("game.log");
    let mut log = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?,
    );
    let items = items_json(&campaign);
    let started = Instant::now();
    let queued = |n: u64| draw(n, 1) < args.queued_share;
    let mut stats = Seeded::default();

    // 1. Orders to deliver, then their deliveries (game log in delivery order).
    let claimed = claim_range(&store, &campaign, (0..args.orders).filter(|n| !queued(*n))).await?;
    eprintln!("claimed {claimed} orders in {:.1} s", started.elapsed().as_secs_f64());
    deliver_seeded(&store, &campaign, &items, args.lost_share, &mut log, &mut stats).await?;
    eprintln!("delivered {} orders in {:.1} s", stats.delivered, started.elapsed().as_secs_f64());

    // 2. Orders left queued; a share of them the game already has.
    let queued_n = claim_range(&store, &campaign, (0..args.orders).filter(|n| queued(*n))).await?;
    for n in (0..args.orders).filter(|n| queued(*n) && draw(*n, 3) < args.unrecorded_share) {
        let id = seed_coupon(&campaign, n);
        let order = store
            .order(&id.0)
            .await?
            .with_context(|| format!("seeded order {} is missing", id.0))?;
        write_log_line(&mut log, &campaign, &items, &order, SystemClock.now_ms())?;
        stats.unrecorded += 1;
    }
    std::io::Write::flush(&mut log).context("write the game log")?;
    tokio::task::spawn_blocking(move || store.close()).await?.context("close the store")?;
    println!(
        "seeded {} orders in {:.1} s: {} delivered ({} lost at the game), {} queued ({} in the game log: unrecorded); store {}, game log {}",
        claimed + queued_n,
        started.elapsed().as_secs_f64(),
        stats.delivered,
        stats.lost,
        queued_n,
        stats.unrecorded,
        store_dir.display(),
        log_path.display()
    );
    Ok(())
}

/// Each gift's items as the game's log writes them.
fn items_json(campaign: &Campaign) -> Vec<String> {
    campaign
        .gifts
        .iter()
        .map(|g| {
            let items: Vec<hongbao_gamesim::DeliveryItem> = g
                .items
                .iter()
                .map(|i| hongbao_gamesim::DeliveryItem { item: i.item.clone(), count: i.count })
                .collect();
            serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
        })
        .collect()
}

/// Leases and finishes every queued order as delivered, logging each in the game's log but a
/// `lost_share` of them (the game applied them and lost the record).
async fn deliver_seeded(
    store: &EmbeddedStore,
    campaign: &Campaign,
    items: &[String],
    lost_share: f64,
    log: &mut impl std::io::Write,
    stats: &mut Seeded,
) -> Result<()> {
    loop {
        let mut leased_any = false;
        for game in &campaign.games {
            let now = SystemClock.now_ms();
            let entries = store.lease(game.index, LEASE_BATCH_MAX, now).await?;
            leased_any |= !entries.is_empty();
            let delivered =
                || Finish { state: FinalState::Delivered { duplicate: false }, at_ms: now };
            let mut finishing: FuturesUnordered<_> = entries
                .into_iter()
                .map(|e| async move { (e.lease.order.clone(), store.finish(e, delivered()).await) })
                .collect();
            while let Some((order, finished)) = finishing.next().await {
                match finished {
                    Ok(()) => {}
                    Err(QueueError::LeaseLost(id)) => bail!("a fresh lease of {id} was lost"),
                    Err(error) => return Err(error).context("finish a seeded delivery"),
                }
                stats.delivered += 1;
                let n = order.user - SEED_FIRST_USER;
                if draw(n, 2) < lost_share {
                    stats.lost += 1;
                    continue;
                }
                write_log_line(log, campaign, items, &order, now.saturating_sub(1))?;
            }
        }
        if !leased_any {
            return Ok(());
        }
    }
}

#[derive(Default)]
struct Seeded {
    delivered: u64,
    lost: u64,
    unrecorded: u64,
}

/// Seeded users are `SEED_FIRST_USER + n`: one order each.
const SEED_FIRST_USER: u64 = 1_000_000_000;

/// The n-th seeded order's id and claim.
fn seed_coupon(campaign: &Campaign, n: u64) -> (hongbao_domain::OrderId, Coupon) {
    let coupon = Coupon {
        campaign_id: campaign.id.clone(),
        user: SEED_FIRST_USER + n,
        channel: Channel::Swipe,
        serial: 1,
        expires_at_unix_s: i64::MAX,
    };
    (hongbao_domain::OrderId::derive(&campaign.id, coupon.user, &coupon.id()), coupon)
}

async fn claim_range<L: ClaimLedger>(
    store: &L,
    campaign: &Campaign,
    numbers: impl Iterator<Item = u64>,
) -> Result<u64> {
    let mut in_flight = FuturesUnordered::new();
    let mut claimed = 0u64;
    let settle = |outcome: Result<ClaimOutcome, StoreError>| -> Result<()> {
        match outcome? {
            ClaimOutcome::Accepted(_) => Ok(()),
            other => bail!("a seeded claim was not accepted: {other:?}"),
        }
    };
    for n in numbers {
        if in_flight.len() >= SEED_CLAIMS_IN_FLIGHT
            && let Some(outcome) = in_flight.next().await
        {
            settle(outcome)?;
        }
        let gift = &campaign.gifts[(n % campaign.gifts.len() as u64) as usize];
        let (_, coupon) = seed_coupon(campaign, n);
        let mut req = ClaimRequest::new(
            campaign,
            gift,
            coupon,
            ZoneId(1),
            RoleId(n + 1),
            SystemClock.now_ms(),
        );
        // Benchmark data, not a campaign: no stock, per-user or high-value limit gets in the way.
        req.stock = u64::MAX;
        req.per_user_limit = u32::MAX;
        req.high_value = None;
        in_flight.push(store.claim(req));
        claimed += 1;
    }
    while let Some(outcome) = in_flight.next().await {
        settle(outcome)?;
    }
    Ok(claimed)
}

fn write_log_line(
    log: &mut impl std::io::Write,
    campaign: &Campaign,
    items: &[String],
    order: &hongbao_domain::Order,
    applied_at_ms: u64,
) -> Result<()> {
    let gift = campaign.gifts.iter().position(|g| g.id == order.gift_id).unwrap_or(0);
    writeln!(
        log,
        r#"{{"serial":"{}","game":"{}","user":{},"zone_id":{},"role_id":{},"items":{},"applied_at_ms":{}}}"#,
        order.id,
        order.game_id,
        order.user,
        order.zone_id,
        order.role_id,
        items.get(gift).map_or("[]", String::as_str),
        applied_at_ms
    )
    .context("write the game log")
}

#[cfg(test)]
mod tests {
    use hongbao_store::LedgerScan;

    use super::*;

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        assert_eq!(parse_time("1800000000000"), Ok(1_800_000_000_000));
        assert_eq!(parse_time("2027-01-15T08:00:00Z"), Ok(1_800_000_000_000));
        assert_eq!(parse_time("2027-01-15T16:00:00+08:00"), Ok(1_800_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1969-12-31T23:59:59Z").is_err());
    }

    /// `POST /admin/v1/reconcile` over a live store handle: the summary, files on request,
    /// and 400s for what the engine cannot use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admin_endpoint_reconciles_the_running_store() {
        let dir = tempfile::tempdir().expect("dir");
        let campaign = Arc::new(
            load_campaign(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/spring-festival.toml"),
            )
            .expect("campaign"),
        );
        let store = Arc::new(
            EmbeddedStore::open_with(
                &dir.path().join("store"),
                EmbeddedConfig::default(),
                CampaignBinding::of(&campaign),
            )
            .expect("store"),
        );
        assert_eq!(claim_range(&store, &campaign, 0..5).await.expect("claims"), 5);
        let state = crate::admin::AdminState {
            dispatcher: None,
            store: Some(store.clone()),
            fleet: None,
            campaign,
            clock: SystemClock::shared(),
            reconcile_dir: dir.path().canonicalize().expect("dir"),
            // Signing is tested in tests/admin_access.rs; this test is about the pass.
            auth: crate::admin::AdminAuth::unsigned(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/admin/v1/reconcile", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(hongbao_api::serve(listener, crate::admin::router(state), async {
                let _ = stopped.await;
            }));
        let client = reqwest::Client::new();
        let post = |body: serde_json::Value| {
            let request = client.post(&url).json(&body);
            async move {
                let response = request.send().await.expect("send");
                let status = response.status().as_u16();
                (status, response.json::<serde_json::Value>().await.expect("json"))
            }
        };
        let out = dir.path().join("out");
        let (status, body) = post(serde_json::json!({"apply": true, "out": out})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["orders_scanned"].as_u64(), body["quiet"]["pending"].as_u64()),
            (Some(5), Some(5))
        );
        assert_eq!(
            (body["clean"].as_bool(), body["applied"]["requeued"].as_u64()),
            (Some(true), Some(0))
        );
        assert!(out.join("summary.json").exists() && out.join("resend.csv").exists());
        let (status, body) =
            post(serde_json::json!({"game_log": dir.path().join("missing.log")})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_reconcile_request"))
        );
        let (status, body) = post(serde_json::json!({"aply": true})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_body")));

        // Files only under the reconciliation directory: nothing else is read or written.
        let elsewhere = tempfile::tempdir().expect("dir");
        std::fs::write(elsewhere.path().join("game.log"), "").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("link")).expect("link");
        for body in [
            serde_json::json!({"game_log": elsewhere.path().join("game.log")}),
            serde_json::json!({"out": elsewhere.path().join("out")}),
            serde_json::json!({"out": "../out"}),
            serde_json::json!({"out": "link/out"}),
            serde_json::json!({"game_log": "link/game.log"}),
        ] {
            let (status, answer) = post(body.clone()).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (403, Some("path_outside_reconcile_dir")),
                "{body}: {answer}"
            );
            assert!(answer["error"]["message"].as_str().unwrap_or("").contains("--reconcile-dir"));
        }
        assert!(!elsewhere.path().join("out").exists());

        // Every order delivered, then an empty game log: it "lost" them all. The dry run says
        // what it would do and that apply would refuse; apply refuses; nothing moves.
        let campaign = load_campaign(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/spring-festival.toml"),
        )
        .expect("campaign");
        let now = SystemClock.now_ms();
        for game in &campaign.games {
            for entry in store.lease(game.index, LEASE_BATCH_MAX, now).await.expect("lease") {
                let done = Finish { state: FinalState::Delivered { duplicate: false }, at_ms: now };
                store.finish(entry, done).await.expect("finish");
            }
        }
        std::fs::write(dir.path().join("empty.log"), "").expect("write");
        let depth = |s: &EmbeddedStore| campaign.games.iter().map(|g| s.queue_depth(g.index)).sum();
        let depth_before: u64 = depth(&store);
        let (status, body) = post(serde_json::json!({"game_log": "empty.log"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["resend"].as_u64(), body["refusal"]["code"].as_str(), body["apply"].as_bool()),
            (Some(5), Some("game_log_does_not_cover"), Some(false))
        );
        let (status, body) =
            post(serde_json::json!({"apply": true, "game_log": "empty.log", "out": "refused"}))
                .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("game_log_does_not_cover")),
            "{body}"
        );
        assert!(body["error"]["message"].as_str().unwrap_or("").contains("\"force\": true"));
        assert_eq!(depth(&store), depth_before, "a refused apply requeues nothing");
        assert!(!dir.path().join("refused").exists());
        // A log that covers the deliveries but lacks one of five: a fifth is over the share.
        let orders = store.scan_orders(None, 10).await.expect("scan");
        let lines: String = orders[1..]
            .iter()
            .map(|o| {
                format!(
                    "{{\"serial\":\"{}\",\"game\":\"{}\",\"user\":{},\"applied_at_ms\":{now}}}\n",
                    o.id, o.game_id, o.user
                )
            })
            .collect();
        std::fs::write(dir.path().join("partial.log"), lines).expect("write");
        let (status, body) =
            post(serde_json::json!({"apply": true, "game_log": "partial.log"})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("requeue_share_exceeded")),
            "{body}"
        );
        assert_eq!(depth(&store), depth_before);
        let (status, body) =
            post(serde_json::json!({"apply": true, "game_log": "empty.log", "force": true})).await;
        assert_eq!((status, body["applied"]["requeued"].as_u64()), (200, Some(5)), "{body}");
        let _ = stop.send(());
        server.await.expect("join").expect("serve");
    }

    /// On a distributed node the endpoint reconciles the fleet's Redis and stream (it answered
    /// 409 `not_on_this_backend` before); without a --reconcile-dir it gives the summary only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admin_endpoint_reconciles_a_fleet() {
        let up = |addr: &str| {
            std::net::TcpStream::connect_timeout(
                &addr.parse().expect("an address"),
                std::time::Duration::from_millis(500),
            )
            .is_ok()
        };
        if !(up("127.0.0.1:6379") && up("127.0.0.1:4222")) {
            assert!(std::env::var_os("CI").is_none(), "no Redis or NATS, and CI is set");
            println!("skipped: no Redis at 127.0.0.1:6379 or NATS at 127.0.0.1:4222");
            return;
        }
        let campaign = Arc::new(
            load_campaign(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/spring-festival.toml"),
            )
            .expect("campaign"),
        );
        let namespace = format!("hbadm-{:012x}", rand::Rng::random::<u64>(&mut rand::rng()) >> 16);
        let config = BackendConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            namespace: namespace.clone(),
            jetstream: JetStreamConfig::default(),
            sweeper: SweeperConfig::default(),
            claim_shards: None,
        };
        let backend =
            hongbao_distributed::Backend::connect(&config, &campaign).await.expect("fleet");
        assert_eq!(claim_range(&backend.claims, &campaign, 0..3).await.expect("claims"), 3);
        let fleet = Arc::new(backend.reconcile_ledger());
        let dir = tempfile::tempdir().expect("dir");
        let state = crate::admin::AdminState {
            dispatcher: None,
            store: None,
            fleet: Some(fleet.clone()),
            campaign: campaign.clone(),
            clock: SystemClock::shared(),
            reconcile_dir: dir.path().canonicalize().expect("dir"),
            auth: crate::admin::AdminAuth::unsigned(),
        };
        let app = crate::admin::router(state);
        let post = |body: serde_json::Value| {
            let request = axum::http::Request::post("/admin/v1/reconcile")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .expect("request");
            let app = app.clone();
            async move {
                let response = tower::ServiceExt::oneshot(app, request).await.expect("answer");
                let status = response.status().as_u16();
                let bytes =
                    axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
                (status, serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"))
            }
        };
        let (status, body) = post(serde_json::json!({"apply": true, "out": "run1"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["orders_scanned"].as_u64(), body["quiet"]["pending"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(
            (body["clean"].as_bool(), body["applied"]["errors"].as_u64()),
            (Some(true), Some(0))
        );
        assert!(dir.path().join("run1/summary.json").exists());

        let refused = admin(
            &NodeLedger::Fleet(fleet),
            &campaign,
            Path::new(""),
            ReconcileRequest { out: Some("x".into()), ..ReconcileRequest::default() },
            &SystemClock,
        )
        .await
        .expect_err("no directory to write to");
        assert_eq!((refused.status.as_u16(), refused.code), (409, "no_reconcile_dir"));

        backend.stream.delete().await.expect("delete the stream");
        let client = redis::Client::open("redis://127.0.0.1:6379").expect("redis");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{namespace}:*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        redis::cmd("DEL").arg(&keys).query_async::<u64>(&mut conn).await.expect("del");
    }

    #[test]
    fn seed_draws_are_uniform_enough() {
        let n = 100_000;
        let hits = (0..n).filter(|i| draw(*i, 1) < 0.01).count();
        assert!((800..1_200).contains(&hits), "{hits}");
    }
}
