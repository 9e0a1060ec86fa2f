//! `hongbao load`: open-loop load against an API node (the library is `hongbao-loadgen`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hongbao_loadgen::{
    LoadConfig, Profile, REPLAY_LINES_MAX, ReplayRequests, Scenario, UserDist, parse_duration,
};

#[derive(Clone, Copy, ValueEnum)]
enum ScenarioArg {
    /// POST /v1/coupons on a random channel.
    Grab,
    /// A user's first use grabs, then every iteration lists its gifts.
    List,
    /// grab → list → claim with a fitting role.
    Claim,
    /// claim, then poll the order until it is delivered.
    Journey,
    /// The requests of --requests FILE, each line once, in file order.
    Replay,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// The rate from start to end.
    Constant,
    /// From a tenth of the rate to the rate within seconds, hold, drop back.
    Spike,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Base URL of the API node, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    target: String,
    /// The campaign the node serves (ticket key, channels, gifts, games' IDIP URLs).
    #[arg(long)]
    config: PathBuf,
    /// What each iteration does.
    #[arg(long, value_enum)]
    scenario: ScenarioArg,
    /// Replay: the requests to send, one per line, loaded into memory before the run.
    ///
    /// Each scheduled request takes the next line (warm-up included); no line is used twice (a
    /// line whose request the in-flight limit drops is skipped): when the file runs out the
    /// run stops scheduling and the report says how many requests were not sent. Size the file
    /// for rate × (warm-up + duration). A line is one of (fields separated by one TAB; empty
    /// lines skipped):
    ///
    ///   ticket<TAB>json-body
    ///     POST /v1/claims with `Authorization: Bearer <ticket>` and that body, as written by
    ///     `hongbao bench claims`;
    ///   METHOD<TAB>PATH<TAB>ticket-or-dash<TAB>body-or-empty
    ///     any request, e.g. `POST<TAB>/v1/coupons<TAB><ticket><TAB>{"channel":"swipe"}` or
    ///     `GET<TAB>/v1/coupons/<coupon>/gifts<TAB><ticket><TAB>`; `-` sends no Authorization.
    ///
    /// Bodies must be JSON (sent as application/json); METHOD is GET, POST, PUT, PATCH, DELETE,
    /// HEAD or OPTIONS; PATH starts with `/`. A malformed line refuses the file, naming its
    /// line number, and so does a file of more than 5,000,000 lines or 2 GiB. Tickets are
    /// not minted in this mode (--users, --skew and --sequential-users do not apply).
    #[arg(long, value_name = "FILE", required_if_eq("scenario", "replay"), verbatim_doc_comment)]
    requests: Option<PathBuf>,
    /// Iterations per second (the peak of a spike).
    #[arg(long)]
    rate: f64,
    /// Measured time, e.g. 30s, 2m.
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
    /// Users drawn from FIRST_USER_ID .. FIRST_USER_ID + N.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Connections to the target (concurrent requests).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Unmeasured time before, at the profile's base rate.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Writes the machine-readable report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// `spike`: from a tenth of the rate to the rate within seconds, hold, drop back.
    #[arg(long, value_enum, default_value = "constant")]
    profile: ProfileArg,
    /// Zipf exponent of the user skew; 0 draws users uniformly.
    #[arg(long, default_value_t = 0.8)]
    skew: f64,
    /// Users in order, distinct until every user has been used (overrides --skew).
    #[arg(long)]
    sequential_users: bool,
    /// Iterations running at once; one due beyond it is dropped and counted.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Per-request timeout.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    timeout: Duration,
    /// Time running iterations get to finish after the schedule ends.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    drain: Duration,
    /// Journey: time between polls of an order.
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    poll_interval: Duration,
    /// Journey: stop polling an order after this long.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    poll_limit: Duration,
    /// Seed of the user draws and channel picks (the same seed, the same users).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let campaign = crate::load_campaign(&args.config)?;
    let scenario = match args.scenario {
        ScenarioArg::Grab => Scenario::Grab,
        ScenarioArg::List => Scenario::List,
        ScenarioArg::Claim => Scenario::Claim,
        ScenarioArg::Journey => Scenario::Journey,
        ScenarioArg::Replay => Scenario::Replay,
    };
    let requests = match (&args.requests, args.scenario) {
        (Some(path), ScenarioArg::Replay) => {
            let path = path.clone();
            let requests = tokio::task::spawn_blocking(move || ReplayRequests::load(&path))
                .await
                .context("load the requests")??;
            Some(Arc::new(requests))
        }
        (None, ScenarioArg::Replay) => anyhow::bail!("--scenario replay needs --requests FILE"),
        (Some(_), _) => anyhow::bail!("--requests is for --scenario replay only"),
        (None, _) => None,
    };
    let mut config =
        LoadConfig::new(args.target, Arc::new(campaign), scenario, args.rate, args.duration);
    config.profile = match args.profile {
        ProfileArg::Constant => Profile::Constant,
        ProfileArg::Spike => Profile::Spike,
    };
    config.users = args.users;
    config.user_dist = if args.sequential_users {
        UserDist::Sequential
    } else if args.skew == 0.0 {
        UserDist::Uniform
    } else {
        UserDist::Zipf { s: args.skew }
    };
    config.connections = args.connections;
    config.max_in_flight = args.max_in_flight;
    config.warmup = args.warmup;
    config.request_timeout = args.timeout;
    config.drain_timeout = args.drain;
    config.poll_interval = args.poll_interval;
    config.poll_limit = args.poll_limit;
    config.seed = args.seed;
    config.progress = !args.no_progress;
    config.requests = requests;
    if let Some(requests) = &config.requests
        // Only with a valid configuration; `run` reports an invalid one below.
        && let Ok(planned) = config.planned_iterations()
    {
        eprintln!(
            "replay: {} requests from {} (at most {REPLAY_LINES_MAX} per file); the schedule \
             has {planned}{}",
            requests.len(),
            requests.file(),
            if planned > requests.len() as u64 {
                ", so the run stops scheduling when the file runs out"
            } else {
                ""
            }
        );
    }

    let report = hongbao_loadgen::run(config).await.context("run the load")?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).context("encode the report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
