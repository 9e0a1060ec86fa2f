//! The dispatcher: one worker task per game, each pacing its own calls, so a slow, failing or
//! paused game never holds up the others.
//!
//! A worker loops: lease a small batch (what its pacer sends in `lease_ahead_ms`), expire what
//! is past its deadline, take an in-flight permit, wait for the pacer's slot, and spawn the
//! call as a task it owns. The call's task records the outcome in the queue and feeds the
//! game's control (AIMD on busy, hold after consecutive failures).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use hongbao_domain::{Campaign, GameIndex};
use hongbao_gateway::{DeliveryOutcome, DeliveryRequest, GatewayError, IdipClient};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Duration, Instant};

use crate::config::DispatcherConfig;
use crate::pacer::{Pacer, PacerSettings, Slot};
use crate::status::{DeadOrder, DispatcherStatus, GameStatus};
use hongbao_queue::{DeliveryQueue, FinalState, Finish, Leased, QueueDepth, QueueError, Retry};

/// Why the dispatcher could not start or refused an operator's request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("invalid dispatcher setting {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("no game with index {}", .0.0)]
    UnknownGame(GameIndex),
}

/// Runs the delivery workers until [`Dispatcher::shutdown`] or until dropped.
///
/// Dropping it aborts every worker and call at once, as a crash would: leased orders stay
/// leased until the queue gives them back (lease expiry, restart), and a call that reached the
/// game is answered `duplicate` when redelivered. `shutdown` stops cleanly instead.
pub struct Dispatcher {
    games: Arc<[Arc<GameShared>]>,
    depth: Arc<dyn DepthProbe>,
    stop: watch::Sender<bool>,
    workers: JoinSet<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("games", &self.games.len()).finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Starts one worker per game of `campaign`, delivering through `client` (built for the
    /// same campaign: it carries each game's URL and `idip_timeout_ms`) from `queue`.
    ///
    /// Spawns tasks: call it inside a Tokio runtime.
    pub fn start<Q: DeliveryQueue>(
        campaign: &Campaign,
        client: IdipClient,
        queue: Arc<Q>,
        config: DispatcherConfig,
    ) -> Result<Dispatcher, DispatchError> {
        config.validate()?;
        if client.games() != campaign.games.len() {
            return Err(DispatchError::InvalidConfig {
                field: "client".to_string(),
                reason: format!(
                    "built for {} games, the campaign has {}",
                    client.games(),
                    campaign.games.len()
                ),
            });
        }
        let config = Arc::new(config);
        let first_slot = Instant::now() + Duration::from_millis(config.start_quiet_ms);
        let games: Arc<[Arc<GameShared>]> = campaign
            .games
            .iter()
            .map(|g| {
                let capacity_per_s = config.scaled_capacity_per_s(g.delivery_capacity_per_s);
                let ceiling_per_s = capacity_per_s * config.pacing_headroom;
                let settings = PacerSettings {
                    ceiling_per_s,
                    floor_per_s: config.rate_floor_per_s.min(ceiling_per_s),
                    decrease_factor: config.aimd_decrease_factor,
                    increase_per_s: ceiling_per_s * config.aimd_increase_share_per_s,
                    decrease_hold: Duration::from_millis(config.aimd_decrease_hold_ms),
                };
                Arc::new(GameShared {
                    index: g.index,
                    id: g.id.clone(),
                    capacity_per_s,
                    ceiling_per_s,
                    call_guard: Duration::from_millis(
                        g.idip_timeout_ms.saturating_add(config.call_guard_slack_ms),
                    ),
                    paused: watch::Sender::new(false),
                    wake: Notify::new(),
                    answer: Notify::new(),
                    permits: Arc::new(Semaphore::new(config.in_flight_per_game_max)),
                    in_flight_max: config.in_flight_per_game_max,
                    control: Mutex::new(Control {
                        pacer: Pacer::new(settings, first_slot),
                        consecutive_failures: 0,
                        hold_until: None,
                    }),
                    in_flight_ids: Mutex::new(HashSet::new()),
                    counters: Counters::default(),
                    recent: Mutex::new(Recent::default()),
                    running: AtomicBool::new(true),
                })
            })
            .collect();

        let (stop, _) = watch::channel(false);
        let mut workers = JoinSet::new();
        for shared in games.iter() {
            let worker = Arc::new(Worker {
                shared: shared.clone(),
                queue: queue.clone(),
                client: client.clone(),
                config: config.clone(),
                rng: Mutex::new(SmallRng::from_os_rng()),
            });
            workers.spawn(worker.run(stop.subscribe()));
        }
        Ok(Dispatcher { games, depth: Arc::new(Probe(queue)), stop, workers })
    }

    /// Stops leasing and sending for one game; unsent leased orders go back to the queue.
    /// Calls already in flight finish normally.
    pub fn pause(&self, game: GameIndex) -> Result<(), DispatchError> {
        self.game(game)?.paused.send_replace(true);
        Ok(())
    }

    /// Resumes a paused game.
    pub fn resume(&self, game: GameIndex) -> Result<(), DispatchError> {
        self.game(game)?.paused.send_replace(false);
        Ok(())
    }

    /// Tells a game's worker to look at the queue now (call after enqueueing), instead of at
    /// its next idle poll. Unknown games are ignored.
    pub fn wake(&self, game: GameIndex) {
        if let Ok(g) = self.game(game) {
            g.wake.notify_one();
        }
    }

    /// The index of the game with this id.
    pub fn game_index(&self, id: &str) -> Option<GameIndex> {
        self.games.iter().find(|g| g.id == id).map(|g| g.index)
    }

    /// Every game's status: the queue's backlog and this dispatcher's counters.
    pub async fn status(&self) -> DispatcherStatus {
        let at_ms = now_unix_ms();
        let mut games = Vec::with_capacity(self.games.len());
        for g in self.games.iter() {
            let depth = self.depth.depth(g.index).await;
            games.push(g.status(depth, at_ms, Instant::now()));
        }
        DispatcherStatus { at_ms, games }
    }

    /// Stops cleanly: no new calls, unsent leased orders handed back to the queue, calls in
    /// flight awaited (each bounded by its game's timeout) and their outcomes recorded.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        while let Some(joined) = self.workers.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    fn game(&self, game: GameIndex) -> Result<&GameShared, DispatchError> {
        self.games.get(usize::from(game.0)).map(|g| &**g).ok_or(DispatchError::UnknownGame(game))
    }
}

