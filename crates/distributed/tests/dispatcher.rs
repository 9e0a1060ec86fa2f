//! The delivery workers (`Dispatcher::start`) draining claimed orders into the game-side
//! simulator on a loopback port, written once and run over both delivery queues: the embedded
//! store's (`serve --data`) and `JetStreamQueue` over Redis + JetStream (`serve --redis
//! --nats`). Each order applied once and recorded delivered once, no game over its capacity in
//! any second; retries, dead letters, deadlines and pauses recorded alike. Capacities are scaled
//! ×0.1 as in `hongbao-delivery`'s own simulator tests.
//!
//! Where the queues differ, the difference is in how long things wait, not in what is decided:
//! a retry's back-off is the embedded queue's `ready_at_ms` to the millisecond, and on JetStream
//! a delayed nak that the server times (and that the queue re-checks against the order's
//! `ready_at_ms` when it comes back); no assertion here depends on either.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use common::{Env, eventually, services_answer};
use futures_util::future::join_all;
use hongbao_clock::{Clock, SystemClock};
use hongbao_delivery::{Dispatcher, DispatcherConfig, DispatcherStatus};
use hongbao_distributed::{DistributedClaims, JetStreamQueue};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, Coupon, GameIndex, GiftIndex};
use hongbao_gamesim::testing::RunningSim;
use hongbao_gamesim::{SimConfig, StatsBody};
use hongbao_gateway::IdipClient;
use hongbao_jetstream::JetStreamConfig;
use hongbao_queue::DeliveryQueue;
use hongbao_store::{
    CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest, EmbeddedConfig, EmbeddedStore,
    LedgerScan, Order, OrderId, OrderStatus,
};

const SEED: u64 = 7;
const USERS: u64 = 5_000;
const SCALE: f64 = 0.1;
/// Orders per game: 300 over the ten games.
const ORDERS_PER_GAME: u32 = 30;
/// Users (with a role in the game) the orders of a game cycle over, each with many coupons.
const USERS_PER_GAME: usize = 10;

/// One test body, `async fn NAME(kind: Kind)`, run as `NAME::embedded` and `NAME::jetstream`
/// (which skips, saying so, when Redis or NATS does not answer outside CI).
macro_rules! on_both_queues {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(super::Kind::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn jetstream() {
                if !super::services_answer() {
                    return;
                }
                super::$name(super::Kind::JetStream).await;
            }
        }
    )*};
}

on_both_queues!(
    a_backlog_is_delivered_once_within_capacity,
    transient_errors_and_timeouts_are_retried_and_recorded,
    a_permanent_refusal_is_dead_with_the_games_reason,
    an_order_past_its_deadline_is_expired_never_sent,
    a_paused_game_is_left_alone_until_resumed,
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Embedded,
    JetStream,
}

fn campaign(idip_timeout_ms: u64) -> Campaign {
    let text = include_str!("../../../config/spring-festival.toml");
    let mut campaign =
        Campaign::parse(text, "config/spring-festival.toml", &|_| None).expect("campaign");
    for game in &mut campaign.games {
        game.idip_timeout_ms = idip_timeout_ms;
    }
    campaign
}

/// `per_game` claims for each game: a real role of a synthetic user, a gift of the game, a
/// coupon serial per order (so every claim is a new order).
fn claim_requests(campaign: &Campaign, per_game: u32, now_ms: u64) -> Vec<ClaimRequest> {
    let model = SynthModel::new(SEED, USERS, campaign.games.len());
    let mut out = Vec::new();
    for game in &campaign.games {
        let gift = campaign.gifts.iter().find(|g| g.game == game.index).expect("a gift");
        let roles: Vec<_> = (FIRST_USER_ID..FIRST_USER_ID + USERS)
            .filter_map(|u| model.roles(u, game.index).into_iter().next().map(|r| (u, r)))
            .take(USERS_PER_GAME)
            .collect();
        assert_eq!(roles.len(), USERS_PER_GAME, "enough users play {}", game.id);
        for n in 0..per_game {
            let (user, role) = &roles[n as usize % roles.len()];
            out.push(ClaimRequest {
                high_value: None,
                coupon: Coupon {
                    campaign_id: campaign.id.clone(),
                    user: *user,
                    channel: Channel::Swipe,
                    // One user may play several games: serials never repeat across them.
                    serial: u32::from(game.index.0) * per_game + n + 1,
                    expires_at_unix_s: i64::MAX,
                },
                gift: GiftIndex(gift.index.0),
                zone_id: role.zone_id,
                role_id: role.role_id,
                stock: 1_000_000,
                per_user_limit: 1_000,
                now_ms,
                deliver_by_ms: now_ms + 600_000,
                idempotency: None,
            });
        }
    }
    out
}

