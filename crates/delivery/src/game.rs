//! One game's state, shared by its worker, its calls and the dispatcher's operator methods: the
//! pacer and the outage hold, the in-flight bound, the counters and the operators' view of them.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hongbao_clock::SharedClock;
use hongbao_domain::GameIndex;
use hongbao_domain::campaign::Game;
use hongbao_queue::{QueueDepth, QueueError};
use tokio::sync::{Notify, Semaphore, watch};

use crate::config::DispatcherConfig;
use crate::ownership::SendWindow;
use crate::pacer::{Pacer, PacerSettings};
use crate::status::{DeadOrder, GameStatus};

/// See the module doc.
pub(crate) struct GameShared {
    pub(crate) index: GameIndex,
    pub(crate) id: String,
    capacity_per_s: f64,
    ceiling_per_s: f64,
    /// A call is abandoned after this long whatever the HTTP client does.
    pub(crate) call_guard: Duration,
    pub(crate) paused: watch::Sender<bool>,
    /// "Look again": an enqueue, or a hold lifted by a successful call.
    pub(crate) wake: Notify,
    /// A call got its answer: the pacer's window may have room again.
    pub(crate) answer: Notify,
    /// In-flight calls to this game, at most `in_flight_per_game_max`.
    pub(crate) permits: Arc<Semaphore>,
    in_flight_max: usize,
    control: Mutex<Control>,
    /// Orders with a call in flight: a lease lost and granted again while our call runs must
    /// not start a second concurrent call for the same order.
    pub(crate) in_flight_ids: Mutex<HashSet<String>>,
    pub(crate) counters: Counters,
    /// The game's handles in the process's metrics (hongbao-monitor), registered once here.
    pub(crate) metrics: hongbao_monitor::handles::GameMetrics,
    recent: Mutex<Recent>,
    recent_max: usize,
    /// Cleared when the worker ends (stop, or a panic: a bug, visible in the status).
    running: AtomicBool,
    /// Every "now" and every wait of this game's worker and calls.
    pub(crate) clock: SharedClock,
    /// When this process may send to the game: always, unless workers share the games.
    pub(crate) send_window: SendWindow,
}

/// The pacer and the outage hold; one short lock.
pub(crate) struct Control {
    pub(crate) pacer: Pacer,
    pub(crate) consecutive_failures: u32,
    /// No sends before this instant (monotonic µs): a hold after consecutive failures, or the
    /// single probe call in flight after a hold.
    pub(crate) hold_until_us: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) lease_lost: AtomicU64,
}

/// The most recent dead and expired orders, each list at most `recent_list_max` long.
#[derive(Default)]
struct Recent {
    dead: VecDeque<DeadOrder>,
    expired: VecDeque<String>,
}

/// Clears [`GameShared`]'s running flag however the worker ends, unwinding included.
pub(crate) struct RunningGuard(pub(crate) Arc<GameShared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent; a panic elsewhere does not matter.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, max: usize) {
    if list.len() >= max {
        list.pop_front();
    }
    list.push_back(item);
}

impl GameShared {
    /// The game's state at the start: its first send no earlier than `first_slot_us`.
    pub(crate) fn new(
        game: &Game,
        config: &DispatcherConfig,
        clock: SharedClock,
        first_slot_us: u64,
    ) -> GameShared {
        let capacity_per_s = config.scaled_capacity_per_s(game.delivery_capacity_per_s);
        let ceiling_per_s = capacity_per_s * config.pacing_headroom;
        let metrics = hongbao_monitor::handles::GameMetrics::new(&game.id);
        metrics.capacity.set(capacity_per_s);
        let settings = PacerSettings {
            ceiling_per_s,
            floor_per_s: config.rate_floor_per_s.min(ceiling_per_s),
            decrease_factor: config.aimd_decrease_factor,
            increase_per_s: ceiling_per_s * config.aimd_increase_share_per_s,
            decrease_hold_us: config.aimd_decrease_hold_ms.saturating_mul(1000),
        };
        GameShared {
            index: game.index,
            id: game.id.clone(),
            capacity_per_s,
            ceiling_per_s,
            call_guard: Duration::from_millis(
                game.idip_timeout_ms.saturating_add(config.call_guard_slack_ms),
            ),
            paused: watch::Sender::new(false),
            wake: Notify::new(),
            answer: Notify::new(),
            permits: Arc::new(Semaphore::new(config.in_flight_per_game_max)),
            in_flight_max: config.in_flight_per_game_max,
            control: Mutex::new(Control {
                pacer: Pacer::new(settings, first_slot_us),
                consecutive_failures: 0,
                hold_until_us: None,
            }),
            in_flight_ids: Mutex::new(HashSet::new()),
            counters: Counters::default(),
            metrics,
            recent: Mutex::new(Recent::default()),
            recent_max: config.recent_list_max,
            running: AtomicBool::new(true),
            clock,
            send_window: SendWindow::open(),
        }
    }

    pub(crate) fn control(&self) -> MutexGuard<'_, Control> {
        locked(&self.control)
    }

    /// Until when (monotonic µs) sends are still held, if they are.
    pub(crate) fn held_until_us(&self, now_us: u64) -> Option<u64> {
        self.control().hold_until_us.filter(|&until_us| until_us > now_us)
    }

    pub(crate) fn record_dead(&self, order_id: String, reason: String) {
        let mut recent = locked(&self.recent);
        push_bounded(&mut recent.dead, DeadOrder { order_id, reason }, self.recent_max);
    }

    pub(crate) fn record_expired(&self, order_id: String) {
        push_bounded(&mut locked(&self.recent).expired, order_id, self.recent_max);
    }

    /// The operators' view: the queue's `depth` (or why it is missing) and this game's state
    /// at `at_ms` (wall) / `now_us` (monotonic).
    pub(crate) fn status(
        &self,
        depth: Result<QueueDepth, QueueError>,
        at_ms: u64,
        now_us: u64,
    ) -> GameStatus {
        let (depth, queue_error) = match depth {
            Ok(d) => (d, None),
            Err(e) => (QueueDepth::default(), Some(e.to_string())),
        };
        let (rate_per_s, held, consecutive_failures) = {
            let mut c = self.control();
            let held = c.hold_until_us.is_some_and(|t| t > now_us);
            (c.pacer.rate_per_s(now_us), held, c.consecutive_failures)
        };
        let in_flight_max = self.in_flight_max as u64;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let recent = locked(&self.recent);
        GameStatus {
            game: self.id.clone(),
            index: self.index.0,
            running: self.running.load(Ordering::Relaxed),
            paused: *self.paused.borrow(),
            held,
            consecutive_failures,
            queue_depth: depth.entries,
            leased: depth.leased,
            retrying: depth.retrying,
            oldest_queued_age_ms: depth.oldest_ready_ms.map(|t| at_ms.saturating_sub(t)),
            queue_error,
            capacity_per_s: self.capacity_per_s,
            ceiling_per_s: self.ceiling_per_s,
            rate_per_s,
            in_flight: in_flight_max.saturating_sub(self.permits.available_permits() as u64),
            in_flight_max,
            delivered: load(&self.counters.delivered),
            duplicates: load(&self.counters.duplicates),
            busy: load(&self.counters.busy),
            retries: load(&self.counters.retries),
            dead: load(&self.counters.dead),
            expired: load(&self.counters.expired),
            lease_lost: load(&self.counters.lease_lost),
            recent_dead: recent.dead.iter().cloned().collect(),
            recent_expired: recent.expired.iter().cloned().collect(),
        }
    }
}
