//! The dispatcher against the real game-side simulator (`hongbao-gamesim`) on a loopback port,
//! with the in-memory queue. Capacities are scaled down (×0.1: 500 deliveries/s over the ten
//! games) so each test runs in a few seconds on a small machine.
//!
//! No assertion depends on timing except the simulator's own `max_applied_in_1s` ≤ capacity.
//! (The simulator enforces its capacity by refusing `busy`, so that bound holds by construction;
//! the pacing's real evidence is the `busy` count, printed by every test.) The simulator's
//! window runs on real time, so the dispatcher does too (`SystemClock`); its virtual-time tests
//! are in `virtual_time.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hongbao_clock::{Clock, SystemClock};
use hongbao_delivery::{Dispatcher, DispatcherConfig, DispatcherStatus, SharedGames};
use hongbao_domain::campaign::Item;
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, GameIndex};
use hongbao_gamesim::testing::RunningSim;
use hongbao_gamesim::{GameSim, Outage, SimConfig, StatsBody};
use hongbao_gateway::IdipClient;
use hongbao_queue::{FinalState, MemoryGameLeases, MemoryQueue, QueuedOrder};

const SEED: u64 = 7;
const USERS: u64 = 5_000;
/// Capacities ×0.1: 90, 80, 60, 60, 50, 40, 40, 30, 30, 20 deliveries/s.
const SCALE: f64 = 0.1;
/// A bound on waiting for the dispatcher to finish, far above the few seconds a test needs:
/// reaching it means the dispatcher is stuck, not slow.
const LIVENESS_LIMIT: Duration = Duration::from_secs(90);
/// Distinct users (with a role) per game the orders cycle over.
const USERS_PER_GAME: usize = 20;

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// A running simulator and the campaign pointed at it.
struct Sim {
    running: RunningSim,
}

impl Sim {
    async fn start(config: SimConfig, idip_timeout_ms: u64) -> Sim {
        let text = include_str!("../../../config/spring-festival.toml");
        let mut campaign =
            Campaign::parse(text, "config/spring-festival.toml", &|_| None).expect("campaign");
        for game in &mut campaign.games {
            game.idip_timeout_ms = idip_timeout_ms;
        }
        let config = SimConfig {
            seed: SEED,
            users: USERS,
            capacity_scale: SCALE,
            role_latency_ms: 0,
            deliver_latency_ms: 1,
            ..config
        };
        Sim { running: RunningSim::start(campaign, config).await.expect("simulator") }
    }

    fn sim(&self) -> &GameSim {
        self.running.sim()
    }

    fn campaign(&self) -> &Campaign {
        self.running.campaign()
    }

    fn dispatcher(&self, queue: &Arc<MemoryQueue>) -> Dispatcher {
        let client = IdipClient::new(self.campaign()).expect("client");
        let clock = SystemClock::shared();
        Dispatcher::start(self.campaign(), client, queue.clone(), test_config(), clock)
            .expect("start")
    }

    /// A dispatcher that shares the games with others through `shared`'s leases.
    fn shared_dispatcher(&self, queue: &Arc<MemoryQueue>, shared: SharedGames) -> Dispatcher {
        let client = IdipClient::new(self.campaign()).expect("client");
        let clock = SystemClock::shared();
        Dispatcher::start_shared(
            self.campaign(),
            client,
            queue.clone(),
            test_config(),
            clock,
            shared,
        )
        .expect("start")
    }

    /// Runs a dispatcher until `finished` orders of `queue` are finished; its status then,
    /// taken before it shuts down cleanly.
    async fn run_until_finished(
        &self,
        queue: &Arc<MemoryQueue>,
        finished: usize,
    ) -> DispatcherStatus {
        let dispatcher = self.dispatcher(queue);
        wait_until("the orders are finished", || queue.finished_count() == finished).await;
        let status = dispatcher.status().await;
        dispatcher.shutdown().await;
        status
    }

    async fn stop(self) {
        self.running.stop().await.expect("the simulator stops cleanly");
    }
}

/// Quick retries and holds, at the simulator's scale.
fn test_config() -> DispatcherConfig {
    DispatcherConfig {
        capacity_scale: SCALE,
        idle_poll_ms: 20,
        retry_base_ms: 20,
        retry_cap_ms: 400,
        hold_base_ms: 50,
        hold_cap_ms: 400,
        call_guard_slack_ms: 500,
        ..DispatcherConfig::default()
    }
}