/// The delivery queue under test, with the ledger its orders are claimed into and read from.
enum Queue {
    Embedded { store: Arc<EmbeddedStore>, _dir: tempfile::TempDir },
    JetStream { env: Env, queue: Arc<JetStreamQueue> },
}

impl Queue {
    async fn new(kind: Kind, campaign: &Campaign, jetstream: JetStreamConfig) -> Queue {
        let binding = CampaignBinding::of(campaign);
        match kind {
            Kind::Embedded => {
                let dir = tempfile::tempdir().expect("a directory");
                let store =
                    EmbeddedStore::open_with(dir.path(), EmbeddedConfig::default(), binding)
                        .expect("the store opens");
                Queue::Embedded { store: Arc::new(store), _dir: dir }
            }
            Kind::JetStream => {
                let env = Env::new(binding, jetstream).await;
                let queue = Arc::new(JetStreamQueue::new(env.ledger.clone(), env.stream.clone()));
                Queue::JetStream { env, queue }
            }
        }
    }

    /// Claims every request (all accepted: new orders), as the node's claim port does; their
    /// order ids.
    async fn claim_all(&self, requests: Vec<ClaimRequest>) -> Vec<String> {
        let total = requests.len();
        let outcomes = match self {
            Queue::Embedded { store, .. } => {
                join_all(requests.into_iter().map(|r| store.claim(r))).await
            }
            Queue::JetStream { env, .. } => {
                let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
                let outcomes = join_all(requests.into_iter().map(|r| claims.claim(r))).await;
                claims.shutdown().await;
                outcomes
            }
        };
        let ids: Vec<String> = outcomes
            .into_iter()
            .map(|o| match o.expect("claim") {
                ClaimOutcome::Accepted(order) => order.id.as_str().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), total, "each claim a new order");
        ids
    }

    /// Workers over this queue, with quick retries and holds at the simulator's scale.
    fn dispatcher(&self, campaign: &Campaign) -> Dispatcher {
        let client = IdipClient::new(campaign).expect("client");
        let config = DispatcherConfig {
            capacity_scale: SCALE,
            idle_poll_ms: 20,
            retry_base_ms: 20,
            retry_cap_ms: 400,
            hold_base_ms: 50,
            hold_cap_ms: 400,
            call_guard_slack_ms: 500,
            ..DispatcherConfig::default()
        };
        let clock = SystemClock::shared();
        match self {
            Queue::Embedded { store, .. } => {
                Dispatcher::start(campaign, client, store.clone(), config, clock)
            }
            // A queue of its own, as a worker process would have.
            Queue::JetStream { env, .. } => {
                let queue = Arc::new(JetStreamQueue::new(env.ledger.clone(), env.stream.clone()));
                Dispatcher::start(campaign, client, queue, config, clock)
            }
        }
        .expect("the dispatcher starts")
    }

    async fn order(&self, id: &str) -> Order {
        let id = OrderId::parse(id).expect("an order id");
        let order = match self {
            Queue::Embedded { store, .. } => store.order(&id).await,
            Queue::JetStream { env, .. } => env.ledger.order(&id).await,
        };
        order.expect("read the order").expect("the order is stored")
    }

    async fn statuses(&self, ids: &[String]) -> Vec<OrderStatus> {
        join_all(ids.iter().map(|id| async move { self.order(id).await.status })).await
    }

    /// The actual-send log's order ids.
    async fn sent(&self) -> Vec<String> {
        match self {
            Queue::Embedded { store, .. } => {
                let mut ids = Vec::new();
                let mut after = None;
                loop {
                    let page = store.scan_sent(after, 1_000).await.expect("the send log");
                    let Some(last) = page.last().copied() else { return ids };
                    ids.extend(page.into_iter().map(|r| r.order_id.as_str().to_string()));
                    after = Some(last);
                }
            }
            Queue::JetStream { env, .. } => {
                let rows = env.ledger.sent(hongbao_redis::IDS_PER_COMMAND_MAX).await;
                rows.expect("the send log").into_iter().map(|(id, _)| id).collect()
            }
        }
    }

