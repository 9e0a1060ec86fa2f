//! The distributed mode across processes: two API nodes and three delivery workers
//! (`hongbao serve --redis --nats`) over the machine's Redis and NATS JetStream, the game
//! simulator on loopback. Each test has a namespace of its own, deleted afterwards (keys and
//! stream). Without Redis or NATS the tests say they skipped; under CI they fail instead.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, GameIndex, Role, sign_ticket};
use serde_json::{Value, json};
use support::services::{NATS_URL, Namespace, REDIS_URL, services_answer};
use support::{Running, get_json, now_s, open_campaign_file, run_ok, spawn_sim};

const USERS: u64 = 3_000;
const SCALE: &str = "0.1";
/// Makes an API node abort right after the claim script accepts (`hongbao`'s fleet module).
const CRASH_AFTER_CLAIM_SCRIPT: &str = "HONGBAO_CRASH_AFTER_CLAIM_SCRIPT";
/// A bound on waiting for the fleet to deliver, far above the seconds it needs.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// The campaign, the simulator and the users' profiles one fleet test runs on.
struct World {
    _dir: tempfile::TempDir,
    config: String,
    profiles: String,
    campaign: Campaign,
    model: SynthModel,
    sim: Running,
    sim_url: String,
    game_log: std::path::PathBuf,
    ns: Namespace,
    /// `--claim-shards` of every node (`None`: left out, one shard).
    claim_shards: Option<u16>,
}

impl World {
    fn new(edit: impl Fn(String) -> String) -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        let game_log = dir.path().join("game-log.jsonl");
        let log = game_log.to_str().expect("utf-8").to_string();
        let (sim, sim_url) = spawn_sim(42, USERS, &["--capacity-scale", SCALE, "--log", &log]);
        let (config, campaign) = open_campaign_file(dir.path(), &sim_url, edit);
        let profiles = dir.path().join("profiles").to_str().expect("utf-8").to_string();
        let users = USERS.to_string();
        let gen_args = ["gen", "--config", &config, "--users", &users, "--seed", "42"];
        run_ok(&[&gen_args[..], &["--out", &profiles]].concat());
        let model = SynthModel::new(42, USERS, campaign.games.len());
        let ns = Namespace::new("hbfleet", &campaign);
        let claim_shards = None;
        World {
            _dir: dir,
            config,
            profiles,
            campaign,
            model,
            sim,
            sim_url,
            game_log,
            ns,
            claim_shards,
        }
    }

    /// `hongbao serve` on the distributed backend in `role`; its process and API URL (for
    /// workers, the admin URL).
    fn node(&self, role: &str) -> (Running, String) {
        self.node_with(role, &[])
    }

    /// [`World::node`] with extra environment variables.
    fn node_with(&self, role: &str, env: &[(&str, &str)]) -> (Running, String) {
        let args = [
            "serve",
            "--rehearsal",
            "--admin-unsigned",
            "--config",
            &self.config,
            "--profiles",
            &self.profiles,
            "--redis",
            REDIS_URL,
            "--nats",
            NATS_URL,
            "--namespace",
            &self.ns.name,
            "--role",
            role,
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--capacity-scale",
            SCALE,
            "--sweep-grace-ms",
            "1000",
        ];
        let shards = self.claim_shards.map(|n| n.to_string());
        let sharded = shards.as_deref().map(|n| ["--claim-shards", n]);
        let args = [&args[..], sharded.as_ref().map_or(&[][..], |a| &a[..])].concat();
        let mut node = Running::spawn_with_env(&args, env);
        let url = if role == "worker" {
            node.wait_for_url("admin listening")
        } else {
            node.wait_for_url("api listening")
        };
        (node, url)
    }

    /// The user's festival bundle of `game` and a role that may claim it, if they play it.
    fn festival(&self, user: u64, game: GameIndex) -> Option<(String, Role)> {
        let gift =
            self.campaign.gifts.iter().find(|g| g.game == game && g.id.ends_with("-festival"))?;
        let level = gift.min_role_level.unwrap_or(0);
        let role = self.model.roles(user, game).into_iter().find(|r| r.level >= level.max(15))?;
        Some((gift.id.clone(), role))
    }

    fn ticket(&self, user: u64) -> String {
        sign_ticket(&self.campaign.auth.ticket_keys[0], user, now_s(), 3600)
    }
}

/// Grabs a coupon on `channel` at `api`; its text.
async fn grab(client: &reqwest::Client, api: &str, ticket: &str, channel: Channel) -> String {
    let answer: Value = client
        .post(format!("{api}/v1/coupons"))
        .bearer_auth(ticket)
        .json(&json!({ "channel": channel.as_str() }))
        .send()
        .await
        .expect("grab")
        .json()
        .await
        .expect("a JSON answer");
    answer["coupon"].as_str().unwrap_or_else(|| panic!("no coupon: {answer}")).to_string()
}