/// The queue's `depth`, object-safe, so [`Dispatcher`] is not generic over the queue.
trait DepthProbe: Send + Sync {
    fn depth(
        &self,
        game: GameIndex,
    ) -> Pin<Box<dyn Future<Output = Result<QueueDepth, QueueError>> + Send + '_>>;
}

struct Probe<Q>(Arc<Q>);

impl<Q: DeliveryQueue> DepthProbe for Probe<Q> {
    fn depth(
        &self,
        game: GameIndex,
    ) -> Pin<Box<dyn Future<Output = Result<QueueDepth, QueueError>> + Send + '_>> {
        Box::pin(self.0.depth(game))
    }
}

/// One game's state shared by its worker, its calls and the dispatcher's operator methods.
struct GameShared {
    index: GameIndex,
    id: String,
    capacity_per_s: f64,
    ceiling_per_s: f64,
    /// A call is abandoned after this long whatever the HTTP client does.
    call_guard: Duration,
    paused: watch::Sender<bool>,
    /// "Look again": an enqueue, or a hold lifted by a successful call.
    wake: Notify,
    /// A call got its answer: the pacer's window may have room again.
    answer: Notify,
    /// In-flight calls to this game, at most `in_flight_per_game_max`.
    permits: Arc<Semaphore>,
    in_flight_max: usize,
    control: Mutex<Control>,
    /// Orders with a call in flight: a lease lost and granted again while our call runs must
    /// not start a second concurrent call for the same order.
    in_flight_ids: Mutex<HashSet<String>>,
    counters: Counters,
    recent: Mutex<Recent>,
    /// Cleared when the worker ends (stop, or a panic: a bug, visible in the status).
    running: AtomicBool,
}

