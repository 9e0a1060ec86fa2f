//! The simulator's state and behaviour, free of HTTP: the handlers in `http.rs` parse requests
//! into the arguments here and map the outcomes to responses.
//!
//! Every game has its own locks (its ledger of serials and capacity window, its created roles,
//! its random stream), so one game's traffic never waits for another's. The only shared locks
//! are the fault settings (a read lock, held for a copy) and the delivery log's writer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hongbao_domain::Campaign;
use hongbao_domain::campaign::GameIndex;
use hongbao_domain::synth::{SynthModel, region_of_zone};
use hongbao_domain::{Role, RoleId, ZoneId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use crate::log::{CreatedRoleRecord, DeliveryItem, DeliveryLog, LogRecord, RoleLog};
use crate::window::SlidingWindow;
use crate::{SimConfig, SimError, lock};

/// Most roles created at runtime, over all games and users; past it creation is refused (507).
pub const CREATED_ROLES_MAX: u64 = 1_000_000;
/// Most roles one user may create in one zone of one game (a real game caps this too).
pub const CREATED_ROLES_PER_USER_ZONE_MAX: usize = 8;
/// Most distinct serials one game remembers; past it deliveries are refused (507) rather than
/// letting memory grow without bound. Well above any game's stock in the example campaign.
pub const SERIALS_PER_GAME_MAX: usize = 20_000_000;
/// Highest effective delivery capacity of one game (the window holds one instant per apply).
pub const CAPACITY_PER_S_MAX: u32 = 1_000_000;
/// Longest configurable latency or hang.
pub const LATENCY_MS_MAX: u64 = 60_000;

/// Latest start and longest duration of an outage (a year): keeps instant arithmetic in range.
pub const OUTAGE_HORIZON_S: u64 = 365 * 24 * 3600;

/// The fault and latency settings in force; `POST /idip/v1/faults` changes them at runtime.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub lose_rate: f64,
    pub role_latency_ms: u64,
    pub deliver_latency_ms: u64,
    pub timeout_hang_ms: u64,
}

/// A partial change of [`FaultSettings`]; absent fields keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    pub error_rate: Option<f64>,
    pub timeout_rate: Option<f64>,
    pub lose_rate: Option<f64>,
    pub role_latency_ms: Option<u64>,
    pub deliver_latency_ms: Option<u64>,
    pub timeout_hang_ms: Option<u64>,
}

impl FaultSettings {
    fn validate(&self) -> Result<(), SimError> {
        let rates = [
            ("error_rate", self.error_rate),
            ("timeout_rate", self.timeout_rate),
            ("lose_rate", self.lose_rate),
        ];
        for (field, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(field, format!("{rate} is not a probability in [0, 1]")));
            }
        }
        let latencies = [
            ("role_latency_ms", self.role_latency_ms),
            ("deliver_latency_ms", self.deliver_latency_ms),
            ("timeout_hang_ms", self.timeout_hang_ms),
        ];
        for (field, ms) in latencies {
            if ms > LATENCY_MS_MAX {
                return Err(invalid(field, format!("{ms} exceeds the maximum {LATENCY_MS_MAX}")));
            }
        }
        Ok(())
    }

    fn updated(mut self, u: &FaultsUpdate) -> FaultSettings {
        self.error_rate = u.error_rate.unwrap_or(self.error_rate);
        self.timeout_rate = u.timeout_rate.unwrap_or(self.timeout_rate);
        self.lose_rate = u.lose_rate.unwrap_or(self.lose_rate);
        self.role_latency_ms = u.role_latency_ms.unwrap_or(self.role_latency_ms);
        self.deliver_latency_ms = u.deliver_latency_ms.unwrap_or(self.deliver_latency_ms);
        self.timeout_hang_ms = u.timeout_hang_ms.unwrap_or(self.timeout_hang_ms);
        self
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> SimError {
    SimError::InvalidConfig { field: field.to_string(), reason: reason.into() }
}

/// `GET /idip/v1/stats`: counters since this simulator started (a restart resets them; the
/// delivery log, not these counters, is the game's durable truth).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsBody {
    pub games: BTreeMap<String, GameStats>,
    /// Role queries over all games.
    pub role_queries: u64,
}

