//! The dispatcher on virtual time: a [`ManualClock`], the in-memory queue and a fake game that
//! answers at once and notes the virtual millisecond of every call. Each test moves the clock a
//! millisecond at a time and asserts exact counts; nothing sleeps on the wall clock.
//!
//! How a test knows the dispatcher is done with a millisecond: the runtime's own (tokio) clock
//! is paused, and a paused runtime moves it only when every task is parked. So a one-millisecond
//! tokio sleep in the test ends exactly when every worker and call has done all it can at the
//! current virtual time ([`settled`]). The dispatcher reads no tokio time but its call guard,
//! which an instant fake never reaches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hongbao_clock::{Clock, ManualClock};
use hongbao_delivery::{Dispatcher, DispatcherConfig, GameClient};
use hongbao_domain::{Campaign, GameIndex, RoleId, ZoneId};
use hongbao_gateway::{DeliveryOutcome, DeliveryRequest, GatewayError};
use hongbao_queue::{DeliveryQueue, FinalState, MemoryQueue, QueuedOrder};

/// Virtual wall time at the start of every test (any time will do).
const START_MS: u64 = 1_800_000_000_000;
/// The dispatcher's default quiet start: no send before `START_MS` plus this.
const START_QUIET_MS: u64 = 1_000;
/// How far a test may move the clock before the dispatcher counts as stuck (virtual time).
const VIRTUAL_LIMIT_MS: u64 = 60_000;

/// Returns once every task is parked at the current virtual time (see the module doc).
async fn settled() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// One call the fake game received.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    at_ms: u64,
    game: GameIndex,
    serial: String,
}

#[derive(Debug)]
struct FakeGameState {
    clock: Arc<ManualClock>,
    games: usize,
    calls: Mutex<Vec<Call>>,
    /// Answers to give per serial, in order; `Applied` once a serial's list is empty.
    scripts: Mutex<HashMap<String, VecDeque<DeliveryOutcome>>>,
    /// The answer to every serial without a script.
    default: DeliveryOutcome,
}

/// A game side that answers at once, as scripted, and notes every call.
#[derive(Clone, Debug)]
struct FakeGame(Arc<FakeGameState>);

impl FakeGame {
    fn new(clock: &Arc<ManualClock>, games: usize, default: DeliveryOutcome) -> FakeGame {
        FakeGame(Arc::new(FakeGameState {
            clock: clock.clone(),
            games,
            calls: Mutex::new(Vec::new()),
            scripts: Mutex::new(HashMap::new()),
            default,
        }))
    }

    fn script(&self, serial: &str, answers: impl IntoIterator<Item = DeliveryOutcome>) {
        let mut scripts = self.0.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts.insert(serial.to_string(), answers.into_iter().collect());
    }