/// `seconds` of each game's scaled capacity in orders, each to a real role of a synthetic
/// user, with the items of one of the game's gifts.
fn orders(campaign: &Campaign, seconds: f64) -> Vec<QueuedOrder> {
    let model = SynthModel::new(SEED, USERS, campaign.games.len());
    let deliver_by_ms = now_ms() + 600_000;
    let mut out = Vec::new();
    for game in &campaign.games {
        let roles: Vec<_> = (FIRST_USER_ID..FIRST_USER_ID + USERS)
            .filter_map(|u| model.roles(u, game.index).into_iter().next().map(|r| (u, r)))
            .take(USERS_PER_GAME)
            .collect();
        assert_eq!(roles.len(), USERS_PER_GAME, "enough users play {}", game.id);
        let items = game_items(campaign, game.index);
        let capacity = (f64::from(game.delivery_capacity_per_s) * SCALE).round();
        let count = (capacity * seconds) as usize;
        for n in 0..count {
            let (user, role) = &roles[n % roles.len()];
            out.push(QueuedOrder {
                order_id: format!("o-{}-{n:05}", game.index.0),
                user: *user,
                game: game.index,
                zone_id: role.zone_id,
                role_id: role.role_id,
                items: items.clone(),
                deliver_by_ms,
                attempts: 0,
            });
        }
    }
    out
}

fn game_items(campaign: &Campaign, game: GameIndex) -> Vec<Item> {
    campaign.gifts.iter().find(|g| g.game == game).expect("the game has a gift").items.clone()
}

fn enqueue(queue: &MemoryQueue, orders: &[QueuedOrder]) {
    let now = now_ms();
    for o in orders {
        assert!(queue.push(o.clone(), now));
    }
}

/// Waits until `done` holds, polling; panics past [`LIVENESS_LIMIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < LIVENESS_LIMIT, "stuck waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn per_game(orders: &[QueuedOrder], campaign: &Campaign) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for o in orders {
        *counts.entry(campaign.games[usize::from(o.game.0)].id.clone()).or_insert(0) += 1;
    }
    counts
}