/// One game's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameStats {
    /// Deliveries applied and logged.
    pub applied: u64,
    /// Deliveries refused because their serial was already applied.
    pub duplicates: u64,
    /// Deliveries refused because the game was at capacity.
    pub busy: u64,
    /// Deliveries answered `error` (injected faults, timeouts not applied, unknown roles,
    /// outages, full storage).
    pub errors: u64,
    /// Deliveries answered `applied` but recorded nowhere (`lose_rate`).
    pub lost: u64,
    /// The most deliveries applied (or lost) in any sliding one-second window.
    pub max_applied_in_1s: u64,
    pub role_queries: u64,
    /// Effective capacity: `delivery_capacity_per_s` × `capacity_scale`.
    pub capacity_per_s: u64,
    /// Serials loaded from the delivery log at startup.
    pub replayed: u64,
}

/// A delivery after the HTTP layer parsed and checked it.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub serial: String,
    pub user: u64,
    pub game: usize,
    pub zone_id: u16,
    pub role_id: u64,
    pub items: Vec<DeliveryItem>,
}

/// How a delivery ended; `http.rs` maps each to a status and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    Duplicate,
    Busy,
    /// Answered `error` with this reason (HTTP 200).
    Failed(&'static str),
    /// The game is in an outage window (HTTP 503).
    Outage,
    /// The simulator itself cannot record deliveries (HTTP 507 or 500).
    SerialStoreFull,
    LogUnavailable,
}

/// Why a role could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateRoleError {
    InvalidZone,
    TooManyForUser,
    StoreFull,
    /// The created-roles log could not be written: the role is not created, since a restart
    /// would forget it.
    LogUnavailable,
}

#[derive(Debug, Default)]
struct Counters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    max_applied_in_1s: AtomicU64,
    role_queries: AtomicU64,
    replayed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What must change together when a delivery is applied.
#[derive(Debug)]
struct Ledger {
    serials: HashSet<String>,
    window: SlidingWindow,
}

#[derive(Debug)]
struct GameState {
    id: String,
    index: GameIndex,
    capacity_per_s: u32,
    ledger: Mutex<Ledger>,
    /// Roles created at runtime, by user; kept across a restart by the role log when there is one.
    created: Mutex<HashMap<u64, Vec<Role>>>,
    rng: Mutex<SmallRng>,
    counters: Counters,
}

/// One outage window, in the simulator's clock.
#[derive(Clone, Copy, Debug)]
struct OutageWindow {
    game: usize,
    from: Instant,
    until: Instant,
}

/// The simulator: shared by every request handler.
#[derive(Debug)]
pub struct GameSim {
    model: SynthModel,
    games: Vec<GameState>,
    faults: RwLock<FaultSettings>,
    outages: Vec<OutageWindow>,
    log: Option<DeliveryLog>,
    role_log: Option<RoleLog>,
    role_queries: AtomicU64,
    created_roles: AtomicU64,
}

impl GameSim {
    /// Checks `config` against the campaign, opens the delivery log (replaying it to rebuild
    /// each game's serials) and starts the outage clock.
    pub fn new(campaign: &Campaign, config: SimConfig) -> Result<Arc<GameSim>, SimError> {
        let faults = FaultSettings {
            error_rate: config.error_rate,
            timeout_rate: config.timeout_rate,
            lose_rate: config.lose_rate,
            role_latency_ms: config.role_latency_ms,
            deliver_latency_ms: config.deliver_latency_ms,
            timeout_hang_ms: config.timeout_hang_ms,
        };
        faults.validate()?;
        let scale = config.capacity_scale;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(invalid("capacity_scale", format!("{scale} must be a positive number")));
        }