/// Clears [`GameShared::running`] however the worker ends, unwinding included.
struct RunningGuard(Arc<GameShared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

/// The pacer and the outage hold; one short lock.
struct Control {
    pacer: Pacer,
    consecutive_failures: u32,
    /// No sends before this instant: a hold after consecutive failures, or the single probe
    /// call in flight after a hold.
    hold_until: Option<Instant>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    duplicates: AtomicU64,
    busy: AtomicU64,
    retries: AtomicU64,
    dead: AtomicU64,
    expired: AtomicU64,
    lease_lost: AtomicU64,
}

#[derive(Default)]
struct Recent {
    dead: VecDeque<DeadOrder>,
    expired: VecDeque<String>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent; a panic elsewhere does not matter.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, max: usize) {
    if list.len() >= max {
        list.pop_front();
    }
    list.push_back(item);
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl GameShared {
    fn control(&self) -> MutexGuard<'_, Control> {
        locked(&self.control)
    }

    /// How long sends are still held, if they are.
    fn held_for(&self, now: Instant) -> Option<Duration> {
        let until = self.control().hold_until?;
        (until > now).then(|| until - now)
    }

    fn status(
        &self,
        depth: Result<QueueDepth, QueueError>,
        at_ms: u64,
        now: Instant,
    ) -> GameStatus {
        let (depth, queue_error) = match depth {
            Ok(d) => (d, None),
            Err(e) => (QueueDepth::default(), Some(e.to_string())),
        };
        let (rate_per_s, held, consecutive_failures) = {
            let mut c = self.control();
            (c.pacer.rate_per_s(now), c.hold_until.is_some_and(|t| t > now), c.consecutive_failures)
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

/// What a call's answer means for the order.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Applied now or before (`duplicate`).
    Delivered { duplicate: bool },
    /// Over capacity: the game did no work. Retry soon, slow down.
    Busy,
    /// Failed or unknown (timeout, outage, transient refusal): retry with backoff.
    Failed(String),
    /// No retry helps.
    Permanent(String),
}

fn verdict(
    answer: Result<Result<DeliveryOutcome, GatewayError>, tokio::time::error::Elapsed>,
) -> Verdict {
    match answer {
        Err(_) => Verdict::Failed("no answer within the call guard".to_string()),
        Ok(Ok(DeliveryOutcome::Applied)) => Verdict::Delivered { duplicate: false },
        Ok(Ok(DeliveryOutcome::Duplicate)) => Verdict::Delivered { duplicate: true },
        Ok(Ok(DeliveryOutcome::Busy)) => Verdict::Busy,
        Ok(Ok(DeliveryOutcome::Error { reason, permanent: true })) => Verdict::Permanent(reason),
        Ok(Ok(DeliveryOutcome::Error { reason, permanent: false })) => Verdict::Failed(reason),
        // A game outside the campaign: the order itself is wrong.
        Ok(Err(e @ GatewayError::UnknownGame(_))) => Verdict::Permanent(e.to_string()),
        // Timeouts and outages, and also protocol errors and refusals of the endpoint itself
        // (a misconfigured URL): the game, not the order, is at fault, so retry (bounded).
        Ok(Err(e)) => Verdict::Failed(e.to_string()),
    }
}

/// The delay before retry number `attempts` (≥ 1): full jitter over an exponential bound.
fn backoff_ms(rng: &mut SmallRng, attempts: u32, base_ms: u64, cap_ms: u64) -> u64 {
    let shift = attempts.saturating_sub(1).min(32);
    let bound = base_ms.saturating_mul(1u64 << shift).min(cap_ms);
    rng.random_range(0..=bound)
}

/// Waits until `stop` says stop (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One game's worker.
struct Worker<Q: DeliveryQueue> {
    shared: Arc<GameShared>,
    queue: Arc<Q>,
    client: IdipClient,
    config: Arc<DispatcherConfig>,
    rng: Mutex<SmallRng>,
}

/// Why a send did not happen now.
enum Admit {
    Go,
    Wait,
}

impl<Q: DeliveryQueue> Worker<Q> {
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let _running = RunningGuard(self.shared.clone());
        let mut paused = self.shared.paused.subscribe();
        let mut buffer: VecDeque<Leased<Q::Lease>> = VecDeque::new();
        // The next lease, already asked for while the buffer still holds a few sends: a lease
        // is a round trip to the store's writer, and waiting for it with an empty buffer would
        // cost the pacer its slots.
        let mut pending: Option<PendingLease<Q::Lease>> = None;
        let mut calls: JoinSet<()> = JoinSet::new();
        let idle = Duration::from_millis(self.config.idle_poll_ms);
        loop {
            reap(&mut calls);
            if *stop.borrow() {
                break;
            }
            if *paused.borrow() {
                self.settle_pending(&mut pending, &mut buffer).await;
                self.hand_back(&mut buffer).await;
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = paused.wait_for(|p| !*p) => continue,
                }
            }
            if let Some(wait) = self.shared.held_for(Instant::now()) {
                // Possibly a long outage: do not sit on leases meanwhile.
                self.settle_pending(&mut pending, &mut buffer).await;
                self.hand_back(&mut buffer).await;
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = paused.changed() => {}
                    _ = self.shared.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            if pending.as_ref().is_some_and(JoinHandle::is_finished) {
                self.settle_pending(&mut pending, &mut buffer).await;
            }
            if pending.is_none() && buffer.len() <= self.low_water() {
                pending = Some(self.start_lease());
            }
            let Some(entry) = buffer.pop_front() else {
                if !self.settle_pending(&mut pending, &mut buffer).await {
                    tokio::select! {
                        _ = stopped(&mut stop) => break,
                        _ = paused.changed() => {}
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep(idle) => {}
                    }
                }
                continue;
            };

            let now_ms = now_unix_ms();
            if now_ms >= entry.order.deliver_by_ms {
                self.expire(entry, now_ms).await;
                continue;
            }
            if locked(&self.shared.in_flight_ids).contains(&entry.order.order_id) {
                // Our earlier lease of this order was lost while its call runs; that call
                // settles the order. Put this lease back for after the call's longest time.
                let ready_at_ms = now_ms + self.shared.call_guard.as_millis() as u64;
                let error = "leased again while a call was in flight".to_string();
                self.retry(entry, Retry { ready_at_ms, error, at_ms: now_ms }).await;
                continue;
            }
            let permit = tokio::select! {
                biased;
                _ = stopped(&mut stop) => {
                    buffer.push_front(entry);
                    break;
                }
                permit = self.shared.permits.clone().acquire_owned() => {
                    permit.expect("the permits semaphore is never closed")
                }
            };
            let slot = loop {
                match self.shared.control().pacer.reserve(Instant::now()) {
                    Slot::At(slot) => break Some(slot),
                    Slot::AfterAnAnswer => {}
                }
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => break None,
                    _ = self.shared.answer.notified() => {}
                }
            };
            let Some(slot) = slot else {
                buffer.push_front(entry);
                break;
            };
            // A slot already due is used after a plain yield (the calls and the other games
            // run first). Even a past deadline given to the timer waits for the timer driver's
            // next turn (it compares with the time of its last turn, not the clock), and on a
            // busy runtime turns come about every millisecond: one sleep per send capped a 900/s
            // game near 850/s.
            if slot <= Instant::now() {
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => {
                        self.shared.control().pacer.unused();
                        buffer.push_front(entry);
                        break;
                    }
                    _ = tokio::time::sleep_until(slot) => {}
                }
            }
            // Paused or held meanwhile: keep the order for later (the slot is simply lost).
            if *paused.borrow() {
                self.shared.control().pacer.unused();
                buffer.push_front(entry);
                continue;
            }
            let now_ms = now_unix_ms();
            if now_ms >= entry.order.deliver_by_ms {
                self.shared.control().pacer.unused();
                self.expire(entry, now_ms).await;
                continue;
            }
            if let Admit::Wait = self.admit(Instant::now()) {
                self.shared.control().pacer.unused();
                buffer.push_front(entry);
                continue;
            }
            locked(&self.shared.in_flight_ids).insert(entry.order.order_id.clone());
            calls.spawn(self.clone().call(entry, permit));
        }

        // Clean stop: unsent leases back, calls in flight awaited and recorded.
        self.settle_pending(&mut pending, &mut buffer).await;
        self.hand_back(&mut buffer).await;
        while let Some(joined) = calls.join_next().await {
            resume_if_panicked(joined);
        }
    }

    /// Asks for the next batch, sized to what the pacer sends in `lease_ahead_ms`, in its own
    /// task so the sends go on meanwhile.
    fn start_lease(&self) -> PendingLease<Q::Lease> {
        let rate_per_s = self.shared.control().pacer.rate_per_s(Instant::now());
        let ahead = rate_per_s * self.config.lease_ahead_ms as f64 / 1000.0;
        let max = (ahead.ceil() as usize).clamp(1, self.config.lease_batch_max);
        let queue = self.queue.clone();
        let game = self.shared.index;
        tokio::spawn(async move {
            let leased = queue.lease(game, max, now_unix_ms()).await;
            if let Ok(leased) = &leased {
                assert!(leased.len() <= max, "the queue leased more than asked");
            }
            leased
        })
    }

    /// Sends left in the buffer below which the next lease is asked for: what the pacer sends
    /// in `LEASE_LOW_WATER_MS`.
    fn low_water(&self) -> usize {
        let rate_per_s = self.shared.control().pacer.rate_per_s(Instant::now());
        (rate_per_s * LEASE_LOW_WATER_MS as f64 / 1000.0).ceil() as usize
    }

    /// Waits for the lease asked for (if any) and adds what it got to the buffer. Returns
    /// whether the buffer now holds anything. Never drops a lease: every leased order is either
    /// sent or handed back.
    async fn settle_pending(
        &self,
        pending: &mut Option<PendingLease<Q::Lease>>,
        buffer: &mut VecDeque<Leased<Q::Lease>>,
    ) -> bool {
        if let Some(handle) = pending.take() {
            match handle.await {
                Ok(Ok(leased)) => {
                    for l in &leased {
                        assert_eq!(
                            l.order.game, self.shared.index,
                            "the queue leased another game"
                        );
                    }
                    buffer.extend(leased);
                }
                Ok(Err(e)) => {
                    tracing::warn!(game = %self.shared.id, error = %e, "cannot lease orders")
                }
                Err(e) => resume_if_panicked(Err(e)),
            }
        }
        !buffer.is_empty()
    }

    /// Lets a send through unless the game is held. After consecutive failures it lets one
    /// probe through and holds the rest until the probe's answer.
    fn admit(&self, now: Instant) -> Admit {
        let mut c = self.shared.control();
        if c.hold_until.is_some_and(|t| t > now) {
            return Admit::Wait;
        }
        if c.consecutive_failures >= self.config.hold_after_failures {
            c.hold_until = Some(now + self.shared.call_guard);
        }
        Admit::Go
    }

    /// One delivery call and its record.
    async fn call(self: Arc<Self>, entry: Leased<Q::Lease>, permit: OwnedSemaphorePermit) {
        let o = &entry.order;
        let request = DeliveryRequest {
            serial: o.order_id.clone(),
            user: o.user,
            game: o.game,
            zone_id: o.zone_id,
            role_id: o.role_id,
            items: o.items.clone(),
        };
        let answer =
            tokio::time::timeout(self.shared.call_guard, self.client.deliver(&request)).await;
        // Answered, or given up waiting for: either way it has arrived if it ever will (as far
        // as we can know), and it leaves the pacer's window a second from now.
        self.shared.control().pacer.answered(Instant::now());
        self.shared.answer.notify_one();
        drop(permit);
        let order_id = request.serial;
        self.settle(entry, verdict(answer)).await;
        locked(&self.shared.in_flight_ids).remove(&order_id);
    }

    async fn settle(&self, entry: Leased<Q::Lease>, verdict: Verdict) {
        let now_ms = now_unix_ms();
        let now = Instant::now();
        let attempts = entry.order.attempts;
        let deliver_by_ms = entry.order.deliver_by_ms;
        // A retry after the deadline is due at the deadline, where it expires on time.
        let ready_at = |delay_ms: u64| now_ms.saturating_add(delay_ms).min(deliver_by_ms);
        match verdict {
            Verdict::Delivered { duplicate } => {
                self.answered();
                let state = FinalState::Delivered { duplicate };
                if self.finish(entry, Finish { state, at_ms: now_ms }).await {
                    bump(&self.shared.counters.delivered);
                    if duplicate {
                        bump(&self.shared.counters.duplicates);
                    }
                }
            }
            Verdict::Busy => {
                bump(&self.shared.counters.busy);
                self.answered();
                let lowered = {
                    let mut c = self.shared.control();
                    c.pacer.on_busy(now).then(|| c.pacer.rate_per_s(now))
                };
                if let Some(rate) = lowered {
                    tracing::info!(game = %self.shared.id, rate_per_s = rate, "game busy: rate lowered");
                }
                // No attempt made: back in its place, sent again at the lowered rate.
                self.release(entry).await;
            }
            Verdict::Permanent(reason) => {
                self.answered();
                self.dead(entry, reason, now_ms).await;
            }
            Verdict::Failed(reason) => {
                self.failed(now);
                let attempts = attempts + 1;
                if attempts >= self.config.attempts_max {
                    let reason = format!("{attempts} attempts failed, the last: {reason}");
                    self.dead(entry, reason, now_ms).await;
                    return;
                }
                let delay_ms = backoff_ms(
                    &mut locked(&self.rng),
                    attempts,
                    self.config.retry_base_ms,
                    self.config.retry_cap_ms,
                );
                tracing::debug!(game = %self.shared.id, order = %entry.order.order_id, attempts, delay_ms, %reason, "delivery failed: retrying");
                let retry = Retry { ready_at_ms: ready_at(delay_ms), error: reason, at_ms: now_ms };
                if self.retry(entry, retry).await {
                    bump(&self.shared.counters.retries);
                }
            }
        }
    }

    /// The game answered: any hold ends, and the worker looks again at once.
    fn answered(&self) {
        let lifted = {
            let mut c = self.shared.control();
            c.consecutive_failures = 0;
            c.hold_until.take().is_some()
        };
        if lifted {
            tracing::info!(game = %self.shared.id, "game answers again: hold lifted");
            self.shared.wake.notify_one();
        }
    }

    /// A failed call: after `hold_after_failures` in a row, hold sends for an exponentially
    /// growing while (one probe after each hold).
    fn failed(&self, now: Instant) {
        let mut c = self.shared.control();
        c.consecutive_failures = c.consecutive_failures.saturating_add(1);
        let over = c.consecutive_failures.checked_sub(self.config.hold_after_failures);
        if let Some(over) = over {
            let hold_ms = self
                .config
                .hold_base_ms
                .saturating_mul(1u64 << over.min(32))
                .min(self.config.hold_cap_ms);
            c.hold_until = Some(now + Duration::from_millis(hold_ms));
            if over == 0 {
                tracing::warn!(game = %self.shared.id, hold_ms, "consecutive delivery failures: holding sends");
            }
        }
    }

    async fn expire(&self, entry: Leased<Q::Lease>, now_ms: u64) {
        let order_id = entry.order.order_id.clone();
        let attempts = entry.order.attempts;
        let finish = Finish { state: FinalState::Expired, at_ms: now_ms };
        if self.finish(entry, finish).await {
            bump(&self.shared.counters.expired);
            tracing::warn!(game = %self.shared.id, order = %order_id, attempts, "order expired undelivered");
            let mut recent = locked(&self.shared.recent);
            push_bounded(&mut recent.expired, order_id, self.config.recent_list_max);
        }
    }

    async fn dead(&self, entry: Leased<Q::Lease>, reason: String, now_ms: u64) {
        let order_id = entry.order.order_id.clone();
        let attempts = entry.order.attempts;
        let state = FinalState::Dead { reason: reason.clone() };
        if self.finish(entry, Finish { state, at_ms: now_ms }).await {
            bump(&self.shared.counters.dead);
            tracing::warn!(game = %self.shared.id, order = %order_id, attempts, %reason, "order dead");
            let mut recent = locked(&self.shared.recent);
            push_bounded(
                &mut recent.dead,
                DeadOrder { order_id, reason },
                self.config.recent_list_max,
            );
        }
    }

    /// Returns whether the queue recorded it. A failure leaves the entry leased: it comes back
    /// when the lease is lost, and a redelivery is answered `duplicate`.
    async fn finish(&self, entry: Leased<Q::Lease>, finish: Finish) -> bool {
        let order_id = entry.order.order_id.clone();
        match self.queue.finish(entry, finish).await {
            Ok(()) => true,
            Err(e) => {
                self.queue_error(&order_id, &e);
                false
            }
        }
    }

    async fn retry(&self, entry: Leased<Q::Lease>, retry: Retry) -> bool {
        let order_id = entry.order.order_id.clone();
        match self.queue.retry(entry, retry).await {
            Ok(()) => true,
            Err(e) => {
                self.queue_error(&order_id, &e);
                false
            }
        }
    }

    async fn release(&self, entry: Leased<Q::Lease>) -> bool {
        let order_id = entry.order.order_id.clone();
        match self.queue.release(entry).await {
            Ok(()) => true,
            Err(e) => {
                self.queue_error(&order_id, &e);
                false
            }
        }
    }

    fn queue_error(&self, order_id: &str, e: &QueueError) {
        match e {
            QueueError::LeaseLost(_) => {
                bump(&self.shared.counters.lease_lost);
                tracing::debug!(game = %self.shared.id, order = %order_id, "lease lost");
            }
            QueueError::Unavailable(_) => {
                tracing::warn!(game = %self.shared.id, order = %order_id, error = %e, "cannot record the outcome");
            }
        }
    }

    /// Releases unsent leases (pause, hold, stop).
    async fn hand_back(&self, buffer: &mut VecDeque<Leased<Q::Lease>>) {
        while let Some(entry) = buffer.pop_front() {
            self.release(entry).await;
        }
    }
}

