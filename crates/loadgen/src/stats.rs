//! Counting and timing: what every request and iteration ended as, and the report built from it.
//!
//! Latencies are HDR histograms in microseconds, measured from each request's intended send
//! time. One mutex guards everything; it is held for a few hundred nanoseconds per request and
//! never across an await, which costs far less than the HTTP round trip it accounts for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Slowest latency a histogram holds exactly; slower ones are recorded as this (1 hour).
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
const HISTOGRAM_SIGFIGS: u8 = 3;
/// Most distinct error codes counted per endpoint; further codes count as `other`, so a server
/// that puts unbounded text in its codes cannot grow the report without limit.
pub const ERROR_CODES_MAX: usize = 64;
/// Error code counted for a non-2xx answer without a JSON `error.code`.
pub const NO_ERROR_CODE: &str = "none";

/// What a request was for. `IdipRoles` and `IdipCreateRole` go to the game side, the others
/// to the target; `Replay` is every request of the replay scenario, whatever its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Grab,
    List,
    Claim,
    Order,
    IdipRoles,
    IdipCreateRole,
    Replay,
}

impl Endpoint {
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Grab,
        Endpoint::List,
        Endpoint::Claim,
        Endpoint::Order,
        Endpoint::IdipRoles,
        Endpoint::IdipCreateRole,
        Endpoint::Replay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Grab => "grab",
            Endpoint::List => "list",
            Endpoint::Claim => "claim",
            Endpoint::Order => "order",
            Endpoint::IdipRoles => "idip_roles",
            Endpoint::IdipCreateRole => "idip_create_role",
            Endpoint::Replay => "replay",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a request ended, from the client's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// An HTTP answer, with `error.code` from a non-2xx JSON body when there was one.
    Http { status: u16, error_code: Option<&'a str> },
    /// No answer in time.
    Timeout,
    /// The connection could not be made.
    ConnectError,
    /// Anything else on the way (reset, malformed response, body cut short).
    IoError,
}

impl Answer<'_> {
    /// The key in the status counts: the HTTP status, or the kind of transport failure.
    fn status_key(&self) -> StatusKey {
        match self {
            Answer::Http { status, .. } => StatusKey::Http(*status),
            Answer::Timeout => StatusKey::Transport("timeout"),
            Answer::ConnectError => StatusKey::Transport("connect_error"),
            Answer::IoError => StatusKey::Transport("io_error"),
        }
    }

