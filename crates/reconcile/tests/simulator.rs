//! Reconciliation against the real pieces, wired as `hongbao serve` wires them: the embedded
//! store, the delivery workers (`Dispatcher` over the store's queues) and the game-side simulator
//! with its delivery log, on a loopback port.
//!
//! Three faults, each with a known set of orders:
//! - the simulator loses a fifth of the deliveries after answering `applied` (`lose_rate`);
//! - a worker "crashes" between the game's success and our log: orders leased, delivered
//!   straight to the simulator, never finished; the store is reopened, dropping the leases;
//! - queue entries deleted by hand from the closed store.
//!
//! Reconciliation must find exactly those; after `--apply` and delivery, the next pass is clean
//! and the game's log has every serial once. No assertion depends on timing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hongbao_clock::SystemClock;
use hongbao_delivery::{Dispatcher, DispatcherConfig};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, Coupon, Order, OrderId, RoleId, ZoneId};
use hongbao_gamesim::testing::RunningSim;
use hongbao_gamesim::{FaultsUpdate, SimConfig};
use hongbao_gateway::{DeliveryOutcome, DeliveryRequest, IdipClient};
use hongbao_queue::DeliveryQueue;
use hongbao_reconcile::{Class, Options, Quiet, Summary, reconcile};
use hongbao_store::{
    CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest, EmbeddedConfig, EmbeddedStore,
    LedgerScan,
};

const SEED: u64 = 11;
const USERS: u64 = 5_000;
const SCALE: f64 = 0.1;
/// Orders per game delivered through the lossy simulator.
const LOSSY_PER_GAME: usize = 12;
/// Games whose first order after the lossy phase is delivered by a "crashing" worker.
const CRASHED: usize = 4;
/// Games one of whose orders loses its queue entry by hand.
const DELETED: usize = 4;
const LIVENESS_LIMIT: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

struct Rig {
    campaign: Campaign,
    sim: RunningSim,
    store_dir: PathBuf,
    log: PathBuf,
    /// (user, zone, role) per game index, users with a role in that game.
    players: Vec<Vec<(u64, ZoneId, RoleId)>>,
}

impl Rig {
    async fn start(dir: &Path) -> Rig {
        let text = include_str!("../../../config/spring-festival.toml");
        let campaign =
            Campaign::parse(text, "config/spring-festival.toml", &|_| None).expect("campaign");
        let log = dir.join("game.log");
        let config = SimConfig {
            seed: SEED,
            users: USERS,
            capacity_scale: SCALE,
            role_latency_ms: 0,
            deliver_latency_ms: 1,
            log_path: Some(log.clone()),
            ..SimConfig::default()
        };
        let sim = RunningSim::start(campaign, config).await.expect("simulator");
        let mut campaign = sim.campaign().clone();
        for game in &mut campaign.games {
            game.idip_timeout_ms = 2_000;
        }
        let model = SynthModel::new(SEED, USERS, campaign.games.len());
        let players = campaign
            .games
            .iter()
            .map(|g| {
                (FIRST_USER_ID..FIRST_USER_ID + USERS)
                    .filter_map(|u| {
                        model
                            .roles(u, g.index)
                            .into_iter()
                            .next()
                            .map(|r| (u, r.zone_id, r.role_id))
                    })
                    .take(LOSSY_PER_GAME + 2)
                    .collect::<Vec<_>>()
            })
            .collect();
        Rig { campaign, sim, store_dir: dir.join("store"), log, players }
    }

    fn open(&self) -> Arc<EmbeddedStore> {
        Arc::new(
            EmbeddedStore::open_with(
                &self.store_dir,
                EmbeddedConfig::default(),
                CampaignBinding::of(&self.campaign),
            )
            .expect("open store"),
        )
    }

    /// The `n`-th player of game `game` claims the game's first gift.
    async fn claim(&self, store: &EmbeddedStore, game: usize, n: usize) -> Order {
        let (user, zone, role) = self.players[game][n];
        let gift =
            self.campaign.gifts.iter().find(|g| usize::from(g.game.0) == game).expect("a gift");
        let coupon = Coupon {
            campaign_id: self.campaign.id.clone(),
            user,
            channel: Channel::Swipe,
            serial: u32::try_from(game + 1).expect("small"),
            expires_at_unix_s: i64::MAX,
        };
        let mut req = ClaimRequest::new(&self.campaign, gift, coupon, zone, role, now_ms());
        req.stock = u64::MAX;
        // A delivery test, not a limits one: the first gift of a game may be high value.
        req.high_value = None;
        match store.claim(req).await.expect("claim") {
            ClaimOutcome::Accepted(order) => *order,
            other => panic!("{other:?}"),
        }
    }

