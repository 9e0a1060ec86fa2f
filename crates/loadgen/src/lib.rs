//! Open-loop load generator for hongbao (`hongbao load`).
//!
//! Iterations of a scenario come due at intended times from a rate curve ([`schedule`]); each
//! runs as its own task, so a slow server never slows the offered load down, and every latency
//! is measured from the intended send time (no coordinated omission). At most
//! [`LoadConfig::max_in_flight`] iterations run at once: one that comes due past that limit is
//! counted as `dropped` instead of queueing without bound. Requests to the target share
//! [`LoadConfig::connections`] connections; waiting for one counts as latency.
//!
//! Except in `replay`, the generator mints its own login tickets with the campaign's first ticket
//! key and draws users from a skewed distribution ([`users`]). Scenarios:
//! - `grab`: `POST /v1/coupons` on a random channel of the campaign;
//! - `list`: a user's first use grabs one coupon, then every iteration lists its gifts;
//! - `claim`: grab → list → claim the first listed gift with a fitting role (looked up on the
//!   game side, or created in a fitting zone when the user has none);
//! - `journey`: claim, then poll the order until it is delivered (or dead, expired, held) or a
//!   limit, measuring time to delivered;
//! - `replay`: the requests of a file ([`replay`]), loaded into memory before the run, one line
//!   per scheduled request in file order, each used once. When the file runs out the run stops
//!   scheduling and the report says how many requests were not sent. To an `http://` target
//!   they go over the generator's own kept-alive connections (module `conns`), not reqwest.

mod conns;
pub mod replay;
mod scenario;
pub mod schedule;
pub mod stats;
pub mod users;

mod progress;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hongbao_domain::Campaign;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use replay::{REPLAY_BYTES_MAX, REPLAY_LINES_MAX, ReplayError, ReplayRequests};
pub use schedule::{Profile, Schedule, Segment};
pub use stats::{EndpointReport, LatencySummary, ReplayReport, Report};
pub use users::{UserDist, UserSampler};

use crate::scenario::{Ctx, Iteration};
use crate::stats::{Endpoint, Recorder, ReportMeta};
use crate::users::UserStates;

/// Highest rate accepted, iterations per second.
pub const RATE_MAX_PER_S: f64 = 1_000_000.0;
/// Most connections to the target.
pub const CONNECTIONS_MAX: usize = 4096;
/// Largest in-flight limit accepted.
pub const IN_FLIGHT_MAX: usize = 1_000_000;
/// Longest run (warm-up plus measured part).
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Longest a minted ticket lives (shorter if the campaign's `ticket_max_age_s` is).
pub const TICKET_TTL_MAX_S: u64 = 3600;

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Grab,
    List,
    Claim,
    Journey,
    /// The requests of [`LoadConfig::requests`], each once, in order.
    Replay,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Grab => "grab",
            Scenario::List => "list",
            Scenario::Claim => "claim",
            Scenario::Journey => "journey",
            Scenario::Replay => "replay",
        }
    }

    /// The request whose latency the report's headline percentiles are.
    pub fn primary(self) -> Endpoint {
        match self {
            Scenario::Grab => Endpoint::Grab,
            Scenario::List => Endpoint::List,
            Scenario::Claim | Scenario::Journey => Endpoint::Claim,
            Scenario::Replay => Endpoint::Replay,
        }
    }
}

/// A run's settings. [`LoadConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    /// The campaign the target serves: ticket key, channels, gifts, games' IDIP URLs.
    pub campaign: Arc<Campaign>,
    pub scenario: Scenario,
    /// Iterations per second (the peak for a spike).
    pub rate_per_s: f64,
    /// The measured part.
    pub duration: Duration,
    /// Run at the profile's base rate first, without counting.
    pub warmup: Duration,
    pub profile: Profile,
    /// Users `FIRST_USER_ID .. FIRST_USER_ID + users`.
    pub users: u64,
    pub user_dist: UserDist,
    /// Concurrent requests to the target (and idle connections kept).
    pub connections: usize,
    /// Iterations running at once; past it a due iteration is dropped.
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    /// After the schedule ends, how long running iterations may finish before they are
    /// cancelled and counted as abandoned.
    pub drain_timeout: Duration,
    /// Journey: time between polls of an order.
    pub poll_interval: Duration,
    /// Journey: give up polling an order after this long.
    pub poll_limit: Duration,
    pub seed: u64,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Replay: the requests to send (required by [`Scenario::Replay`], refused by the others).
    pub requests: Option<Arc<ReplayRequests>>,
}