    fn is_success(&self) -> bool {
        matches!(self, Answer::Http { status: 200..=299, .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StatusKey {
    Http(u16),
    Transport(&'static str),
}

impl StatusKey {
    fn name(&self) -> String {
        match self {
            StatusKey::Http(s) => s.to_string(),
            StatusKey::Transport(t) => (*t).to_string(),
        }
    }
}

fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: failure here is a programmer error.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIGS)
        .expect("histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

struct EndpointStats {
    latency: Histogram<u64>,
    statuses: BTreeMap<StatusKey, u64>,
    error_codes: BTreeMap<String, u64>,
}

impl EndpointStats {
    fn new() -> Self {
        EndpointStats {
            latency: histogram(),
            statuses: BTreeMap::new(),
            error_codes: BTreeMap::new(),
        }
    }

    fn requests(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// Counters since the progress display last looked (warm-up included).
pub(crate) struct Live {
    pub requests: u64,
    pub errors: u64,
    pub dropped: u64,
    pub latency: Histogram<u64>,
}

struct Inner {
    endpoints: Vec<EndpointStats>,
    iteration: Histogram<u64>,
    time_to_delivered: Histogram<u64>,
    outcomes: BTreeMap<&'static str, u64>,
    scheduled: u64,
    started: u64,
    dropped: u64,
    abandoned: u64,
    last_primary_done: Option<Instant>,
    live: Live,
}

/// Shared by every iteration of a run.
pub(crate) struct Recorder {
    primary: Endpoint,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn new(primary: Endpoint) -> Recorder {
        Recorder {
            primary,
            inner: Mutex::new(Inner {
                endpoints: Endpoint::ALL.iter().map(|_| EndpointStats::new()).collect(),
                iteration: histogram(),
                time_to_delivered: histogram(),
                outcomes: BTreeMap::new(),
                scheduled: 0,
                started: 0,
                dropped: 0,
                abandoned: 0,
                last_primary_done: None,
                live: Live { requests: 0, errors: 0, dropped: 0, latency: histogram() },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters stay meaningful after a panicking holder; keep counting.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An iteration came due; `started` is false when the in-flight limit dropped it.
    pub fn scheduled(&self, record: bool, started: bool) {
        let mut inner = self.lock();
        if !started {
            inner.live.dropped += 1;
        }
        if record {
            inner.scheduled += 1;
            if started {
                inner.started += 1;
            } else {
                inner.dropped += 1;
            }
        }
    }

    /// One request ended. `latency` is from its intended send time; `None` for failures that
    /// say nothing about the server's speed (a refused connection).
    pub fn request(
        &self,
        endpoint: Endpoint,
        record: bool,
        answer: Answer<'_>,
        latency: Option<Duration>,
    ) {
        let now = Instant::now();
        let mut inner = self.lock();
        let is_primary = endpoint == self.primary;
        inner.live.requests += 1;
        if !answer.is_success() {
            inner.live.errors += 1;
        }
        if let (true, Some(l)) = (is_primary, latency) {
            inner.live.latency.saturating_record(micros(l));
        }
        if !record {
            return;
        }
        let stats = &mut inner.endpoints[endpoint.index()];
        *stats.statuses.entry(answer.status_key()).or_default() += 1;
        if let Answer::Http { status, error_code } = answer
            && !(200..300).contains(&status)
        {
            let code = error_code.unwrap_or(NO_ERROR_CODE);
            let key = if stats.error_codes.contains_key(code)
                || stats.error_codes.len() < ERROR_CODES_MAX
            {
                code
            } else {
                "other"
            };
            match stats.error_codes.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    stats.error_codes.insert(key.to_string(), 1);
                }
            }
        }
        if let Some(l) = latency {
            stats.latency.saturating_record(micros(l));
        }
        if is_primary && matches!(answer, Answer::Http { .. }) {
            inner.last_primary_done = Some(now);
        }
    }

    /// An iteration finished with `outcome`; `latency` from its intended start to its last
    /// scenario step (polls excluded).
    pub fn iteration(&self, record: bool, outcome: &'static str, latency: Option<Duration>) {
        if !record {
            return;
        }
        let mut inner = self.lock();
        *inner.outcomes.entry(outcome).or_default() += 1;
        if let Some(l) = latency {
            inner.iteration.saturating_record(micros(l));
        }
    }

    pub fn delivered(&self, record: bool, time_to_delivered: Duration) {
        if record {
            self.lock().time_to_delivered.saturating_record(micros(time_to_delivered));
        }
    }

    pub fn abandoned(&self, n: u64) {
        self.lock().abandoned += n;
    }

    /// Takes the live counters, resetting them.
    pub fn take_live(&self) -> (u64, u64, u64, Option<f64>) {
        let mut inner = self.lock();
        let live = &mut inner.live;
        let p99 = (!live.latency.is_empty())
            .then(|| live.latency.value_at_quantile(0.99) as f64 / 1000.0);
        let out = (live.requests, live.errors, live.dropped, p99);
        live.requests = 0;
        live.errors = 0;
        live.dropped = 0;
        live.latency.reset();
        out
    }

    pub fn report(&self, meta: ReportMeta, measure_start: Instant) -> Report {
        let inner = self.lock();
        let duration_s = meta.duration.as_secs_f64();
        let elapsed_s = inner
            .last_primary_done
            .map_or(0.0, |t| t.saturating_duration_since(measure_start).as_secs_f64())
            .max(duration_s);
        let per_s = |n: u64| if elapsed_s > 0.0 { n as f64 / elapsed_s } else { 0.0 };

        let mut statuses = BTreeMap::new();
        let mut error_codes = BTreeMap::<String, u64>::new();
        let mut endpoints = BTreeMap::new();
        for (endpoint, stats) in Endpoint::ALL.iter().zip(&inner.endpoints) {
            if stats.statuses.is_empty() {
                continue;
            }
            for (k, n) in &stats.statuses {
                *statuses.entry(*k).or_insert(0u64) += n;
            }
            for (code, n) in &stats.error_codes {
                *error_codes.entry(code.clone()).or_default() += n;
            }
            endpoints.insert(
                endpoint.as_str().to_string(),
                EndpointReport {
                    requests: stats.requests(),
                    statuses: stats.statuses.iter().map(|(k, n)| (k.name(), *n)).collect(),
                    error_codes: stats.error_codes.clone(),
                    latency: LatencySummary::of(&stats.latency),
                },
            );
        }
        let primary = &inner.endpoints[self.primary.index()];
        let answered: u64 = primary
            .statuses
            .iter()
            .filter(|(k, _)| matches!(k, StatusKey::Http(_)))
            .map(|(_, n)| n)
            .sum();
        let ok: u64 = primary
            .statuses
            .iter()
            .filter(|(k, _)| matches!(k, StatusKey::Http(200..=299)))
            .map(|(_, n)| n)
            .sum();
        let requests: u64 = statuses.values().sum();
        let latency = LatencySummary::of(&primary.latency);
        Report {
            scenario: meta.scenario.to_string(),
            profile: meta.profile.to_string(),
            target: meta.target,
            users: meta.users,
            user_distribution: meta.user_distribution,
            connections: meta.connections,
            max_in_flight: meta.max_in_flight,
            rate_per_s: meta.rate_per_s,
            offered_rps: if duration_s > 0.0 { inner.scheduled as f64 / duration_s } else { 0.0 },
            achieved_rps: per_s(answered),
            ok_rps: per_s(ok),
            requests_per_s: per_s(requests),
            duration_s,
            warmup_s: meta.warmup.as_secs_f64(),
            elapsed_s,
            scheduled: inner.scheduled,
            started: inner.started,
            dropped: inner.dropped,
            abandoned: inner.abandoned,
            requests,
            statuses: statuses.iter().map(|(k, n)| (k.name(), *n)).collect(),
            error_codes,
            primary_endpoint: self.primary.as_str().to_string(),
            p50_ms: latency.p50_ms,
            p90_ms: latency.p90_ms,
            p99_ms: latency.p99_ms,
            p999_ms: latency.p999_ms,
            max_ms: latency.max_ms,
            mean_ms: latency.mean_ms,
            endpoints,
            iteration: LatencySummary::of(&inner.iteration),
            time_to_delivered: (meta.scenario == "journey")
                .then(|| LatencySummary::of(&inner.time_to_delivered)),
            outcomes: inner.outcomes.iter().map(|(k, n)| ((*k).to_string(), *n)).collect(),
            replay: meta.replay,
        }
    }
}

/// What the report says about the run's settings.
pub(crate) struct ReportMeta {
    pub scenario: &'static str,
    pub profile: &'static str,
    pub target: String,
    pub users: u64,
    pub user_distribution: String,
    pub connections: usize,
    pub max_in_flight: usize,
    pub rate_per_s: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub replay: Option<ReplayReport>,
}

/// How a replay used its file. Lines are taken in order, one per scheduled request, warm-up
/// included; a line whose request the in-flight limit dropped is not sent later.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayReport {
    pub file: String,
    /// Requests in the file.
    pub lines: u64,
    /// Lines given a send time (warm-up included): sent, or dropped by the in-flight limit.
    pub lines_used: u64,
    /// Requests the schedule still had due (warm-up included) when the file ran out: not sent.
    pub not_sent: u64,
    /// When the file ran out, in seconds from the start of the run (warm-up included): the
    /// intended time of the first request not sent. `None` if the file lasted the whole run.
    pub ran_out_at_s: Option<f64>,
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointReport {
    pub requests: u64,
    pub statuses: BTreeMap<String, u64>,
    pub error_codes: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub latency: LatencySummary,
}

/// The result of a run; `--json` writes it as is. Counts cover the measured window only (the
/// warm-up is not counted). Every request sent lands in exactly one entry of `statuses`
/// (an HTTP status, or `timeout` / `connect_error` / `io_error`); iterations that the
/// in-flight limit refused are `dropped` and sent nothing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub profile: String,
    pub target: String,
    pub users: u64,
    pub user_distribution: String,
    pub connections: usize,
    pub max_in_flight: usize,
    /// The configured (peak) rate of iterations per second.
    pub rate_per_s: f64,
    /// Iterations that came due per second of the measured window.
    pub offered_rps: f64,
    /// Answers (any HTTP status) of the primary endpoint per second of elapsed time.
    pub achieved_rps: f64,
    /// 2xx answers of the primary endpoint per second.
    pub ok_rps: f64,
    /// Every request sent, all endpoints, per second.
    pub requests_per_s: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// The measured window stretched to the last primary answer (at least `duration_s`).
    pub elapsed_s: f64,
    pub scheduled: u64,
    pub started: u64,
    pub dropped: u64,
    /// Iterations still running when the drain time ran out (cancelled, partly counted).
    pub abandoned: u64,
    pub requests: u64,
    pub statuses: BTreeMap<String, u64>,
    pub error_codes: BTreeMap<String, u64>,
    /// The endpoint the headline latencies are of: the scenario's own request.
    pub primary_endpoint: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub endpoints: BTreeMap<String, EndpointReport>,
    /// Whole iterations from their intended start to their last step (polls excluded).
    pub iteration: LatencySummary,
    /// Journeys: from the intended start to the poll that saw `delivered`.
    pub time_to_delivered: Option<LatencySummary>,
    pub outcomes: BTreeMap<String, u64>,
    /// Replay runs only: how the requests file was used (absent from the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayReport>,
}

impl Report {
    /// The human-readable summary printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let offered_by = match &self.replay {
            Some(r) => format!("requests from {}", r.file),
            None => format!("{} users ({})", self.users, self.user_distribution),
        };
        let _ = writeln!(
            w,
            "scenario {} ({} profile) against {}: {:.1} s measured after {:.1} s warm-up, \
             {offered_by}, {} connections, at most {} in flight",
            self.scenario,
            self.profile,
            self.target,
            self.duration_s,
            self.warmup_s,
            self.connections,
            self.max_in_flight
        );
        let _ = writeln!(
            w,
            "rate       offered {:.1}/s (configured {:.1}/s)  achieved {:.1}/s  2xx {:.1}/s  \
             all requests {:.1}/s",
            self.offered_rps, self.rate_per_s, self.achieved_rps, self.ok_rps, self.requests_per_s
        );
        let _ = writeln!(
            w,
            "iterations scheduled {}  started {}  dropped (in-flight limit) {}  abandoned {}",
            self.scheduled, self.started, self.dropped, self.abandoned
        );
        if let Some(r) = &self.replay {
            let _ = match r.ran_out_at_s {
                Some(at) => writeln!(
                    w,
                    "replay     file ran out {at:.2} s into the run (warm-up included): all {} \
                     lines used, {} scheduled requests not sent",
                    r.lines, r.not_sent
                ),
                None => writeln!(
                    w,
                    "replay     {} of {} lines used, {} left over",
                    r.lines_used,
                    r.lines,
                    r.lines.saturating_sub(r.lines_used)
                ),
            };
        }
        let _ = writeln!(
            w,
            "latency of {} from intended send time: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  \
             p99.9 {:.2} ms  max {:.2} ms",
            self.primary_endpoint, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        let _ = writeln!(
            w,
            "\n{:<18}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "endpoint", "requests", "2xx", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let mut rows: Vec<(&str, &LatencySummary, u64, u64)> = self
            .endpoints
            .iter()
            .map(|(name, e)| {
                let ok = e
                    .statuses
                    .iter()
                    .filter(|(k, _)| k.starts_with('2') && k.len() == 3)
                    .map(|(_, n)| n)
                    .sum();
                (name.as_str(), &e.latency, e.requests, ok)
            })
            .collect();
        rows.push(("(iteration)", &self.iteration, self.iteration.count, 0));
        if let Some(t) = &self.time_to_delivered {
            rows.push(("(to delivered)", t, t.count, 0));
        }
        for (name, l, requests, ok) in rows {
            let ok = if name.starts_with('(') { String::new() } else { ok.to_string() };
            let _ = writeln!(
                w,
                "{:<18}{:>10}{:>10}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}",
                name, requests, ok, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        let join = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "-".to_string()
            } else {
                m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(w, "\nstatuses     {}", join(&self.statuses));
        let _ = writeln!(w, "error codes  {}", join(&self.error_codes));
        let _ = writeln!(w, "outcomes     {}", join(&self.outcomes));
        out
    }
}