        let started = Instant::now();
        let mut outages = Vec::with_capacity(config.outages.len());
        for o in &config.outages {
            let game = campaign.games.iter().position(|g| g.id == o.game).ok_or_else(|| {
                invalid("outages", format!("unknown game `{}` in outage", o.game))
            })?;
            if o.start_s > OUTAGE_HORIZON_S || o.duration_s > OUTAGE_HORIZON_S {
                return Err(invalid(
                    "outages",
                    format!("outage of `{}` reaches beyond {OUTAGE_HORIZON_S} s", o.game),
                ));
            }
            let from = started + Duration::from_secs(o.start_s);
            let until = from + Duration::from_secs(o.duration_s);
            outages.push(OutageWindow { game, from, until });
        }

        let games: Vec<GameState> = campaign
            .games
            .iter()
            .map(|g| {
                let scaled = (f64::from(g.delivery_capacity_per_s) * scale).round();
                // `as` saturates for floats; the clamp makes the bounds explicit.
                let capacity_per_s = (scaled as u64).clamp(1, u64::from(CAPACITY_PER_S_MAX));
                let capacity_per_s = u32::try_from(capacity_per_s).unwrap_or(CAPACITY_PER_S_MAX);
                GameState {
                    id: g.id.clone(),
                    index: g.index,
                    capacity_per_s,
                    ledger: Mutex::new(Ledger {
                        serials: HashSet::new(),
                        window: SlidingWindow::new(capacity_per_s),
                    }),
                    created: Mutex::new(HashMap::new()),
                    rng: Mutex::new(SmallRng::seed_from_u64(
                        config.seed ^ (u64::from(g.index.0) << 56) ^ 0x4741_4D45_5349_4D00,
                    )),
                    counters: Counters::default(),
                }
            })
            .collect();

        let log = match &config.log_path {
            None => None,
            Some(path) => Some(Self::replay(path, &games)?),
        };
        let model = SynthModel::new(config.seed, config.users, campaign.games.len());
        let created_roles = AtomicU64::new(0);
        let role_log = match &config.roles_log_path {
            None => None,
            Some(path) => Some(Self::replay_roles(path, &games, &created_roles)?),
        };

