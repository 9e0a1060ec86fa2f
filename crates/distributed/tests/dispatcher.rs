//! The delivery workers (`Dispatcher::start`) draining orders claimed through Redis + JetStream
//! into the game-side simulator on a loopback port: each order applied once, each recorded
//! delivered once, no game over its capacity in any second. Capacities are scaled ×0.1 as in
//! `hongbao-delivery`'s own simulator tests.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{Env, eventually, services_answer};
use futures_util::future::join_all;
use hongbao_clock::{Clock, SystemClock};
use hongbao_delivery::{Dispatcher, DispatcherConfig};
use hongbao_distributed::{DistributedClaims, JetStreamQueue};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, Coupon, GiftIndex};
use hongbao_gamesim::SimConfig;
use hongbao_gamesim::testing::RunningSim;
use hongbao_gateway::IdipClient;
use hongbao_jetstream::JetStreamConfig;
use hongbao_store::{CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest};

const SEED: u64 = 7;
const USERS: u64 = 5_000;
const SCALE: f64 = 0.1;
/// Orders per game: 300 over the ten games.
const ORDERS_PER_GAME: u32 = 30;
/// Users (with a role in the game) the orders of a game cycle over, each with many coupons.
const USERS_PER_GAME: usize = 10;

fn campaign() -> Campaign {
    let text = include_str!("../../../config/spring-festival.toml");
    let mut campaign =
        Campaign::parse(text, "config/spring-festival.toml", &|_| None).expect("campaign");
    for game in &mut campaign.games {
        game.idip_timeout_ms = 2_000;
    }
    campaign
}

/// One claim per order: a real role of a synthetic user, a gift of the game, a coupon serial
/// per order (so every claim is a new order).
fn claim_requests(campaign: &Campaign, now_ms: u64) -> Vec<ClaimRequest> {
    let model = SynthModel::new(SEED, USERS, campaign.games.len());
    let mut out = Vec::new();
    for game in &campaign.games {
        let gift = campaign.gifts.iter().find(|g| g.game == game.index).expect("a gift");
        let roles: Vec<_> = (FIRST_USER_ID..FIRST_USER_ID + USERS)
            .filter_map(|u| model.roles(u, game.index).into_iter().next().map(|r| (u, r)))
            .take(USERS_PER_GAME)
            .collect();
        assert_eq!(roles.len(), USERS_PER_GAME, "enough users play {}", game.id);
        for n in 0..ORDERS_PER_GAME {
            let (user, role) = &roles[n as usize % roles.len()];
            out.push(ClaimRequest {
                high_value: None,
                coupon: Coupon {
                    campaign_id: campaign.id.clone(),
                    user: *user,
                    channel: Channel::Swipe,
                    // One user may play several games: serials never repeat across them.
                    serial: u32::from(game.index.0) * ORDERS_PER_GAME + n + 1,
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

/// The simulator, the test's Redis + JetStream, and every order claimed (their ids).
struct Setup {
    sim: RunningSim,
    campaign: Campaign,
    env: Env,
    ids: HashSet<String>,
}

async fn setup(jetstream: JetStreamConfig) -> Setup {
    let config = SimConfig {
        seed: SEED,
        users: USERS,
        capacity_scale: SCALE,
        role_latency_ms: 0,
        deliver_latency_ms: 1,
        ..SimConfig::default()
    };
    let sim = RunningSim::start(campaign(), config).await.expect("simulator");
    let campaign = sim.campaign().clone();
    let env = Env::new(CampaignBinding::of(&campaign), jetstream).await;
    let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
    let requests = claim_requests(&campaign, SystemClock.now_ms());
    let total = requests.len();
    let outcomes = join_all(requests.into_iter().map(|r| claims.claim(r))).await;
    let ids: HashSet<String> = outcomes
        .into_iter()
        .map(|o| match o.expect("claim") {
            ClaimOutcome::Accepted(order) => order.id.as_str().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), total);
    claims.shutdown().await;
    Setup { sim, campaign, env, ids }
}

impl Setup {
    /// Workers over a queue of their own, as a worker process would have.
    fn dispatcher(&self) -> Dispatcher {
        let queue = Arc::new(JetStreamQueue::new(self.env.ledger.clone(), self.env.stream.clone()));
        let client = IdipClient::new(&self.campaign).expect("client");
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
        Dispatcher::start(&self.campaign, client, queue, config, SystemClock::shared())
            .expect("start")
    }

    async fn wait_sent(&self, at_least: usize) {
        let ledger = self.env.ledger.clone();
        let max = self.ids.len() + 1;
        eventually("orders delivered", || {
            let ledger = ledger.clone();
            async move { ledger.sent(max).await.expect("send log").len() >= at_least }
        })
        .await;
    }

    /// Each order once in the send log, applied once by its game, no game over capacity, every
    /// consumer drained.
    async fn check_and_stop(self) {
        let max = self.ids.len() + 1;
        let sent: Vec<String> =
            self.env.ledger.sent(max).await.expect("send log").into_iter().map(|s| s.0).collect();
        assert_eq!(sent.len(), self.ids.len(), "one send-log row per order");
        assert_eq!(sent.into_iter().collect::<HashSet<_>>(), self.ids, "each order logged");
        let stats = self.sim.sim().stats();
        for (game, s) in &stats.games {
            eprintln!(
                "{game}: applied {} duplicates {} busy {} max/s {} capacity/s {}",
                s.applied, s.duplicates, s.busy, s.max_applied_in_1s, s.capacity_per_s
            );
            assert!(s.max_applied_in_1s <= s.capacity_per_s, "{game}: over capacity in a second");
            assert_eq!(s.applied, u64::from(ORDERS_PER_GAME), "{game}: each order applied once");
        }
        for game in 0..self.campaign.games.len() {
            assert_eq!(
                self.env.stream.pending(game).await.expect("consumer info"),
                (0, 0),
                "game {game} drained"
            );
        }
        drop(self.env);
        self.sim.stop().await.expect("the simulator stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_drains_jetstream_into_the_games_each_order_applied_once() {
    if !services_answer() {
        return;
    }
    let setup = setup(JetStreamConfig::default()).await;
    let dispatcher = setup.dispatcher();
    setup.wait_sent(setup.ids.len()).await;
    dispatcher.shutdown().await;
    setup.check_and_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_drain_lose_nothing_and_the_next_ones_apply_each_order_once() {
    if !services_answer() {
        return;
    }
    // A short ack wait: the killed workers' messages come back after a second.
    let setup = setup(JetStreamConfig { ack_wait_ms: 1_000, ..JetStreamConfig::default() }).await;
    let first = setup.dispatcher();
    setup.wait_sent(setup.ids.len() / 3).await;
    // Dropped, not shut down: every worker and call aborted as a kill would, leases unacked.
    drop(first);
    let second = setup.dispatcher();
    setup.wait_sent(setup.ids.len()).await;
    second.shutdown().await;
    setup.check_and_stop().await;
}