    /// Orders of `game` still in the queue (ready, waiting for a retry, or leased).
    async fn depth(&self, game: usize) -> u64 {
        let game = GameIndex(u8::try_from(game).expect("a game index"));
        let depth = match self {
            Queue::Embedded { store, .. } => store.depth(game).await,
            Queue::JetStream { queue, .. } => queue.depth(game).await,
        };
        depth.expect("the queue's depth").entries
    }

    /// Waits (a liveness bound, not a timing assertion) until every one of `ids` is finished
    /// (delivered, dead or expired).
    async fn wait_finished(&self, ids: &[String]) {
        eventually("the orders are finished", move || async move {
            self.statuses(ids).await.iter().all(|s| {
                matches!(s, OrderStatus::Delivered | OrderStatus::Dead | OrderStatus::Expired)
            })
        })
        .await;
    }

    /// Every game's queue empty: on JetStream, the last acks reach the consumer shortly after
    /// the records they follow.
    async fn wait_drained(&self, games: usize) {
        eventually("every queue drained", move || async move {
            for game in 0..games {
                if self.depth(game).await != 0 {
                    return false;
                }
            }
            true
        })
        .await;
    }
}

/// The simulator, the queue, and every order claimed (their ids).
struct Setup {
    sim: RunningSim,
    campaign: Campaign,
    queue: Queue,
    ids: Vec<String>,
}

impl Setup {
    /// `per_game` orders of every game claimed into `kind`'s queue, the simulator running with
    /// `faults` and the games' calls timing out after `idip_timeout_ms`.
    async fn new(kind: Kind, faults: SimConfig, idip_timeout_ms: u64, per_game: u32) -> Setup {
        let config = SimConfig {
            seed: SEED,
            users: USERS,
            capacity_scale: SCALE,
            role_latency_ms: 0,
            deliver_latency_ms: 1,
            ..faults
        };
        let sim =
            RunningSim::start(campaign(idip_timeout_ms), config).await.expect("the simulator");
        let campaign = sim.campaign().clone();
        let queue = Queue::new(kind, &campaign, JetStreamConfig::default()).await;
        let ids = queue.claim_all(claim_requests(&campaign, per_game, SystemClock.now_ms())).await;
        Setup { sim, campaign, queue, ids }
    }

    fn stats(&self) -> StatsBody {
        self.sim.sim().stats()
    }

    /// Every order delivered, each once in the send log, applied once by its game (so never
    /// twice), no game over its capacity in any second, and every queue empty.
    async fn assert_all_delivered_once(&self) {
        let statuses = self.queue.statuses(&self.ids).await;
        assert!(statuses.iter().all(|s| *s == OrderStatus::Delivered), "{statuses:?}");
        let sent = self.queue.sent().await;
        assert_eq!(sent.len(), self.ids.len(), "one send-log row per order");
        let expected: HashSet<&String> = self.ids.iter().collect();
        assert_eq!(sent.iter().collect::<HashSet<_>>(), expected, "each order in the log");
        let per_game = self.per_game();
        for (game, s) in &self.stats().games {
            eprintln!(
                "{game}: applied {} duplicates {} busy {} errors {} max/s {} capacity/s {}",
                s.applied, s.duplicates, s.busy, s.errors, s.max_applied_in_1s, s.capacity_per_s
            );
            assert_eq!(s.applied, per_game.get(game).copied().unwrap_or(0), "{game}: once each");
            assert!(s.max_applied_in_1s <= s.capacity_per_s, "{game}: over capacity in a second");
        }
        self.queue.wait_drained(self.campaign.games.len()).await;
    }

    /// Orders per game id.
    fn per_game(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for game in &self.campaign.games {
            let orders = self.ids.len() as u64 / self.campaign.games.len() as u64;
            counts.insert(game.id.clone(), orders);
        }
        counts
    }

    async fn stop(self) {
        drop(self.queue);
        self.sim.stop().await.expect("the simulator stops cleanly");
    }
}

/// The dispatcher's status once every one of `ids` is finished, taken before it shuts down.
async fn run_until_finished(setup: &Setup, ids: &[String]) -> DispatcherStatus {
    let dispatcher = setup.queue.dispatcher(&setup.campaign);
    setup.queue.wait_finished(ids).await;
    let status = dispatcher.status().await;
    dispatcher.shutdown().await;
    status
}