/// Claims `gift` with `coupon` for `role` at `api`: the status and the answer.
async fn claim(
    client: &reqwest::Client,
    api: &str,
    ticket: &str,
    coupon: &str,
    gift: &str,
    role: &Role,
) -> (u16, Value) {
    let body = json!({ "coupon": coupon, "gift_id": gift, "zone_id": role.zone_id, "role_id": role.role_id });
    let answer = client
        .post(format!("{api}/v1/claims"))
        .bearer_auth(ticket)
        .json(&body)
        .send()
        .await
        .expect("claim");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON answer"))
}

/// The simulator's counters by game.
async fn sim_stats(client: &reqwest::Client, sim: &str) -> BTreeMap<String, Value> {
    let stats = get_json(client, &format!("{sim}/idip/v1/stats")).await;
    serde_json::from_value(stats["games"].clone()).expect("games")
}

/// The worker holding `game`'s lease, from the lease key (its holder name carries the pid).
async fn holder_pid(ns: &str, campaign: &str, game: u8) -> Option<u32> {
    let client = redis::Client::open(REDIS_URL).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("{ns}:{campaign}:game-lease:{game}"))
        .query_async(&mut conn)
        .await
        .ok()?;
    holder?.rsplit('-').nth(1)?.parse().ok()
}

/// The same coupon claimed on both API nodes at once is one order; a gift with a stock of 5
/// claimed by 30 users across both nodes at once is exactly 5 orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_agree_on_each_coupon_and_on_stock() {
    if !services_answer() {
        return;
    }
    let world = World::new(|text| text.replacen("stock = 2000000", "stock = 5", 1));
    agree_on_each_coupon_and_on_stock(world).await;
}

/// The same over eight claim shards: the stock of 5 is split into quotas that move between
/// the shards while both nodes' claims storm it, and still exactly 5 orders are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_agree_on_each_coupon_and_on_stock_over_claim_shards() {
    if !services_answer() {
        return;
    }
    let mut world = World::new(|text| text.replacen("stock = 2000000", "stock = 5", 1));
    world.claim_shards = Some(8);
    agree_on_each_coupon_and_on_stock(world).await;
}

async fn agree_on_each_coupon_and_on_stock(world: World) {
    let (_a, api_a) = world.node("api");
    let (_b, api_b) = world.node("api");
    let client = reqwest::Client::new();
    let lantern = GameIndex(0);
    let users: Vec<(u64, String, Role)> = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .filter_map(|u| world.festival(u, lantern).map(|(g, r)| (u, g, r)))
        .take(31)
        .collect();
    assert_eq!(users.len(), 31, "enough users play lantern-heroes");
    assert_eq!(users[0].1, "lh-festival", "the gift with the small stock");

    // One coupon, both nodes at once: one order.
    let (user, gift, role) = &users[0];
    let ticket = world.ticket(*user);
    let coupon = grab(&client, &api_a, &ticket, Channel::Swipe).await;
    let (first, second) = tokio::join!(
        claim(&client, &api_a, &ticket, &coupon, gift, role),
        claim(&client, &api_b, &ticket, &coupon, gift, role),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 202], "{first:?} {second:?}");
    assert_eq!(first.1["order_id"], second.1["order_id"]);

    // 30 more users storm the remaining 4 units across both nodes.
    let mut storm = tokio::task::JoinSet::new();
    for (n, (user, gift, role)) in users[1..].iter().cloned().enumerate() {
        let (client, ticket) = (client.clone(), world.ticket(user));
        let api = if n % 2 == 0 { api_a.clone() } else { api_b.clone() };
        storm.spawn(async move {
            let coupon = grab(&client, &api, &ticket, Channel::Swipe).await;
            claim(&client, &api, &ticket, &coupon, &gift, &role).await
        });
    }
    let answers = storm.join_all().await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let sold_out =
        answers.iter().filter(|(s, a)| *s == 409 && a["error"]["code"] == "out_of_stock");
    assert_eq!(accepted, 4, "{answers:?}");
    assert_eq!(sold_out.count(), 26, "{answers:?}");

    // Each node's /metrics counts its publishes and their batches: 5 acked in all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (mut acked, mut batches) = (0.0, 0.0);
        for api in [&api_a, &api_b] {
            let text = client.get(format!("{api}/metrics")).send().await.expect("GET /metrics");
            let text = text.text().await.expect("metrics text");
            acked += sample(&text, "hongbao_publishes_total{outcome=\"acked\"}");
            batches += sample(&text, "hongbao_publish_batches_total");
        }
        if acked == 5.0 {
            assert!((1.0..=5.0).contains(&batches), "{batches} batches for 5 publishes");
            break;
        }
        assert!(acked < 5.0 && Instant::now() < deadline, "{acked} publishes acked, not 5");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the series named exactly `series` (name and labels as printed) in a