impl LoadConfig {
    pub fn new(
        target: impl Into<String>,
        campaign: Arc<Campaign>,
        scenario: Scenario,
        rate_per_s: f64,
        duration: Duration,
    ) -> LoadConfig {
        LoadConfig {
            target: target.into(),
            campaign,
            scenario,
            rate_per_s,
            duration,
            warmup: Duration::ZERO,
            profile: Profile::Constant,
            users: 1_000_000,
            user_dist: UserDist::Zipf { s: 0.8 },
            connections: 64,
            max_in_flight: 10_000,
            request_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
            poll_limit: Duration::from_secs(30),
            seed: 1,
            progress: false,
            requests: None,
        }
    }

    /// How many requests (iterations) the run's schedule has, warm-up included; a replay needs
    /// that many lines to last the whole run.
    pub fn planned_iterations(&self) -> Result<u64, LoadError> {
        self.validate()?;
        Ok(self.schedule().count())
    }

    fn schedule(&self) -> Schedule {
        Schedule::for_run(self.profile, self.rate_per_s, self.warmup, self.duration)
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::InvalidConfig(m));
        if !(self.target.starts_with("http://") || self.target.starts_with("https://")) {
            return bad(format!("target `{}` is not an http:// or https:// URL", self.target));
        }
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return bad(format!("rate must be positive, got {}", self.rate_per_s));
        }
        if self.rate_per_s > RATE_MAX_PER_S {
            return bad(format!("rate {} is above the maximum {RATE_MAX_PER_S}", self.rate_per_s));
        }
        if self.duration.is_zero() || self.duration + self.warmup > DURATION_MAX {
            return bad(format!(
                "duration must be positive and duration + warm-up at most {} s",
                DURATION_MAX.as_secs()
            ));
        }
        if self.users == 0 || hongbao_domain::synth::FIRST_USER_ID.checked_add(self.users).is_none()
        {
            return bad(format!(
                "users must be between 1 and 2^64 - FIRST_USER_ID, got {}",
                self.users
            ));
        }
        if let UserDist::Zipf { s } = self.user_dist
            && !(s.is_finite() && s > 0.0)
        {
            return bad(format!("zipf exponent must be positive, got {s}"));
        }
        if !(1..=CONNECTIONS_MAX).contains(&self.connections) {
            return bad(format!("connections must be in 1..={CONNECTIONS_MAX}"));
        }
        if !(1..=IN_FLIGHT_MAX).contains(&self.max_in_flight) {
            return bad(format!("max in flight must be in 1..={IN_FLIGHT_MAX}"));
        }
        if self.request_timeout.is_zero() || self.poll_interval.is_zero() {
            return bad("request timeout and poll interval must be positive".into());
        }
        if self.scenario == Scenario::Replay {
            // Requests come from the file: no tickets minted, no channels drawn.
            return match &self.requests {
                Some(r) if !r.is_empty() => Ok(()),
                _ => bad("the replay scenario needs a non-empty requests file".into()),
            };
        }
        if self.requests.is_some() {
            return bad(format!(
                "a requests file is for the replay scenario only, not `{}`",
                self.scenario.as_str()
            ));
        }
        if self.campaign.auth.ticket_keys.is_empty() {
            return bad("the campaign has no ticket key to mint tickets with".into());
        }
        if self.campaign.channels.is_empty() {
            return bad("the campaign has no channel to grab from".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load configuration: {0}")]
    InvalidConfig(String),
    #[error("build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs the load and returns the report. Bounded in time: at most warm-up + duration + drain
/// timeout (plus one request timeout for requests cancelled at the end).
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    config.validate()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(config.connections)
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout.min(Duration::from_secs(2)))
        .tcp_nodelay(true)
        .build()?;
    let schedule = config.schedule();
    let replay = config.requests.clone().filter(|_| config.scenario == Scenario::Replay);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let start = Instant::now();
    let measure_start = start + config.warmup;
    let schedule_end = start + schedule.total();
    let campaign = config.campaign.clone();
    let ticket_ttl_s = campaign.auth.ticket_max_age_s.clamp(1, TICKET_TTL_MAX_S);
    let ctx = Arc::new(Ctx {
        client,
        target: config.target.trim_end_matches('/').to_string(),
        gifts: campaign.gifts.iter().map(|g| (g.id.clone(), g.index)).collect::<HashMap<_, _>>(),
        campaign,
        scenario: config.scenario,
        recorder: Recorder::new(config.scenario.primary()),
        users: UserStates::default(),
        connections: Semaphore::new(config.connections),
        poll_interval: config.poll_interval,
        poll_limit: config.poll_limit,
        poll_deadline: schedule_end
            + config
                .drain_timeout
                .saturating_sub(config.request_timeout.min(config.drain_timeout / 2)),
        ticket_ttl_s,
        // Replays to a plain http:// target skip reqwest (see `conns`).
        conns: replay.as_ref().and_then(|_| {
            conns::TargetConns::for_target(
                config.target.trim_end_matches('/'),
                config.request_timeout,
            )
        }),
        replay: replay.clone(),
    });

    let progress = config.progress.then(|| {
        progress::Progress::start(
            ctx.clone(),
            in_flight.clone(),
            config.max_in_flight,
            start,
            &config,
        )
    });

    let mut tasks = JoinSet::new();
    let offered = Offer { schedule: &schedule, replay: replay.as_ref(), start, measure_start };
    let (ran_out, lines_used) = offered.run(&config, &ctx, &in_flight, &mut tasks).await;
    drain(&mut tasks, config.drain_timeout, &ctx).await;
    if let Some(p) = progress {
        p.stop().await;
    }

    let replay_report = replay.as_ref().map(|r| ReplayReport {
        file: r.file().to_string(),
        lines: r.len() as u64,
        lines_used,
        not_sent: ran_out.map_or(0, |(k, _)| schedule.count().saturating_sub(k)),
        ran_out_at_s: ran_out.map(|(_, offset)| offset.as_secs_f64()),
    });
    Ok(ctx.recorder.report(report_meta(&config, &ctx, replay_report), measure_start))
}