    /// Runs the workers until every queue is empty.
    async fn deliver_all(&self, store: &Arc<EmbeddedStore>) {
        let queue = Arc::clone(store);
        let client = IdipClient::new(&self.campaign).expect("client");
        let config = DispatcherConfig {
            capacity_scale: SCALE,
            idle_poll_ms: 20,
            retry_base_ms: 20,
            retry_cap_ms: 400,
            hold_base_ms: 50,
            hold_cap_ms: 400,
            ..DispatcherConfig::default()
        };
        let dispatcher =
            Dispatcher::start(&self.campaign, client, queue, config, SystemClock::shared())
                .expect("start");
        let started = tokio::time::Instant::now();
        while self.campaign.games.iter().any(|g| store.queue_depth(g.index) > 0) {
            assert!(started.elapsed() < LIVENESS_LIMIT, "delivery is stuck");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        dispatcher.shutdown().await;
    }

    fn options(&self, out: &Path, apply: bool) -> Options {
        let games = self.campaign.games.iter().map(|g| g.id.clone()).collect();
        let mut options = Options::new(now_ms(), games, self.campaign.delivery_deadline_s * 1000);
        options.game_log = Some(self.log.clone());
        options.out = Some(out.to_path_buf());
        options.apply = apply;
        // A fifth of the first deliveries is lost on purpose: above the default share.
        options.guards.max_requeue_share = 1.0;
        options.sort_run_len = 16;
        options.page_len = 7;
        options
    }

    /// Serial → lines in the game's log.
    fn game_log(&self) -> BTreeMap<String, u32> {
        let mut serials = BTreeMap::new();
        for line in std::fs::read_to_string(&self.log).expect("log").lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("log line");
            *serials.entry(record["serial"].as_str().expect("serial").to_string()).or_insert(0) +=
                1;
        }
        serials
    }
}

async fn close(store: Arc<EmbeddedStore>) {
    let store = Arc::try_unwrap(store).expect("the only handle");
    tokio::task::spawn_blocking(move || store.close()).await.expect("join").expect("close");
}

fn found(summary: &Summary) -> BTreeMap<Class, u64> {
    summary.classes.iter().filter(|(_, n)| **n > 0).map(|(c, n)| (*c, *n)).collect()
}