async fn a_backlog_is_delivered_once_within_capacity(kind: Kind) {
    let setup = Setup::new(kind, SimConfig::default(), 2_000, ORDERS_PER_GAME).await;
    let status = run_until_finished(&setup, &setup.ids).await;
    setup.assert_all_delivered_once().await;
    for (game, s) in &setup.stats().games {
        assert_eq!(s.duplicates, 0, "{game}: no repeat reached the game");
    }
    for g in &status.games {
        assert_eq!(g.delivered, u64::from(ORDERS_PER_GAME), "{g:?}");
        assert_eq!((g.dead, g.expired), (0, 0), "{g:?}");
    }
    setup.stop().await;
}

async fn transient_errors_and_timeouts_are_retried_and_recorded(kind: Kind) {
    // 10 % errors, 5 % hangs of 250 ms (half applied after the hang) against a 100 ms timeout.
    let faults = SimConfig {
        error_rate: 0.10,
        timeout_rate: 0.05,
        timeout_hang_ms: 250,
        ..SimConfig::default()
    };
    let setup = Setup::new(kind, faults, 100, ORDERS_PER_GAME).await;
    let status = run_until_finished(&setup, &setup.ids).await;
    setup.assert_all_delivered_once().await;
    let errors: u64 = setup.stats().games.values().map(|s| s.errors).sum();
    let retries: u64 = status.games.iter().map(|g| g.retries).sum();
    assert!(errors > 0 && retries > 0, "the faults were met and retried");
    assert!(status.games.iter().all(|g| g.dead == 0 && g.expired == 0));
    // The queue recorded each retry on its order: attempts count them and the delivery.
    let mut attempts = 0;
    for id in &setup.ids {
        attempts += u64::from(setup.queue.order(id).await.attempts);
    }
    assert!(attempts > setup.ids.len() as u64, "retries recorded on the orders");
    setup.stop().await;
}

async fn a_permanent_refusal_is_dead_with_the_games_reason(kind: Kind) {
    let sim = RunningSim::start(campaign(2_000), sim_config()).await.expect("the simulator");
    let queue = Queue::new(kind, sim.campaign(), JetStreamConfig::default()).await;
    let mut wrong = claim_requests(sim.campaign(), 1, SystemClock.now_ms()).swap_remove(0);
    wrong.role_id.0 ^= 1; // no such role
    let ids = queue.claim_all(vec![wrong.clone()]).await;
    let setup = Setup { campaign: sim.campaign().clone(), sim, queue, ids };

    let status = run_until_finished(&setup, &setup.ids).await;

    let order = setup.queue.order(&setup.ids[0]).await;
    assert_eq!(order.status, OrderStatus::Dead);
    assert_eq!(order.last_error.as_deref(), Some("role_not_found"));
    let g = &status.games[usize::from(wrong.gift_game(&setup.campaign).0)];
    assert_eq!((g.dead, g.retries), (1, 0), "dead at once, not retried");
    assert_eq!(g.recent_dead[0].order_id, setup.ids[0]);
    assert!(setup.queue.sent().await.is_empty(), "nothing in the send log");
    setup.queue.wait_drained(setup.campaign.games.len()).await;
    setup.stop().await;
}

async fn an_order_past_its_deadline_is_expired_never_sent(kind: Kind) {
    let sim = RunningSim::start(campaign(2_000), sim_config()).await.expect("the simulator");
    let queue = Queue::new(kind, sim.campaign(), JetStreamConfig::default()).await;
    let now_ms = SystemClock.now_ms();
    let mut late = claim_requests(sim.campaign(), 1, now_ms).swap_remove(0);
    late.deliver_by_ms = now_ms - 1;
    let ids = queue.claim_all(vec![late.clone()]).await;
    let setup = Setup { campaign: sim.campaign().clone(), sim, queue, ids };

    let status = run_until_finished(&setup, &setup.ids).await;

    assert_eq!(setup.queue.order(&setup.ids[0]).await.status, OrderStatus::Expired);
    let g = &status.games[usize::from(late.gift_game(&setup.campaign).0)];
    assert_eq!((g.expired, g.delivered), (1, 0));
    assert_eq!(g.recent_expired, [setup.ids[0].clone()]);
    assert_eq!(setup.stats().games[&g.game].applied, 0, "never sent");
    assert!(setup.queue.sent().await.is_empty(), "nothing in the send log");
    setup.stop().await;
}