        Ok(Arc::new(GameSim {
            model,
            games,
            faults: RwLock::new(faults),
            outages,
            log,
            role_log,
            role_queries: AtomicU64::new(0),
            created_roles,
        }))
    }

    /// Rebuilds the roles players created before a restart, within the same bounds creation
    /// keeps.
    fn replay_roles(
        path: &Path,
        games: &[GameState],
        created_roles: &AtomicU64,
    ) -> Result<RoleLog, SimError> {
        RoleLog::open("role log", path, |record, line| {
            let corrupt =
                |reason: String| SimError::LogCorrupt { path: path.to_path_buf(), line, reason };
            let game = games
                .iter()
                .find(|g| g.id == record.game)
                .ok_or_else(|| corrupt(format!("unknown game `{}`", record.game)))?;
            let region = region_of_zone(record.zone_id)
                .ok_or_else(|| corrupt(format!("unknown zone {}", record.zone_id)))?;
            if created_roles.fetch_add(1, Ordering::AcqRel) >= CREATED_ROLES_MAX {
                return Err(corrupt(format!("more than {CREATED_ROLES_MAX} created roles")));
            }
            lock(&game.created).entry(record.user).or_default().push(Role {
                zone_id: ZoneId(record.zone_id),
                region: region.to_string(),
                role_id: RoleId(record.role_id),
                level: 1,
            });
            Ok(())
        })
    }

    fn replay(path: &Path, games: &[GameState]) -> Result<DeliveryLog, SimError> {
        DeliveryLog::open("delivery log", path, |record, line| {
            let corrupt =
                |reason: String| SimError::LogCorrupt { path: path.to_path_buf(), line, reason };
            let game = games
                .iter()
                .find(|g| g.id == record.game)
                .ok_or_else(|| corrupt(format!("unknown game `{}`", record.game)))?;
            let mut ledger = lock(&game.ledger);
            if ledger.serials.len() >= SERIALS_PER_GAME_MAX {
                return Err(corrupt(format!(
                    "more than {SERIALS_PER_GAME_MAX} serials for game `{}`",
                    game.id
                )));
            }
            // A serial twice in the log would mean a double delivery; keep reading (the log is
            // the game's truth, not ours to judge) but say so.
            if !ledger.serials.insert(record.serial) {
                tracing::warn!(line, game = %game.id, "serial applied twice in the delivery log");
            }
            bump(&game.counters.replayed);
            Ok(())
        })
    }

    /// The router serving the HTTP contract (DESIGN.md §4):
    /// `GET|POST /idip/v1/roles`, `POST /idip/v1/deliver`, `GET /idip/v1/stats`,
    /// `GET|POST /idip/v1/faults`, `GET /healthz`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        crate::http::router(Arc::clone(self))
    }

    /// The counters `GET /idip/v1/stats` returns.
    pub fn stats(&self) -> StatsBody {
        let games = self
            .games
            .iter()
            .map(|g| {
                let c = &g.counters;
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let stats = GameStats {
                    applied: load(&c.applied),
                    duplicates: load(&c.duplicates),
                    busy: load(&c.busy),
                    errors: load(&c.errors),
                    lost: load(&c.lost),
                    max_applied_in_1s: load(&c.max_applied_in_1s),
                    role_queries: load(&c.role_queries),
                    capacity_per_s: u64::from(g.capacity_per_s),
                    replayed: load(&c.replayed),
                };
                (g.id.clone(), stats)
            })
            .collect();
        StatsBody { games, role_queries: self.role_queries.load(Ordering::Relaxed) }
    }

    /// The fault settings in force.
    pub fn faults(&self) -> FaultSettings {
        *self.faults.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes some fault settings; all or nothing. Returns the settings now in force.
    pub fn set_faults(&self, update: &FaultsUpdate) -> Result<FaultSettings, SimError> {
        let mut faults = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        let next = faults.updated(update);
        next.validate()?;
        *faults = next;
        Ok(next)
    }

    /// Flushes and syncs the delivery log, if any (every append is already flushed to the
    /// operating system; this makes it durable against a machine crash too).
    pub fn flush_log(&self) -> std::io::Result<()> {
        match &self.log {
            Some(log) => log.sync(),
            None => Ok(()),
        }
    }

    /// The index of the game with this id.
    pub(crate) fn game_index(&self, id: &str) -> Option<usize> {
        self.games.iter().position(|g| g.id == id)
    }

    /// A user's roles in one game: the synthetic model's, then those created at runtime.
    pub(crate) async fn query_roles(&self, user: u64, game: usize) -> Vec<Role> {
        let g = &self.games[game];
        bump(&self.role_queries);
        bump(&g.counters.role_queries);
        let latency_ms = self.faults().role_latency_ms;
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        let mut roles = self.model.roles(user, g.index);
        if let Some(created) = lock(&g.created).get(&user) {
            roles.extend(created.iter().cloned());
        }
        roles
    }

    /// Creates a level-1 role for `user` in `zone_id` of a game.
    pub(crate) fn create_role(
        &self,
        user: u64,
        game: usize,
        zone_id: u16,
    ) -> Result<Role, CreateRoleError> {
        let g = &self.games[game];
        let region = region_of_zone(zone_id).ok_or(CreateRoleError::InvalidZone)?;
        // Reserve a slot in the global bound first, give it back if this user is at their cap.
        self.created_roles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < CREATED_ROLES_MAX).then_some(n + 1)
            })
            .map_err(|_| CreateRoleError::StoreFull)?;
        let mut created = lock(&g.created);
        let roles = created.entry(user).or_default();
        let in_zone = roles.iter().filter(|r| r.zone_id == ZoneId(zone_id)).count();
        if in_zone >= CREATED_ROLES_PER_USER_ZONE_MAX {
            self.created_roles.fetch_sub(1, Ordering::AcqRel);
            return Err(CreateRoleError::TooManyForUser);
        }
        let role = Role {
            zone_id: ZoneId(zone_id),
            region: region.to_string(),
            role_id: RoleId(self.model.created_role_id(user, g.index, zone_id, in_zone as u64)),
            level: 1,
        };
        if let Some(log) = &self.role_log {
            let record =
                CreatedRoleRecord { game: g.id.clone(), user, zone_id, role_id: role.role_id.0 };
            if log.append(&record).is_err() {
                self.created_roles.fetch_sub(1, Ordering::AcqRel);
                return Err(CreateRoleError::LogUnavailable);
            }
        }
        roles.push(role.clone());
        Ok(role)
    }

    fn role_exists(&self, user: u64, game: usize, zone_id: u16, role_id: u64) -> bool {
        let g = &self.games[game];
        let matches = |r: &Role| r.zone_id == ZoneId(zone_id) && r.role_id == RoleId(role_id);
        self.model.roles(user, g.index).iter().any(matches)
            || lock(&g.created).get(&user).is_some_and(|roles| roles.iter().any(matches))
    }

    fn in_outage(&self, game: usize, now: Instant) -> bool {
        self.outages.iter().any(|o| o.game == game && o.from <= now && now < o.until)
    }

    /// Delivers a gift: checks run in the order a real game would meet them (down? slow;
    /// role exists? faults; already applied? capacity), and only an applied delivery is logged.
    pub(crate) async fn deliver(&self, d: Delivery) -> Outcome {
        let g = &self.games[d.game];
        let outcome = self.deliver_inner(&d).await;
        match outcome {
            Outcome::Applied => {}
            Outcome::Duplicate => bump(&g.counters.duplicates),
            Outcome::Busy => bump(&g.counters.busy),
            Outcome::Failed(_)
            | Outcome::Outage
            | Outcome::SerialStoreFull
            | Outcome::LogUnavailable => bump(&g.counters.errors),
        }
        outcome
    }

    async fn deliver_inner(&self, d: &Delivery) -> Outcome {
        let g = &self.games[d.game];
        if self.in_outage(d.game, Instant::now()) {
            return Outcome::Outage;
        }
        let faults = self.faults();
        if faults.deliver_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.deliver_latency_ms)).await;
        }
        if !self.role_exists(d.user, d.game, d.zone_id, d.role_id) {
            return Outcome::Failed("role_not_found");
        }
        // Draw every fault on every request so one setting does not shift another's stream.
        let (error, timeout, applied_after_timeout, lose) = {
            let mut rng = lock(&g.rng);
            (
                rng.random::<f64>() < faults.error_rate,
                rng.random::<f64>() < faults.timeout_rate,
                rng.random::<bool>(),
                rng.random::<f64>() < faults.lose_rate,
            )
        };
        if error {
            return Outcome::Failed("injected_error");
        }
        if timeout {
            // The caller has given up by the time this returns; whether the game applied it
            // anyway is exactly what the caller cannot know.
            tokio::time::sleep(Duration::from_millis(faults.timeout_hang_ms)).await;
            if !applied_after_timeout {
                return Outcome::Failed("timeout");
            }
        }
        self.apply(g, d, lose)
    }

    fn apply(&self, g: &GameState, d: &Delivery, lose: bool) -> Outcome {
        let mut ledger = lock(&g.ledger);
        if ledger.serials.contains(&d.serial) {
            return Outcome::Duplicate;
        }
        if !lose && ledger.serials.len() >= SERIALS_PER_GAME_MAX {
            return Outcome::SerialStoreFull;
        }
        let Some(in_window) = ledger.window.try_admit(Instant::now()) else {
            return Outcome::Busy;
        };
        g.counters.max_applied_in_1s.fetch_max(in_window as u64, Ordering::Relaxed);
        if lose {
            // The game did the work and then dropped it: capacity used, nothing recorded.
            bump(&g.counters.lost);
            return Outcome::Applied;
        }
        if let Some(log) = &self.log {
            let record = LogRecord {
                serial: d.serial.clone(),
                game: g.id.clone(),
                user: d.user,
                zone_id: d.zone_id,
                role_id: d.role_id,
                items: d.items.clone(),
                applied_at_ms: now_unix_ms(),
            };
            // Under the game's lock, so the log order per game is the apply order and a
            // concurrent repeat of this serial waits and then sees it.
            if log.append(&record).is_err() {
                return Outcome::LogUnavailable;
            }
        }
        let inserted = ledger.serials.insert(d.serial.clone());
        assert!(inserted, "serial checked absent under the same lock");
        bump(&g.counters.applied);
        Outcome::Applied
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