/// The run's schedule, offered to the target: one iteration (or replay line) per scheduled
/// time, dropped when `max_in_flight` iterations are already running.
struct Offer<'a> {
    schedule: &'a Schedule,
    replay: Option<&'a Arc<ReplayRequests>>,
    start: Instant,
    measure_start: Instant,
}

impl Offer<'_> {
    /// Returns where a replay file ran out (index, offset) and how many of its lines were used.
    async fn run(
        &self,
        config: &LoadConfig,
        ctx: &Arc<scenario::Ctx>,
        in_flight: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> (Option<(u64, Duration)>, u64) {
        let (schedule, replay, start, measure_start) =
            (self.schedule, self.replay, self.start, self.measure_start);
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let mut sampler = UserSampler::new(config.user_dist, config.users);
        let channels = ctx.campaign.channels.len();
        // Replay: the first request the file had no line for, and when it was due.
        let mut ran_out = None;
        let mut lines_used = 0u64;
        for k in 0.. {
            let Some(offset) = schedule.time_of(k) else { break };
            if let Some(r) = &replay
                && k >= r.len() as u64
            {
                ran_out = Some((k, offset));
                break;
            }
            let intended = start + offset;
            if intended > Instant::now() {
                tokio::time::sleep_until(intended.into()).await;
            }
            reap(tasks);
            let record = intended >= measure_start;
            // Draw even for a dropped iteration, so the users offered do not depend on the server;
            // likewise a dropped replay line is used up.
            let job = if replay.is_some() {
                lines_used += 1;
                Job::Replay(k as usize)
            } else {
                let user = sampler.next(&mut rng);
                let channel = ctx.campaign.channels[rng.random_range(0..channels)].channel;
                Job::Iteration(Iteration { user, channel, intended, record })
            };
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    ctx.recorder.scheduled(record, true);
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        match job {
                            Job::Iteration(it) => scenario::run_iteration(&ctx, it).await,
                            Job::Replay(line) => {
                                scenario::run_replay(&ctx, line, intended, record).await;
                            }
                        }
                        drop(permit);
                    });
                }
                Err(_) => ctx.recorder.scheduled(record, false),
            }
        }
        (ran_out, lines_used)
    }
}

/// Waits up to `timeout` for the iterations still running; the rest are counted abandoned.
async fn drain(tasks: &mut JoinSet<()>, timeout: Duration, ctx: &scenario::Ctx) {
    let drained = tokio::time::timeout(timeout, async {
        while let Some(result) = tasks.join_next().await {
            propagate_panic(result);
        }
    })
    .await;
    if drained.is_err() {
        ctx.recorder.abandoned(tasks.len() as u64);
        tasks.abort_all();
        while let Some(result) = tasks.join_next().await {
            propagate_panic(result);
        }
    }
}

/// What the report says of the run's set-up.
fn report_meta(
    config: &LoadConfig,
    ctx: &scenario::Ctx,
    replay: Option<ReplayReport>,
) -> ReportMeta {
    let replayed = replay.is_some();
    ReportMeta {
        scenario: config.scenario.as_str(),
        profile: config.profile.as_str(),
        target: ctx.target.clone(),
        users: if replayed { 0 } else { config.users },
        user_distribution: if replayed {
            "from the requests file".to_string()
        } else {
            config.user_dist.describe()
        },
        connections: config.connections,
        max_in_flight: config.max_in_flight,
        rate_per_s: config.rate_per_s,
        duration: config.duration,
        warmup: config.warmup,
        replay,
    }
}

/// What a scheduled iteration does.
enum Job {
    Iteration(Iteration),
    /// Sends this line of the replay file.
    Replay(usize),
}

/// Collects finished iterations so the set does not grow with the run's length.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        propagate_panic(result);
    }
}

/// An iteration that panicked is a bug in the generator: crash with its message.
fn propagate_panic(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Parses a duration such as `10s`, `500ms`, `2m`, `1h` or `1.5s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s, 500ms, 2m or 1h"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