/// (why or class, order id) → rows of a JSON lines file.
fn rows(path: &Path, key: &str) -> BTreeSet<(String, OrderId)> {
    std::fs::read_to_string(path)
        .expect("rows")
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("row");
            let id = OrderId::parse(row["order_id"].as_str().expect("id")).expect("an order id");
            (row[key].as_str().expect("key").to_string(), id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_finds_exactly_the_faults_and_apply_makes_it_clean() {
    let dir = tempfile::tempdir().expect("dir");
    let rig = Rig::start(dir.path()).await;
    let games = rig.campaign.games.len();
    let mut all: Vec<OrderId> = Vec::new();

    // 1. Lossy delivery: a fifth answered `applied` and dropped by the game.
    rig.sim
        .sim()
        .set_faults(&FaultsUpdate { lose_rate: Some(0.2), ..FaultsUpdate::default() })
        .expect("faults");
    let store = rig.open();
    let mut lossy = Vec::new();
    for game in 0..games {
        for n in 0..LOSSY_PER_GAME {
            lossy.push(rig.claim(&store, game, n).await.id);
        }
    }
    rig.deliver_all(&store).await;
    rig.sim
        .sim()
        .set_faults(&FaultsUpdate { lose_rate: Some(0.0), ..FaultsUpdate::default() })
        .expect("faults");
    let in_log = rig.game_log();
    let lost: BTreeSet<OrderId> =
        lossy.iter().filter(|id| !in_log.contains_key(id.as_str())).copied().collect();
    let lost_at_sim: u64 = rig.sim.sim().stats().games.values().map(|g| g.lost).sum();
    assert_eq!(lost.len() as u64, lost_at_sim, "the simulator's count agrees");
    assert!(!lost.is_empty(), "a fifth of {} deliveries lost none", lossy.len());
    all.extend(&lossy);

    // 2. A worker crashes between the game's success and our log.
    let client = IdipClient::new(&rig.campaign).expect("client");
    let mut crashed = BTreeSet::new();
    for game in 0..CRASHED {
        let order = rig.claim(&store, game, LOSSY_PER_GAME).await;
        let leased = store.lease(rig.campaign.games[game].index, 1, now_ms()).await.expect("lease");
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].lease.order.id, order.id);
        let gift = rig.campaign.gifts.iter().find(|g| g.id == order.gift_id).expect("gift");
        let request = DeliveryRequest {
            serial: order.id.to_string(),
            user: order.user,
            game: rig.campaign.games[game].index,
            zone_id: order.zone_id,
            role_id: order.role_id,
            items: gift.items.clone(),
        };
        assert_eq!(client.deliver(&request).await.expect("deliver"), DeliveryOutcome::Applied);
        crashed.insert(order.id);
        all.push(order.id);
    }
    // 3. Entries deleted by hand (from the closed store: the lock keeps it from running beside
    //    a live one). Closing also drops the crashed worker's leases.
    let mut deleted = Vec::new();
    for game in games - DELETED..games {
        deleted.push(rig.claim(&store, game, LOSSY_PER_GAME + 1).await);
    }
    close(store).await;
    for order in &deleted {
        assert!(EmbeddedStore::remove_queue_entry_by_hand(&rig.store_dir, order).expect("remove"));
        all.push(order.id);
    }
    let deleted: BTreeSet<OrderId> = deleted.iter().map(|o| o.id).collect();

    // Reconcile: exactly the three sets, nothing else.
    let store = rig.open();
    let first = dir.path().join("first");
    let summary = reconcile(&store, &rig.options(&first, false)).await.expect("reconcile");
    eprintln!("{}", summary.table());
    let expected: BTreeMap<Class, u64> = [
        (Class::LostAtGame, lost.len() as u64),
        (Class::DeliveredUnrecorded, CRASHED as u64),
        (Class::NotSentNorQueued, DELETED as u64),
    ]
    .into();
    assert_eq!(found(&summary), expected);
    assert_eq!(summary.quiet[&Quiet::Delivered], (lossy.len() - lost.len()) as u64);
    assert_eq!(summary.orders_scanned, all.len() as u64);
    let mut resend: BTreeSet<(String, OrderId)> =
        lost.iter().map(|id| ("lost_at_game".to_string(), *id)).collect();
    resend.extend(deleted.iter().map(|id| ("not_sent_nor_queued".to_string(), *id)));
    assert_eq!(rows(&first.join("resend.jsonl"), "why"), resend);
    let unrecorded: BTreeSet<(String, OrderId)> =
        crashed.iter().map(|id| ("delivered_unrecorded".to_string(), *id)).collect();
    assert_eq!(rows(&first.join("anomalies.jsonl"), "class"), unrecorded);

    // Apply, then apply again right away: the second enqueues and records nothing.
    let applied =
        reconcile(&store, &rig.options(&dir.path().join("apply"), true)).await.expect("apply");
    let tally = applied.applied.expect("tally");
    assert_eq!(
        (tally.requeued, tally.repaired, tally.recorded, tally.errors),
        (lost.len() as u64, DELETED as u64, CRASHED as u64, 0)
    );
    let again =
        reconcile(&store, &rig.options(&dir.path().join("again"), true)).await.expect("again");
    assert_eq!((again.resend, again.record), (0, 0), "{}", again.table());
    assert_eq!(again.applied.expect("tally"), Default::default());
    assert_eq!(again.quiet[&Quiet::Pending], (lost.len() + DELETED) as u64);

    // Deliver what was resent; then the pass is clean and the game has every serial once.
    rig.deliver_all(&store).await;
    let last =
        reconcile(&store, &rig.options(&dir.path().join("last"), false)).await.expect("last");
    assert!(last.clean, "{}", last.table());
    assert_eq!(last.quiet[&Quiet::Delivered], all.len() as u64);
    close(store).await;

    let log = rig.game_log();
    let ids: HashMap<String, u32> = log.into_iter().collect();
    assert_eq!(ids.len(), all.len(), "every order reached the game");
    for id in &all {
        assert_eq!(ids.get(id.as_str()), Some(&1), "{id} applied once");
    }
    let stats = rig.sim.sim().stats();
    let applied: u64 = stats.games.values().map(|g| g.applied).sum();
    let duplicates: u64 = stats.games.values().map(|g| g.duplicates).sum();
    eprintln!(
        "simulator: applied {applied}, refused as duplicates {duplicates}, lost {lost_at_sim}"
    );
    assert_eq!(applied, all.len() as u64);
    rig.sim.stop().await.expect("sim stopped");
}