/// Prometheus text page, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum()
}

/// The grabs' total over the last five minutes as `api`'s monitor answers it.
async fn grabs_seen(client: &reqwest::Client, api: &str) -> f64 {
    let url = format!("{api}/monitor/v1/query?metric=hongbao_grabs_total&window=5m");
    let answer = get_json(client, &url).await;
    answer["series"].as_array().into_iter().flatten().filter_map(|l| l["total"].as_f64()).sum()
}

/// Each API node's monitor answers for the fleet: grabs made on either node are counted in the
/// one total either node's `/monitor/v1/query` answers (the series live in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_nodes_monitor_counts_the_whole_fleet() {
    if !services_answer() {
        return;
    }
    let world = World::new(|text| text);
    let (_a, api_a) = world.node("api");
    let (_b, api_b) = world.node("api");
    let client = reqwest::Client::new();
    for (n, user) in (FIRST_USER_ID..FIRST_USER_ID + 5).enumerate() {
        let api = if n < 3 { &api_a } else { &api_b };
        grab(&client, api, &world.ticket(user), Channel::Swipe).await;
    }
    // The nodes write each second after it ends: wait (bounded) until a node's total moves.
    let deadline = Instant::now() + Duration::from_secs(30);
    while grabs_seen(&client, &api_b).await < 5.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(grabs_seen(&client, &api_b).await, 5.0, "3 grabs on node A, 2 on node B");
    assert_eq!(grabs_seen(&client, &api_a).await, 5.0);
}