/// A lease asked for and not yet settled.
type PendingLease<L> = JoinHandle<Result<Vec<Leased<L>>, QueueError>>;

/// The next lease is asked for when the buffer holds less than this many milliseconds of sends.
const LEASE_LOW_WATER_MS: u64 = 30;

/// Collects finished calls; a call that panicked is a bug and takes the worker down with it.
fn reap(calls: &mut JoinSet<()>) {
    while let Some(joined) = calls.try_join_next() {
        resume_if_panicked(joined);
    }
}

fn resume_if_panicked(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatcher_can_be_shared_by_the_admin_endpoint() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Dispatcher>();
        shareable::<DispatcherStatus>();
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_cap() {
        let mut rng = SmallRng::seed_from_u64(1);
        for attempts in 1..=40u32 {
            let bound = (100u64 << (attempts - 1).min(32)).min(5_000);
            for _ in 0..200 {
                assert!(backoff_ms(&mut rng, attempts, 100, 5_000) <= bound);
            }
        }
        let draws: Vec<u64> = (0..1000).map(|_| backoff_ms(&mut rng, 10, 100, 5_000)).collect();
        assert!(draws.iter().any(|&d| d < 1000) && draws.iter().any(|&d| d > 4000));
    }

    #[test]
    fn answers_map_to_verdicts() {
        use DeliveryOutcome as O;
        let v = |o| verdict(Ok(Ok(o)));
        assert_eq!(v(O::Applied), Verdict::Delivered { duplicate: false });
        assert_eq!(v(O::Duplicate), Verdict::Delivered { duplicate: true });
        assert_eq!(v(O::Busy), Verdict::Busy);
        let e = |permanent| O::Error { reason: "r".into(), permanent };
        assert_eq!(v(e(true)), Verdict::Permanent("r".into()));
        assert_eq!(v(e(false)), Verdict::Failed("r".into()));
        let timeout = GatewayError::Timeout { game: "g".into(), timeout_ms: 5 };
        assert!(matches!(verdict(Ok(Err(timeout))), Verdict::Failed(_)));
        let unknown = GatewayError::UnknownGame(GameIndex(9));
        assert!(matches!(verdict(Ok(Err(unknown))), Verdict::Permanent(_)));
    }
}
