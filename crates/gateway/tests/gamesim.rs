//! The gateway against the real game-side simulator (`hongbao-gamesim`) on a loopback port.

use std::sync::Arc;

use hongbao_domain::campaign::Item;
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, GameIndex, ZoneId};
use hongbao_gamesim::testing::RunningSim;
use hongbao_gamesim::{GameSim, SimConfig};
use hongbao_gateway::{
    DeliveryOutcome, DeliveryRequest, GatewayError, IdipClient, RoleCache, RoleCacheConfig,
};

const SEED: u64 = 7;
const USERS: u64 = 10_000;
/// Slow enough that the 1,000 requests arrive while the one load is in flight.
const ROLE_LATENCY_MS: u64 = 50;
/// Generous: a busy 2-core machine must not turn the one load into a timeout.
const IDIP_TIMEOUT_MS: u64 = 10_000;
const CONCURRENT_REQUESTS: usize = 1_000;

fn example_campaign() -> Campaign {
    let text = include_str!("../../../config/spring-festival.toml");
    Campaign::parse(text, "config/spring-festival.toml", &|_| None).expect("example campaign")
}

/// A running simulator, its campaign pointed at it, stopped on [`Sim::stop`].
struct Sim {
    running: RunningSim,
    model: SynthModel,
}

impl Sim {
    async fn start(role_latency_ms: u64) -> Sim {
        let mut campaign = example_campaign();
        for game in &mut campaign.games {
            game.idip_timeout_ms = IDIP_TIMEOUT_MS;
        }
        let config = SimConfig { seed: SEED, users: USERS, role_latency_ms, ..Default::default() };
        let running = RunningSim::start(campaign, config).await.expect("simulator");
        let model = SynthModel::new(SEED, USERS, running.campaign().games.len());
        Sim { running, model }
    }

    fn sim(&self) -> &GameSim {
        self.running.sim()
    }

    fn campaign(&self) -> &Campaign {
        self.running.campaign()
    }

    /// The first synthetic user with at least one role in `game`.
    fn user_with_roles(&self, game: GameIndex) -> u64 {
        (FIRST_USER_ID..FIRST_USER_ID + USERS)
            .find(|&u| !self.model.roles(u, game).is_empty())
            .expect("some user plays the game")
    }

    fn user_without_roles(&self, game: GameIndex) -> u64 {
        (FIRST_USER_ID..FIRST_USER_ID + USERS)
            .find(|&u| self.model.roles(u, game).is_empty())
            .expect("some user does not play the game")
    }

    async fn stop(self) {
        self.running.stop().await.expect("the simulator stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_lookups_of_a_cold_key_make_one_simulator_call() {
    let sim = Sim::start(ROLE_LATENCY_MS).await;
    let game = GameIndex(2);
    let user = sim.user_with_roles(game);
    let client = IdipClient::new(sim.campaign()).expect("client");
    let cache = Arc::new(RoleCache::new(Arc::new(client), None, RoleCacheConfig::default()));

    let tasks: Vec<_> = (0..CONCURRENT_REQUESTS)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.roles(user, game).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(CONCURRENT_REQUESTS);
    for task in tasks {
        answers.push(task.await.expect("task").expect("roles"));
    }

    let expected = sim.model.roles(user, game);
    assert!(!expected.is_empty());
    assert!(answers.iter().all(|a| **a == *expected), "every answer is the model's roles");
    let stats = sim.sim().stats();
    assert_eq!(stats.role_queries, 1, "one call to the simulator in total");
    let game_id = &sim.campaign().games[usize::from(game.0)].id;
    assert_eq!(stats.games[game_id].role_queries, 1);
    let c = cache.stats().snapshot();
    assert_eq!(c.misses, 1);
    assert_eq!(c.upstream_errors, 0);
    assert_eq!(c.hits_l1 + c.coalesced + c.misses, CONCURRENT_REQUESTS as u64);
    sim.stop().await;
}

#[tokio::test]
async fn a_created_role_is_seen_after_invalidation() {
    let sim = Sim::start(0).await;
    let game = GameIndex(0);
    let user = sim.user_without_roles(game);
    let client = IdipClient::new(sim.campaign()).expect("client");
    let cache = RoleCache::new(Arc::new(client.clone()), None, RoleCacheConfig::default());

    assert!(cache.roles(user, game).await.expect("roles").is_empty());
    let created = client.create_role(user, game, ZoneId(3)).await.expect("create");
    assert_eq!((created.zone_id, created.level), (ZoneId(3), 1));
    assert!(cache.roles(user, game).await.expect("roles").is_empty(), "still the cached answer");
    cache.invalidate(user, game).await.expect("invalidate");
    assert_eq!(&*cache.roles(user, game).await.expect("roles"), &[created]);
    assert_eq!(sim.sim().stats().role_queries, 2);

    let err = client.create_role(user, game, ZoneId(99)).await.expect_err("zone 99 does not exist");
    assert!(
        matches!(&err, GatewayError::Rejected { status: 400, reason, .. } if reason.contains("invalid_zone")),
        "{err}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn deliveries_are_applied_once_and_unknown_roles_are_permanent_errors() {
    let sim = Sim::start(0).await;
    let game = GameIndex(1);
    let user = sim.user_with_roles(game);
    let role = sim.model.roles(user, game).remove(0);
    let client = IdipClient::new(sim.campaign()).expect("client");
    let request = DeliveryRequest {
        serial: "order-1".to_string(),
        user,
        game,
        zone_id: role.zone_id,
        role_id: role.role_id,
        items: vec![Item { item: "lantern".to_string(), count: 2 }],
    };

    assert_eq!(client.deliver(&request).await.expect("deliver"), DeliveryOutcome::Applied);
    assert_eq!(client.deliver(&request).await.expect("deliver"), DeliveryOutcome::Duplicate);
    let wrong_role = DeliveryRequest {
        serial: "order-2".to_string(),
        role_id: hongbao_domain::RoleId(role.role_id.0 ^ 1),
        ..request.clone()
    };
    assert_eq!(
        client.deliver(&wrong_role).await.expect("deliver"),
        DeliveryOutcome::Error { reason: "role_not_found".to_string(), permanent: true }
    );
    let no_items = DeliveryRequest { serial: "order-3".to_string(), items: vec![], ..request };
    assert!(matches!(
        client.deliver(&no_items).await.expect("deliver"),
        DeliveryOutcome::Error { permanent: true, .. }
    ));

    let game_id = &sim.campaign().games[usize::from(game.0)].id;
    let stats = &sim.sim().stats().games[game_id];
    assert_eq!((stats.applied, stats.duplicates), (1, 1));
    sim.stop().await;
}