    fn calls(&self) -> Vec<Call> {
        self.0.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl GameClient for FakeGame {
    async fn deliver(&self, request: &DeliveryRequest) -> Result<DeliveryOutcome, GatewayError> {
        let call = Call {
            at_ms: self.0.clock.now_ms(),
            game: request.game,
            serial: request.serial.clone(),
        };
        self.0.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
        let mut scripts = self.0.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(match scripts.get_mut(&request.serial) {
            Some(answers) => answers.pop_front().unwrap_or(DeliveryOutcome::Applied),
            None => self.0.default.clone(),
        })
    }

    fn games(&self) -> usize {
        self.0.games
    }
}

fn transient_error() -> DeliveryOutcome {
    DeliveryOutcome::Error { reason: "try_later".to_string(), permanent: false }
}

/// A dispatcher on a manual clock over the in-memory queue and a fake game.
struct Rig {
    clock: Arc<ManualClock>,
    queue: Arc<MemoryQueue>,
    game: FakeGame,
    campaign: Campaign,
}

impl Rig {
    fn new(default: DeliveryOutcome) -> Rig {
        let text = include_str!("../../../config/spring-festival.toml");
        let campaign =
            Campaign::parse(text, "config/spring-festival.toml", &|_| None).expect("campaign");
        let clock = ManualClock::new(START_MS);
        let game = FakeGame::new(&clock, campaign.games.len(), default);
        Rig { clock, queue: Arc::new(MemoryQueue::new()), game, campaign }
    }

    fn start(&self, config: DispatcherConfig) -> Dispatcher {
        assert_eq!(config.start_quiet_ms, START_QUIET_MS);
        let clock = self.clock.clone();
        Dispatcher::start(&self.campaign, self.game.clone(), self.queue.clone(), config, clock)
            .expect("start")
    }

    /// Enqueues `count` orders of `game`, ready now.
    fn enqueue(&self, game: GameIndex, count: usize, deliver_by_ms: u64) -> Vec<String> {
        (0..count)
            .map(|n| {
                let order_id = format!("o-{}-{n:04}", game.0);
                let order = QueuedOrder {
                    order_id: order_id.clone(),
                    user: 1,
                    game,
                    zone_id: ZoneId(1),
                    role_id: RoleId(1),
                    items: Vec::new(),
                    deliver_by_ms,
                    attempts: 0,
                };
                assert!(self.queue.push(order, self.clock.now_ms()));
                order_id
            })
            .collect()
    }

    /// Moves the clock one millisecond and lets the dispatcher do all it can then.
    async fn tick(&self) {
        self.clock.advance_ms(1);
        settled().await;
        assert!(self.clock.now_ms() - START_MS < VIRTUAL_LIMIT_MS, "the dispatcher is stuck");
    }
}

/// Every game gets three seconds of its capacity at once; on virtual time, its sends never
/// put more than the paced ceiling (capacity × 0.995, rounded up: the capacity itself) into
/// any one-second window, the first second after the quiet start is used to the full, and
/// every order is delivered once.
#[tokio::test(start_paused = true)]
async fn pacing_never_puts_more_than_capacity_into_any_second_of_virtual_time() {
    let rig = Rig::new(DeliveryOutcome::Applied);
    // Capacities ×0.01: 9, 8, 6, 6, 5, 4, 4, 3, 3, 2 deliveries/s.
    let config = DispatcherConfig { capacity_scale: 0.01, ..DispatcherConfig::default() };
    let mut capacity = HashMap::new();
    let mut total = 0;
    for g in &rig.campaign.games {
        let per_s = config.scaled_capacity_per_s(g.delivery_capacity_per_s) as usize;
        capacity.insert(g.index, per_s);
        total += rig.enqueue(g.index, 3 * per_s, u64::MAX).len();
    }
    let dispatcher = rig.start(config);
    settled().await;
    while rig.queue.finished_count() < total {
        rig.tick().await;
    }
    dispatcher.shutdown().await;

    let calls = rig.game.calls();
    assert_eq!(calls.len(), total, "one call per order");
    assert_eq!(rig.queue.send_log().len(), total);
    for (&game, &per_s) in &capacity {
        let times: Vec<u64> = calls.iter().filter(|c| c.game == game).map(|c| c.at_ms).collect();
        assert_eq!(times.len(), 3 * per_s, "{game:?}");
        assert!(times.is_sorted(), "{game:?}: calls are noted in order");
        assert!(times[0] >= START_MS + START_QUIET_MS, "{game:?}: a send in the quiet start");
        let busiest = (0..times.len())
            .map(|i| times[i..].iter().take_while(|&&t| t - times[i] < 1_000).count())
            .max();
        assert_eq!(busiest, Some(per_s), "{game:?}: the busiest second holds the capacity");
        let first_second = START_MS + START_QUIET_MS..START_MS + START_QUIET_MS + 1_000;
        let in_first = times.iter().filter(|t| first_second.contains(t)).count();
        assert_eq!(in_first, per_s, "{game:?}: the first second is used to the full");
    }
}

/// A failed call is retried at the ready time its backoff gave the queue: the order is not
/// leased (nor sent) a millisecond before, and is sent at the next look once it is ready.
#[tokio::test(start_paused = true)]
async fn a_retry_is_not_leased_before_its_backoff_ends_and_is_sent_once_it_does() {
    let rig = Rig::new(DeliveryOutcome::Applied);
    let config = DispatcherConfig {
        // 9,000 deliveries/s: the pacer's next slot is due within the millisecond, so only the
        // backoff decides when the retry goes.
        capacity_scale: 10.0,
        idle_poll_ms: 1,
        retry_base_ms: 500,
        retry_cap_ms: 500,
        ..DispatcherConfig::default()
    };
    let game = GameIndex(0);
    let order_id = rig.enqueue(game, 1, u64::MAX).remove(0);
    rig.game.script(&order_id, [transient_error(), DeliveryOutcome::Applied]);
    let dispatcher = rig.start(config);
    settled().await;
    while rig.game.calls().is_empty() {
        rig.tick().await;
    }
    let failed_at_ms = rig.clock.now_ms();
    assert_eq!(failed_at_ms, START_MS + START_QUIET_MS, "the first call ends the quiet start");
    // The game has answered; the worker records the retry in its next steps (without the
    // manual clock moving): give it those before reading the queue.
    let mut depth = rig.queue.depth(game).await.expect("depth");
    for _ in 0..100 {
        if depth.leased == 0 {
            break;
        }
        settled().await;
        depth = rig.queue.depth(game).await.expect("depth");
    }
    assert_eq!(rig.clock.now_ms(), failed_at_ms, "the manual clock did not move meanwhile");
    assert_eq!((depth.entries, depth.leased, depth.retrying), (1, 0, Some(1)));
    assert_eq!(rig.queue.last_error(game, &order_id).as_deref(), Some("try_later"));
    let ready_at_ms = rig.queue.ready_at_ms(game, &order_id).expect("the retry's ready time");
    assert!((failed_at_ms..=failed_at_ms + 500).contains(&ready_at_ms), "within the backoff");

    while rig.clock.now_ms() < ready_at_ms {
        let depth = rig.queue.depth(game).await.expect("depth");
        assert_eq!(depth.leased, 0, "leased at {} before its ready time", rig.clock.now_ms());
        assert_eq!(rig.game.calls().len(), 1, "sent again before its ready time");
        rig.tick().await;
    }
    // At its ready time, or at the next look when it became ready the very millisecond the
    // worker had already looked (a backoff of zero).
    rig.tick().await;
    let calls = rig.game.calls();
    assert_eq!(calls.len(), 2);
    assert!((ready_at_ms..=ready_at_ms + 1).contains(&calls[1].at_ms), "{calls:?}");
    let finished = rig.queue.finished();
    assert_eq!(finished[&order_id].state, FinalState::Delivered { duplicate: false });
    let status = dispatcher.status().await;
    assert_eq!((status.games[0].retries, status.games[0].delivered), (1, 1));
    dispatcher.shutdown().await;
}

/// An order the game keeps failing is retried until its deadline and expires exactly when the
/// clock reaches `deliver_by`: unfinished the millisecond before, never sent at or after it.
#[tokio::test(start_paused = true)]
async fn an_order_expires_exactly_when_the_clock_reaches_its_deadline() {
    let rig = Rig::new(transient_error());
    let config = DispatcherConfig {
        idle_poll_ms: 1,
        retry_base_ms: 20,
        retry_cap_ms: 50,
        // Neither a hold nor the attempts bound may end it first: only the deadline.
        hold_after_failures: u32::MAX,
        attempts_max: u32::MAX,
        ..DispatcherConfig::default()
    };
    let game = GameIndex(3);
    let deliver_by_ms = START_MS + START_QUIET_MS + 300;
    let order_id = rig.enqueue(game, 1, deliver_by_ms).remove(0);
    let dispatcher = rig.start(config);
    settled().await;
    while rig.clock.now_ms() < deliver_by_ms {
        assert!(rig.queue.finished().is_empty(), "finished at {}", rig.clock.now_ms());
        rig.tick().await;
    }

    let finished = rig.queue.finished();
    assert_eq!(finished[&order_id].state, FinalState::Expired);
    assert_eq!(finished[&order_id].at_ms, deliver_by_ms, "expired as the deadline came");
    let calls = rig.game.calls();
    assert!(calls.len() > 1, "retried until the deadline: {calls:?}");
    assert!(calls.iter().all(|c| c.at_ms < deliver_by_ms), "sent at the deadline: {calls:?}");
    let status = dispatcher.status().await;
    let g = &status.games[usize::from(game.0)];
    assert_eq!((g.expired, g.delivered, g.dead), (1, 0, 0));
    assert_eq!(g.retries, calls.len() as u64);
    assert_eq!(g.recent_expired, [order_id]);
    dispatcher.shutdown().await;
}