/// An API node dies between the claim script and the publish (it aborts there on purpose): the
/// claimant gets no answer, the order is recorded but in no stream, and a worker's sweeper
/// publishes it; it is delivered once, and the same claim again is a replay of that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_script_and_publish_loses_nothing() {
    if !services_answer() {
        return;
    }
    let world = World::new(|text| text);
    let (mut doomed, api_doomed) = world.node_with("api", &[(CRASH_AFTER_CLAIM_SCRIPT, "1")]);
    let (_api, api) = world.node("api");
    let client = reqwest::Client::new();
    let (user, gift, role) = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .find_map(|u| world.festival(u, GameIndex(0)).map(|(g, r)| (u, g, r)))
        .expect("a user of the first game");
    let ticket = world.ticket(user);
    let coupon = grab(&client, &api_doomed, &ticket, Channel::Swipe).await;
    let body = json!({ "coupon": coupon, "gift_id": gift, "zone_id": role.zone_id, "role_id": role.role_id });
    let answer = client
        .post(format!("{api_doomed}/v1/claims"))
        .bearer_auth(&ticket)
        .json(&body)
        .send()
        .await;
    assert!(answer.is_err(), "the node answered instead of dying: {answer:?}");
    let status = doomed.child.wait().expect("reaped");
    assert!(!status.success(), "the node aborted: {status:?}");

    // Recorded, not published: nothing reaches the game until a worker runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applied(&sim_stats(&client, &world.sim_url).await), 0);
    let (_worker, _) = world.node("worker");
    let started = Instant::now();
    while applied(&sim_stats(&client, &world.sim_url).await) < 1 {
        assert!(started.elapsed() < DRAIN_LIMIT, "the sweeper did not publish the order");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, replay) = claim(&client, &api, &ticket, &coupon, &gift, &role).await;
    assert_eq!(status, 200, "the same claim again replays the recorded order: {replay}");
    let order_id = replay["order_id"].as_str().expect("an order id").to_string();
    let order = loop {
        let order: Value = client
            .get(format!("{api}/v1/orders/{order_id}"))
            .bearer_auth(&ticket)
            .send()
            .await
            .expect("order")
            .json()
            .await
            .expect("a JSON answer");
        if order["status"] == "delivered" || started.elapsed() > DRAIN_LIMIT {
            break order;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(order["status"], "delivered", "{order}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(applied(&sim_stats(&client, &world.sim_url).await), 1, "applied once");
}

/// Orders applied by the game, over every game.
fn applied(stats: &BTreeMap<String, Value>) -> u64 {
    stats.values().map(|s| s["applied"].as_u64().unwrap_or(0)).sum()
}

/// Claims through two API nodes, delivered by three workers sharing the games; the worker
/// holding a game is killed with SIGKILL mid-drain. Every order is applied once, no game's
/// busiest second is over its capacity, and the game's log has each order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_deliver_every_order_once_through_a_kill_9() {
    if !services_answer() {
        return;
    }
    let world = World::new(|text| text);
    let (_a, api_a) = world.node("api");
    let (_b, api_b) = world.node("api");
    let mut workers: Vec<Running> = (0..3).map(|_| world.node("worker").0).collect();
    let client = reqwest::Client::new();

    let mut orders = HashSet::new();
    let channels = [Channel::Swipe, Channel::ArMap, Channel::Scan];
    for user in FIRST_USER_ID..FIRST_USER_ID + 250 {
        let ticket = world.ticket(user);
        let api = if user % 2 == 0 { &api_a } else { &api_b };
        let games = world.campaign.games.iter().filter_map(|g| world.festival(user, g.index));
        for ((gift, role), channel) in games.zip(channels) {
            let coupon = grab(&client, api, &ticket, channel).await;
            let (status, answer) = claim(&client, api, &ticket, &coupon, &gift, &role).await;
            assert_eq!(status, 202, "{answer}");
            orders.insert(answer["order_id"].as_str().expect("an order id").to_string());
        }
    }
    assert!(orders.len() >= 150, "{} orders", orders.len());

    // Kill -9 the worker delivering the first game once deliveries are under way.
    let started = Instant::now();
    while applied(&sim_stats(&client, &world.sim_url).await) < 20 {
        assert!(started.elapsed() < DRAIN_LIMIT, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = holder_pid(&world.ns.name, &world.campaign.id, 0).await.expect("a holder");
    let victim = workers.iter().position(|w| w.child.id() == pid).expect("one of ours holds it");
    let mut victim = workers.remove(victim);
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().expect("reaped");

    while applied(&sim_stats(&client, &world.sim_url).await) < orders.len() as u64 {
        assert!(started.elapsed() < DRAIN_LIMIT, "the orders were not all delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = sim_stats(&client, &world.sim_url).await;
    assert_eq!(applied(&stats), orders.len() as u64, "each order applied once: {stats:?}");
    for (game, s) in &stats {
        let (max, cap) = (s["max_applied_in_1s"].as_u64(), s["capacity_per_s"].as_u64());
        assert!(max <= cap, "{game}: busiest second {max:?} over capacity {cap:?}");
    }
    let log = std::fs::read_to_string(&world.game_log).expect("the game's log");
    let serials: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a log line")["serial"].to_string())
        .collect();
    let unique: HashSet<&String> = serials.iter().collect();
    assert_eq!((serials.len(), unique.len()), (orders.len(), orders.len()));
    drop(world.sim);
}

/// Whether `game` is paused as the worker at `admin` sees it (`GET /admin/v1/delivery`).
async fn paused_on(client: &reqwest::Client, admin: &str, game: &str) -> bool {
    let status: Value = client
        .get(format!("{admin}/admin/v1/delivery"))
        .send()
        .await
        .expect("delivery status")
        .json()
        .await
        .expect("status JSON");
    let games = status["games"].as_array().expect("games");
    let entry = games.iter().find(|g| g["game"] == game).expect("the game in the status");
    entry["paused"].as_bool().expect("paused")
}

/// The operator's commands on a fleet: a pause sent to one worker's admin address holds on the
/// other worker too (kept in Redis beside the game leases) until a resume sent to the other
/// lifts it everywhere; and a worker's reconcile endpoint reconciles the fleet's Redis and
/// stream (a summary only: it was started without --reconcile-dir).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pause_resume_and_reconcile_a_fleet() {
    if !services_answer() {
        return;
    }
    let world = World::new(|text| text);
    let (_a, admin_a) = world.node("worker");
    let (_b, admin_b) = world.node("worker");
    let client = reqwest::Client::new();
    let game = world.campaign.games[0].id.clone();
    let post = |url: String| {
        let request = client.post(url).json(&json!({}));
        async move {
            let answer = request.send().await.expect("post");
            (answer.status().as_u16(), answer.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = post(format!("{admin_a}/admin/v1/delivery/{game}/pause")).await;
    assert_eq!((status, body["paused"].as_bool()), (200, Some(true)), "{body}");
    let started = Instant::now();
    while !paused_on(&client, &admin_b, &game).await {
        assert!(started.elapsed() < DRAIN_LIMIT, "the other worker never took the pause on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = post(format!("{admin_b}/admin/v1/delivery/{game}/resume")).await;
    assert_eq!(status, 200);
    while paused_on(&client, &admin_a, &game).await {
        assert!(started.elapsed() < DRAIN_LIMIT, "the first worker never took the resume on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, body) = post(format!("{admin_a}/admin/v1/reconcile")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["orders_scanned"].as_u64(), body["clean"].as_bool()), (Some(0), Some(true)));
    let request = client.post(format!("{admin_b}/admin/v1/reconcile")).json(&json!({"out": "r"}));
    let answer = request.send().await.expect("post");
    assert_eq!(answer.status().as_u16(), 409);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "no_reconcile_dir", "{body}");
}