/// Every order delivered once: the queue says delivered, the send log has each once, the game
/// applied exactly the orders (so none twice), and no second held more than the capacity.
fn assert_all_delivered_once(queue: &MemoryQueue, orders: &[QueuedOrder], sim: &Sim) -> StatsBody {
    let finished = queue.finished();
    for o in orders {
        let f = finished.get(&o.order_id).unwrap_or_else(|| panic!("{} not finished", o.order_id));
        assert!(matches!(f.state, FinalState::Delivered { .. }), "{}: {:?}", o.order_id, f.state);
    }
    assert_eq!(queue.outstanding(), 0);
    let log = queue.send_log();
    assert_eq!(log.len(), orders.len());
    assert_eq!(log.iter().collect::<HashSet<_>>().len(), orders.len(), "each once in the log");

    let stats = sim.sim().stats();
    let expected = per_game(orders, sim.campaign());
    for (game, s) in &stats.games {
        eprintln!(
            "{game}: applied {} duplicates {} busy {} errors {} max/s {} capacity/s {}",
            s.applied, s.duplicates, s.busy, s.errors, s.max_applied_in_1s, s.capacity_per_s
        );
        let expected = expected.get(game).copied().unwrap_or(0);
        assert_eq!(s.applied, expected, "{game}: applied once per order");
        assert!(s.max_applied_in_1s <= s.capacity_per_s, "{game}: over capacity in a second");
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_over_ten_games_is_delivered_once_within_capacity() {
    let sim = Sim::start(SimConfig::default(), 2_000).await;
    let queue = Arc::new(MemoryQueue::new());
    let orders = orders(sim.campaign(), 4.0);
    assert_eq!(orders.len(), 2_000);
    enqueue(&queue, &orders);

    let status = sim.run_until_finished(&queue, orders.len()).await;

    let stats = assert_all_delivered_once(&queue, &orders, &sim);
    for (game, s) in &stats.games {
        assert_eq!(s.duplicates, 0, "{game}: no repeat reached the game");
    }
    for g in &status.games {
        assert!(g.running && !g.paused && !g.held, "{g:?}");
        assert_eq!((g.queue_depth, g.in_flight, g.dead, g.expired), (0, 0, 0, 0), "{g:?}");
        assert_eq!(g.delivered, per_game(&orders, sim.campaign())[&g.game]);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_and_timeouts_are_retried_and_nothing_is_applied_twice() {
    // 10 % errors, 5 % hangs of 250 ms (half applied after the hang) against a 100 ms timeout.
    let faults = SimConfig {
        error_rate: 0.10,
        timeout_rate: 0.05,
        timeout_hang_ms: 250,
        ..SimConfig::default()
    };
    let sim = Sim::start(faults, 100).await;
    let queue = Arc::new(MemoryQueue::new());
    let orders = orders(sim.campaign(), 3.0);
    enqueue(&queue, &orders);

    let status = sim.run_until_finished(&queue, orders.len()).await;

    let stats = assert_all_delivered_once(&queue, &orders, &sim);
    let errors: u64 = stats.games.values().map(|s| s.errors).sum();
    let retries: u64 = status.games.iter().map(|g| g.retries).sum();
    assert!(errors > 0 && retries > 0, "the faults were met and retried");
    assert!(status.games.iter().all(|g| g.dead == 0 && g.expired == 0));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_dispatchers_lose_nothing_and_deliver_nothing_twice() {
    let sim = Sim::start(SimConfig::default(), 2_000).await;
    let queue = Arc::new(MemoryQueue::new());
    let orders = orders(sim.campaign(), 3.0);
    enqueue(&queue, &orders);

    for _ in 0..3 {
        let dispatcher = sim.dispatcher(&queue);
        // Well into the sending (past the quiet start): a tenth of the orders delivered by
        // this dispatcher, more calls in flight.
        let before = queue.finished_count();
        let crash_after = orders.len() / 10;
        wait_until("sending", || queue.finished_count() >= before + crash_after).await;
        // A crash: every task and call aborted mid-flight, then the queue restarts and forgets
        // the leases (the orders the dead dispatcher held come back).
        drop(dispatcher);
        queue.crash();
        eprintln!("crash: {} of {} finished", queue.finished_count(), orders.len());
    }
    sim.run_until_finished(&queue, orders.len()).await;

    assert_all_delivered_once(&queue, &orders, &sim);
    sim.stop().await;
}

/// Three worker processes share one queue: each game is sent to by one of them at a time (its
/// lease holder), and when that one crashes another takes its games over after the handover
/// wait; every order is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_the_games_send_to_each_game_one_at_a_time() {
    let sim = Sim::start(SimConfig::default(), 500).await;
    let queue = Arc::new(MemoryQueue::new());
    let orders = orders(sim.campaign(), 4.0);
    enqueue(&queue, &orders);
    let leases = Arc::new(MemoryGameLeases::new(SystemClock::shared()));
    let shared = |holder: &str| SharedGames {
        leases: leases.clone(),
        holder: holder.to_string(),
        lease_ttl_ms: 600,
    };
    let mut workers: Vec<(&str, Option<Dispatcher>)> = ["a", "b", "c"]
        .into_iter()
        .map(|h| (h, Some(sim.shared_dispatcher(&queue, shared(h)))))
        .collect();

    wait_until("sending", || queue.finished_count() >= orders.len() / 4).await;
    let games = sim.campaign().games.len();
    for game in 0..games {
        let mut senders = 0;
        for (_, d) in &workers {
            let status = d.as_ref().expect("running").status().await;
            senders += usize::from(status.games[game].delivered > 0);
        }
        assert_eq!(senders, 1, "game {game}: one worker sends to it");
    }
    // The holder of the first game crashes: another takes its games over.
    let holder = leases.holder(GameIndex(0)).expect("the game is held");
    let crashed = workers.iter_mut().find(|(h, _)| *h == holder).expect("a worker holds it");
    drop(crashed.1.take());
    queue.crash();
    eprintln!("crashed {holder}: {} of {} finished", queue.finished_count(), orders.len());

    wait_until("all finished", || queue.finished_count() == orders.len()).await;
    let taken_over = leases.holder(GameIndex(0)).expect("held again");
    assert_ne!(taken_over, holder, "another worker took the game over");
    for (_, d) in workers {
        if let Some(d) = d {
            d.shutdown().await;
        }
    }
    assert_all_delivered_once(&queue, &orders, &sim);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_in_outage_catches_up_and_the_others_are_unaffected() {
    let outage = Outage { game: "lantern-heroes".to_string(), start_s: 0, duration_s: 2 };
    let sim = Sim::start(SimConfig { outages: vec![outage], ..SimConfig::default() }, 2_000).await;
    let queue = Arc::new(MemoryQueue::new());
    let orders = orders(sim.campaign(), 2.0);
    enqueue(&queue, &orders);

    let status = sim.run_until_finished(&queue, orders.len()).await;

    let stats = assert_all_delivered_once(&queue, &orders, &sim);
    for g in &status.games {
        eprintln!("{}: retries {} busy {}", g.game, g.retries, g.busy);
        assert_eq!((g.dead, g.expired), (0, 0), "{}: nothing given up", g.game);
        if g.game != "lantern-heroes" {
            assert_eq!(stats.games[&g.game].errors, 0, "{}: never failed", g.game);
            assert_eq!(g.retries, 0, "{}: never retried", g.game);
        }
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_past_its_deadline_is_expired_and_listed_never_sent() {
    let sim = Sim::start(SimConfig::default(), 2_000).await;
    let queue = Arc::new(MemoryQueue::new());
    let mut late = orders(sim.campaign(), 1.0).swap_remove(0);
    late.deliver_by_ms = now_ms() - 1;
    enqueue(&queue, std::slice::from_ref(&late));

    let status = sim.run_until_finished(&queue, 1).await;

    assert_eq!(queue.finished()[&late.order_id].state, FinalState::Expired);
    assert!(queue.send_log().is_empty());
    let g = &status.games[usize::from(late.game.0)];
    assert_eq!((g.expired, g.delivered), (1, 0));
    assert_eq!(g.recent_expired, [late.order_id.clone()]);
    assert_eq!(sim.sim().stats().games[&g.game].applied, 0, "never sent");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_dead_with_the_games_reason() {
    let sim = Sim::start(SimConfig::default(), 2_000).await;
    let queue = Arc::new(MemoryQueue::new());
    let mut wrong = orders(sim.campaign(), 1.0).swap_remove(0);
    wrong.role_id.0 ^= 1; // no such role
    enqueue(&queue, std::slice::from_ref(&wrong));

    let status = sim.run_until_finished(&queue, 1).await;

    let finish = &queue.finished()[&wrong.order_id];
    assert_eq!(finish.state, FinalState::Dead { reason: "role_not_found".to_string() });
    let g = &status.games[usize::from(wrong.game.0)];
    assert_eq!((g.dead, g.retries), (1, 0), "dead at once, not retried");
    assert_eq!(g.recent_dead[0].order_id, wrong.order_id);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_game_is_left_alone_until_resumed() {
    let sim = Sim::start(SimConfig::default(), 2_000).await;
    let queue = Arc::new(MemoryQueue::new());
    let all = orders(sim.campaign(), 0.5);
    let (paused_game, other) = (GameIndex(1), GameIndex(0));
    let orders: Vec<_> =
        all.into_iter().filter(|o| o.game == paused_game || o.game == other).collect();
    let paused_count = orders.iter().filter(|o| o.game == paused_game).count();

    let dispatcher = sim.dispatcher(&queue);
    dispatcher.pause(paused_game).expect("pause");
    enqueue(&queue, &orders);
    dispatcher.wake(other);
    dispatcher.wake(paused_game);
    let others = orders.len() - paused_count;
    wait_until("the other game is done", || queue.finished_count() == others).await;

    let status = dispatcher.status().await;
    let g = &status.games[usize::from(paused_game.0)];
    assert!(g.paused);
    assert_eq!((g.queue_depth, g.delivered, g.in_flight), (paused_count as u64, 0, 0));
    assert!(g.oldest_queued_age_ms.is_some());
    assert_eq!(sim.sim().stats().games[&g.game].applied, 0, "nothing sent while paused");
    let json = serde_json::to_value(&status).expect("status serializes");
    assert_eq!(json["games"][1]["paused"], true);

    dispatcher.resume(paused_game).expect("resume");
    wait_until("all delivered", || queue.finished_count() == orders.len()).await;
    assert!(!dispatcher.status().await.games[1].paused);
    dispatcher.shutdown().await;
    assert_all_delivered_once(&queue, &orders, &sim);
    sim.stop().await;
}

#[tokio::test]
async fn operators_name_games_that_exist() {
    let sim = Sim::start(SimConfig::default(), 2_000).await;
    let dispatcher = sim.dispatcher(&Arc::new(MemoryQueue::new()));
    assert!(dispatcher.pause(GameIndex(200)).is_err());
    assert_eq!(dispatcher.game_index("cloud-kingdom"), Some(GameIndex(1)));
    assert_eq!(dispatcher.game_index("no-such-game"), None);
    dispatcher.shutdown().await;
    sim.stop().await;
}