async fn a_paused_game_is_left_alone_until_resumed(kind: Kind) {
    let (paused_game, other) = (GameIndex(1), GameIndex(0));
    let sim = RunningSim::start(campaign(2_000), sim_config()).await.expect("the simulator");
    let queue = Queue::new(kind, sim.campaign(), JetStreamConfig::default()).await;
    let requests: Vec<ClaimRequest> = claim_requests(sim.campaign(), 10, SystemClock.now_ms())
        .into_iter()
        .filter(|r| [paused_game, other].contains(&r.gift_game(sim.campaign())))
        .collect();
    let games: Vec<GameIndex> = requests.iter().map(|r| r.gift_game(sim.campaign())).collect();
    let campaign = sim.campaign().clone();
    let dispatcher = queue.dispatcher(&campaign);
    dispatcher.pause(paused_game).expect("pause");
    let ids = queue.claim_all(requests).await;
    let setup = Setup { campaign, sim, queue, ids };
    let (paused_ids, other_ids): (Vec<_>, Vec<_>) =
        setup.ids.iter().cloned().zip(&games).partition(|(_, g)| **g == paused_game);
    let paused_ids: Vec<String> = paused_ids.into_iter().map(|(id, _)| id).collect();
    let other_ids: Vec<String> = other_ids.into_iter().map(|(id, _)| id).collect();
    dispatcher.wake(other);
    setup.queue.wait_finished(&other_ids).await;

    let status = dispatcher.status().await;
    let g = &status.games[usize::from(paused_game.0)];
    assert!(g.paused);
    assert_eq!((g.queue_depth, g.delivered, g.in_flight), (paused_ids.len() as u64, 0, 0));
    // The embedded queue knows its oldest entry's age; JetStream's consumer does not say.
    if kind == Kind::Embedded {
        assert!(g.oldest_queued_age_ms.is_some(), "{g:?}");
    }
    assert_eq!(setup.stats().games[&g.game].applied, 0, "nothing sent while paused");
    assert!(setup.queue.statuses(&paused_ids).await.iter().all(|s| *s == OrderStatus::Queued));

    dispatcher.resume(paused_game).expect("resume");
    setup.queue.wait_finished(&paused_ids).await;
    assert!(!dispatcher.status().await.games[usize::from(paused_game.0)].paused);
    dispatcher.shutdown().await;
    let statuses = setup.queue.statuses(&setup.ids).await;
    assert!(statuses.iter().all(|s| *s == OrderStatus::Delivered), "{statuses:?}");
    assert_eq!(setup.queue.sent().await.len(), setup.ids.len());
    setup.stop().await;
}

fn sim_config() -> SimConfig {
    SimConfig {
        seed: SEED,
        users: USERS,
        capacity_scale: SCALE,
        role_latency_ms: 0,
        deliver_latency_ms: 1,
        ..SimConfig::default()
    }
}

/// The game of a claim's gift.
trait GiftGame {
    fn gift_game(&self, campaign: &Campaign) -> GameIndex;
}

impl GiftGame for ClaimRequest {
    fn gift_game(&self, campaign: &Campaign) -> GameIndex {
        campaign.gifts[usize::from(self.gift.0)].game
    }
}

/// Workers killed mid-drain lose nothing and the next ones apply each order once. JetStream
/// only: there a killed worker's messages come back after their ack wait while the servers run
/// on; the embedded queue's leases live in the node's process, so its crash is a process's
/// crash (`apps/hongbao/tests/delivery_crash.rs` kills the node with SIGKILL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_drain_lose_nothing_and_the_next_ones_apply_each_order_once() {
    if !services_answer() {
        return;
    }
    let sim = RunningSim::start(campaign(2_000), sim_config()).await.expect("the simulator");
    // A short ack wait: the killed workers' messages come back after a second.
    let quick = JetStreamConfig { ack_wait_ms: 1_000, ..JetStreamConfig::default() };
    let queue = Queue::new(Kind::JetStream, sim.campaign(), quick).await;
    let requests = claim_requests(sim.campaign(), ORDERS_PER_GAME, SystemClock.now_ms());
    let ids = queue.claim_all(requests).await;
    let setup = Setup { campaign: sim.campaign().clone(), sim, queue, ids };

    let first = setup.queue.dispatcher(&setup.campaign);
    let third = setup.ids.len() / 3;
    let queue = &setup.queue;
    eventually("a third delivered", move || async move { queue.sent().await.len() >= third }).await;
    // Dropped, not shut down: every worker and call aborted as a kill would, leases unacked.
    drop(first);
    let second = setup.queue.dispatcher(&setup.campaign);
    setup.queue.wait_finished(&setup.ids).await;
    second.shutdown().await;
    setup.assert_all_delivered_once().await;
    setup.stop().await;
}
