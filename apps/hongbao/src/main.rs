//! `hongbao`: one binary for every role of the campaign backend. See `hongbao --help` and the
//! README; DESIGN.md §4 is the contract for the subcommands and flags.

mod admin;
mod admin_listener;
mod admin_tls;
mod bench;
mod campaign_cmd;
mod delivery_cmd;
mod demo;
mod fleet;
mod inspect;
mod load;
mod monitoring;
mod node;
mod operator_client;
mod reconcile;
mod synthetic;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hongbao_clock::{Clock, SystemClock};
use hongbao_domain::Campaign;

/// glibc's malloc and free were about a sixth of the server's CPU on the claim path (many small,
/// short-lived allocations across the tokio worker and the store's writer thread); mimalloc's
/// thread-local free lists make them cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hongbao",
    version,
    about = "Festival red-packet campaign backend",
    after_help = "Example: the whole campaign on one machine, then a look at delivery:\n  \
                  hongbao demo --addr 127.0.0.1:8080\n  \
                  hongbao delivery status --admin http://<the admin address demo prints>\n\n\
                  Before a real night: hongbao campaign check FILE, then hongbao serve --help."
)]
struct Cli {
    /// How logs on stderr look: `text` (coloured only on a terminal) or `json` (one JSON
    /// object per line, for log collectors). `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Everything embedded: the example campaign, synthetic users, the game-side simulator and
    /// an API node. Needs no servers and no files. With --redis and --nats, the same node on
    /// the distributed backend, under a namespace of its own removed when it stops.
    Demo(demo::DemoArgs),
    /// A node of a campaign: the API and/or the delivery workers over the embedded store, with
    /// operator endpoints on the admin address.
    Serve(node::ServeArgs),
    /// Campaign files: check one before the night, or shift its dates for a rehearsal.
    Campaign {
        #[command(subcommand)]
        command: campaign_cmd::CampaignCommand,
    },
    /// The static catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Deterministic synthetic users: registrations, preferences and roles.
    Gen {
        /// The campaign file (TOML; `config/spring-festival.toml` is the example).
        #[arg(long)]
        config: PathBuf,
        /// Number of users, ids from 10000 on (1,000,000 take about 10 MB of profiles).
        #[arg(long)]
        users: u64,
        /// Directory for `profiles.bin` and `roles.bin` (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the model; `game-sim --seed` with the same value answers the same roles.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Operators: delivery status per game, pause and resume (through a node's admin address).
    Delivery {
        #[command(subcommand)]
        command: delivery_cmd::DeliveryCommand,
    },
    /// What a stopped node's store holds (JSON): orders by status and gift, stock taken, queue
    /// depth, send log length.
    Inspect {
        /// The campaign file (TOML; `config/spring-festival.toml` is the example).
        #[arg(long)]
        config: PathBuf,
        /// The stopped node's data directory (its `serve --data`).
        #[arg(long, default_value = "hongbao-data")]
        data: PathBuf,
    },
    /// Profile data files made by `gen`.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// The game side (IDIP) simulator.
    GameSim(node::GameSimArgs),
    /// Should-send − actually-sent − still queued = the resend list, checked against the game
    /// side's log; `--apply` requeues it. For a stopped node (running: POST
    /// /admin/v1/reconcile on its admin address).
    Reconcile(reconcile::ReconcileArgs),
    /// Open-loop load at a fixed rate against an API node: latency from intended send times,
    /// HDR percentiles, status and error-code counts (`--json` for machines).
    Load(load::LoadArgs),
    /// Benchmark helpers (see `bench/`).
    #[command(hide = true)]
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Prints a login ticket for a user, signed with the campaign's first ticket key (what the
    /// login service would issue). Prints the ticket and nothing else.
    Ticket {
        /// The campaign file (TOML; `config/spring-festival.toml` is the example).
        #[arg(long)]
        config: PathBuf,
        /// The user id (a positive integer, as QQ numbers are).
        #[arg(long)]
        user: u64,
        /// Lifetime in seconds (at most the campaign's `ticket_max_age_s`).
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// N synthetic orders (mostly delivered) straight through the store API, and the matching
    /// game log: the reconciliation benchmark's data.
    SeedOrders(reconcile::SeedArgs),
    /// A minimal axum handler returning a small JSON body: the floor every figure is compared to.
    Floor {
        #[arg(long, default_value = "127.0.0.1:8090", value_parser = parse_addr)]
        addr: SocketAddr,
    },
    /// The real API router over the in-memory store: grabs and claims decided as `serve` decides
    /// them, but nothing written to disk. Not durable, never for a campaign: it measures what a
    /// claim costs with the durable write taken away (the ceiling any store could reach).
    InMemory {
        #[arg(long)]
        config: PathBuf,
        /// Directory holding `profiles.bin` from `hongbao gen`.
        #[arg(long)]
        profiles: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
        addr: SocketAddr,
    },
    /// `ticket<TAB>claim body` lines for the claim wrk script: one distinct coupon per line.
    Claims {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        users: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// At most `delivery_capacity_per_s × S` claims per game (a balanced delivery backlog).
        #[arg(long)]
        balance_s: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// `user ticket coupon` lines for wrk scripts.
    Tokens {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        users: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Compiles the campaign's public part into content-hashed files and a manifest.
    Build {
        /// The campaign file (TOML; `config/spring-festival.toml` is the example).
        #[arg(long)]
        config: PathBuf,
        /// Directory for the files (created if missing; files of the same name are replaced).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// Loads `DIR/profiles.bin` as `serve` does and reports its size and load time.
    Inspect {
        /// The campaign file (TOML; `config/spring-festival.toml` is the example).
        #[arg(long)]
        config: PathBuf,
        /// Directory holding `profiles.bin` (a `gen --out` directory).
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Loads a campaign file, resolving `secret_env` names from the process environment.
pub fn load_campaign(path: &Path) -> Result<Campaign> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| hongbao_domain::CampaignError::Io {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    Ok(Campaign::parse(&text, &file, &|name| std::env::var(name).ok())?)
}

/// Parses a listen address, naming the flag on failure.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| format!("`{text}` is not an address like 127.0.0.1:8080 ({e})"))
}

/// Raises this process's open-file limit (soft) to its hard limit: every connection is a file
/// descriptor, and the common default soft limit of 1024 would let a few hundred clients' idle
/// sockets take them all, well below the API's own connection cap. Best effort: a limit that
/// cannot be raised is logged and kept.
#[cfg(unix)]
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(from = ?limit.current, to = ?limit.maximum, "open-file limit raised")
        }
        Err(error) => tracing::warn!(%error, limit = ?limit.current, "open-file limit stays"),
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let init_tracing = |default: &str| init_tracing(default, log_format);
    // Transparent huge pages off for this process: mimalloc asks for them on its arenas, and with
    // the kernel's usual `defrag = madvise` a fault on such memory may compact memory on the spot.
    // Open-loop claims at a fixed rate showed it: p99 14–24 ms with them, 4.5–9 ms in most runs
    // without (docs/BENCHMARKS.md); Redis gives its users the same advice. Best effort.
    #[cfg(target_os = "linux")]
    let thp = rustix::thread::disable_transparent_huge_pages(true);
    match cli.command {
        Command::Demo(args) => {
            init_tracing("warn");
            runtime()?.block_on(demo::run(args))
        }
        Command::Serve(args) => {
            init_tracing("info");
            #[cfg(target_os = "linux")]
            if let Err(error) = thp {
                tracing::warn!(%error, "transparent huge pages stay on");
            }
            raise_open_files_limit();
            let runtime = runtime()?;
            let served = runtime.block_on(node::serve(args));
            // Whatever still runs (a blocking task on a dead socket) does not hold up the exit.
            runtime.shutdown_timeout(std::time::Duration::from_millis(RUNTIME_STOP_MS));
            served
        }
        Command::GameSim(args) => {
            init_tracing("info");
            runtime()?.block_on(node::game_sim(args))
        }
        Command::Reconcile(args) => {
            init_tracing("warn");
            runtime()?.block_on(reconcile::run(args, &hongbao_clock::SystemClock))
        }
        Command::Load(args) => {
            init_tracing("warn");
            runtime()?.block_on(load::run(args))
        }
        Command::Catalog { command: CatalogCommand::Build { config, out } } => {
            catalog_build(&config, &out)
        }
        Command::Bench { command } => bench_command(command, init_tracing),
        Command::Ticket { config, user, ttl_s } => ticket(&config, user, ttl_s),
        Command::Delivery { command } => runtime()?.block_on(delivery_cmd::run(command)),
        Command::Campaign { command } => campaign_cmd::run(command),
        Command::Inspect { config, data } => {
            let campaign = load_campaign(&config)?;
            let inspection = runtime()?.block_on(inspect::inspect(&campaign, &data))?;
            println!("{}", serde_json::to_string_pretty(&inspection)?);
            Ok(())
        }
        Command::Gen { config, users, out, seed } => {
            let campaign = load_campaign(&config)?;
            let report =
                synthetic::generate(&campaign, users, seed, &out).context("generate users")?;
            synthetic::print_report(&mut std::io::stdout().lock(), &report, &out)?;
            Ok(())
        }
        Command::Profiles { command: ProfilesCommand::Inspect { config, dir } } => {
            profiles_inspect(&config, &dir)
        }
    }
}

/// `hongbao catalog build`.
fn catalog_build(config: &Path, out: &Path) -> Result<()> {
    let campaign = load_campaign(config)?;
    let catalog = hongbao_catalog::build(&campaign);
    hongbao_catalog::write(&catalog, out)
        .with_context(|| format!("write catalog into {}", out.display()))?;
    println!("catalog {} written to {}", catalog.version, out.display());
    for file in &catalog.files {
        println!("  {} ({} bytes)", file.name, file.bytes.len());
    }
    Ok(())
}

/// `hongbao bench …`: the benchmarks' servers and their pre-made inputs.
fn bench_command(command: BenchCommand, init_tracing: impl Fn(&str)) -> Result<()> {
    let now = SystemClock.now_unix_s();
    match command {
        BenchCommand::SeedOrders(args) => {
            init_tracing("warn");
            runtime()?.block_on(reconcile::seed_orders(args))
        }
        BenchCommand::Floor { addr } => runtime()?.block_on(bench::floor(addr)),
        BenchCommand::InMemory { config, profiles, addr } => {
            init_tracing("warn");
            let campaign = load_campaign(&config)?;
            runtime()?.block_on(bench::in_memory(campaign, &profiles, addr))
        }
        BenchCommand::Claims { config, users, seed, balance_s, out } => {
            let campaign = load_campaign(&config)?;
            let lines = bench::claims(&campaign, seed, users, now, balance_s, &out)?;
            println!("{lines} claims written to {}", out.display());
            Ok(())
        }
        BenchCommand::Tokens { config, users, out } => {
            let campaign = load_campaign(&config)?;
            bench::tokens(&campaign, users, now, &out)
        }
    }
}

/// `hongbao ticket`: prints exactly the ticket.
fn ticket(config: &Path, user: u64, ttl_s: u64) -> Result<()> {
    let campaign = load_campaign(config)?;
    anyhow::ensure!(user > 0, "--user must be a positive user id");
    anyhow::ensure!(
        ttl_s > 0 && ttl_s <= campaign.auth.ticket_max_age_s,
        "--ttl-s must be between 1 and the campaign's ticket_max_age_s ({})",
        campaign.auth.ticket_max_age_s
    );
    let now = SystemClock.now_unix_s();
    let ticket = hongbao_domain::sign_ticket(&campaign.auth.ticket_keys[0], user, now, ttl_s);
    println!("{ticket}");
    Ok(())
}

/// `hongbao profiles inspect`.
fn profiles_inspect(config: &Path, dir: &Path) -> Result<()> {
    let campaign = load_campaign(config)?;
    let started = std::time::Instant::now();
    let table = synthetic::load_profiles(dir, &campaign)?;
    let elapsed = started.elapsed();
    let users = table.len().max(1);
    println!(
        "loaded {} users in {:.3} s: {} resident bytes, {:.1} bytes per user (seed {})",
        table.len(),
        elapsed.as_secs_f64(),
        table.resident_bytes(),
        table.resident_bytes() as f64 / users as f64,
        table.header().seed,
    );
    Ok(())
}

/// Whether the runtime's workers are idle, for the store writer's group-commit linger
/// (`hongbao_store::embedded::idle`): one runtime per process, so one record.
pub(crate) static RUNTIME_IDLE: std::sync::LazyLock<std::sync::Arc<hongbao_store::RuntimeIdle>> =
    std::sync::LazyLock::new(Default::default);

/// Longest `serve` waits, once the node has stopped, for tasks still running on the runtime.
const RUNTIME_STOP_MS: u64 = 1_000;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(|| RUNTIME_IDLE.parked())
        .on_thread_unpark(|| RUNTIME_IDLE.unparked())
        .build()
        .context("start the runtime")
}

/// Logs to stderr (stdout is for what a command prints as its result); `RUST_LOG` overrides.
/// Colour only on a terminal (and without `NO_COLOR`): in a file or a pipe the escape codes are
/// noise that breaks grep.
fn init_tracing(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            logs.with_ansi(colour).init();
        }
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}
