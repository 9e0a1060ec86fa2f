//! The delivery workers (`Dispatcher::start`) draining orders claimed through Redis + JetStream
//! into the game-side simulator on a loopback port: each order applied once, each recorded
//! delivered once, no game over its capacity in any second. Capacities are scaled ×0.1 as in
//! `hongbao-delivery`'s own simulator tests.

mod common;

use std::collections::{BTreeMap, HashSet};
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
fn claims(campaign: &Campaign, now_ms: u64) -> Vec<ClaimRequest> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_drains_jetstream_into_the_games_each_order_applied_once() {
    if !services_answer() {
        return;
    }
    let campaign = campaign();
    let config = SimConfig {
        seed: SEED,
        users: USERS,
        capacity_scale: SCALE,
        role_latency_ms: 0,
        deliver_latency_ms: 1,
        ..SimConfig::default()
    };
    let sim = RunningSim::start(campaign.clone(), config).await.expect("simulator");
    let campaign = sim.campaign().clone();
    let env = Env::new(CampaignBinding::of(&campaign), JetStreamConfig::default()).await;

    let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
    let requests = claims_for(&campaign);
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

    let queue = Arc::new(JetStreamQueue::new(env.ledger.clone(), env.stream.clone()));
    let client = IdipClient::new(&campaign).expect("client");
    let dispatcher_config = DispatcherConfig {
        capacity_scale: SCALE,
        idle_poll_ms: 20,
        retry_base_ms: 20,
        retry_cap_ms: 400,
        hold_base_ms: 50,
        hold_cap_ms: 400,
        call_guard_slack_ms: 500,
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::start(
        &campaign,
        client,
        queue.clone(),
        dispatcher_config,
        SystemClock::shared(),
    )
    .expect("start");
    let ledger = env.ledger.clone();
    eventually("every order delivered", || {
        let ledger = ledger.clone();
        async move { ledger.sent(total + 1).await.expect("send log").len() == total }
    })
    .await;
    dispatcher.shutdown().await;

    let sent: HashSet<String> =
        env.ledger.sent(total + 1).await.unwrap().into_iter().map(|s| s.0).collect();
    assert_eq!(sent, ids, "each order once in the actual-send log");
    let stats = sim.sim().stats();
    let mut applied = BTreeMap::new();
    for (game, s) in &stats.games {
        eprintln!(
            "{game}: applied {} duplicates {} busy {} max/s {} capacity/s {}",
            s.applied, s.duplicates, s.busy, s.max_applied_in_1s, s.capacity_per_s
        );
        assert!(s.max_applied_in_1s <= s.capacity_per_s, "{game}: over capacity in a second");
        applied.insert(game.clone(), s.applied);
    }
    assert!(applied.values().all(|&n| n == u64::from(ORDERS_PER_GAME)), "{applied:?}");
    for game in 0..campaign.games.len() {
        assert_eq!(env.stream.pending(game).await.unwrap(), (0, 0), "game {game} drained");
    }
    drop(env);
    sim.stop().await.expect("the simulator stops cleanly");
}

fn claims_for(campaign: &Campaign) -> Vec<ClaimRequest> {
    claims(campaign, SystemClock.now_ms())
}
