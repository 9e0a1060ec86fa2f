//! The delivery workers `kill -9`ed several times mid-run and restarted on the same data: every
//! order is delivered, none is applied twice at the game, and no game ever sees more than its
//! capacity in a second — read from the simulator's own stats and delivery log.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, sign_ticket};
use serde_json::{Value, json};
use support::{
    Running, admin_get_json, now_s, open_campaign_file, run_ok, spawn_sim, test_operator_key,
    write_keys_file,
};

const USERS: u64 = 3_000;
const SCALE: &str = "0.1";
const ORDERS_WANTED: usize = 700;

fn campaign_file(dir: &std::path::Path, sim: &str) -> (String, Campaign) {
    open_campaign_file(dir, sim, |text| text)
}

fn serve(config: &str, data: &str, keys: &str) -> (Running, String, String) {
    let profiles = format!("{data}/profiles");
    let mut node = Running::spawn(&[
        "serve",
        "--rehearsal",
        "--operator-keys",
        keys,
        "--config",
        config,
        "--data",
        data,
        "--profiles",
        &profiles,
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--capacity-scale",
        SCALE,
    ]);
    let api = node.wait_for_url("api listening");
    let admin = node.wait_for_url("admin listening");
    (node, api, admin)
}

/// Claims each user's game festival bundles (one coupon each) until `ORDERS_WANTED` are queued.
async fn claim_orders(api: &str, campaign: &Campaign, model: &SynthModel) -> usize {
    let client = reqwest::Client::new();
    let channels = [
        Channel::Swipe,
        Channel::Swipe,
        Channel::Swipe,
        Channel::ArMap,
        Channel::ArMap,
        Channel::Scan,
        Channel::Scan,
    ];
    let mut orders = 0;
    for user in FIRST_USER_ID..FIRST_USER_ID + USERS {
        let ticket = sign_ticket(&campaign.auth.ticket_keys[0], user, now_s(), 3600);
        let mut coupons = channels.iter();
        for game in &campaign.games {
            let Some(role) = model.roles(user, game.index).into_iter().find(|r| r.level >= 15)
            else {
                continue;
            };
            let Some(channel) = coupons.next() else { break };
            let grab: Value = client
                .post(format!("{api}/v1/coupons"))
                .bearer_auth(&ticket)
                .json(&json!({ "channel": channel.as_str() }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let gift = campaign
                .gifts
                .iter()
                .find(|g| g.game == game.index && g.id.ends_with("-festival"))
                .unwrap();
            let body = json!({ "coupon": grab["coupon"], "gift_id": gift.id, "zone_id": role.zone_id, "role_id": role.role_id });
            let answer = client
                .post(format!("{api}/v1/claims"))
                .bearer_auth(&ticket)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
            orders += 1;
            if orders == ORDERS_WANTED {
                return orders;
            }
        }
    }
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let keys = write_keys_file(dir.path(), &[test_operator_key()]);
    let game_log = dir.path().join("game-log.jsonl");
    let (mut sim, sim_url) =
        spawn_sim(42, USERS, &["--capacity-scale", SCALE, "--log", game_log.to_str().unwrap()]);
    let (config, campaign) = campaign_file(dir.path(), &sim_url);
    let model = SynthModel::new(42, USERS, campaign.games.len());
    let profiles = format!("{data}/profiles");
    run_ok(&[
        "gen",
        "--config",
        &config,
        "--users",
        &USERS.to_string(),
        "--seed",
        "42",
        "--out",
        &profiles,
    ]);

    let (node, api, _) = serve(&config, data, &keys);
    let orders = claim_orders(&api, &campaign, &model).await;
    assert_eq!(orders, ORDERS_WANTED);
    let mut node = node;
    let mut admin = String::new();

    // Three kills while the backlog drains, each at a different point.
    for pause_ms in [900u64, 1_300, 700] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();
        let (restarted, _, restarted_admin) = serve(&config, data, &keys);
        node = restarted;
        admin = restarted_admin;
    }

    // The operator's view: pause one game, see it, resume it.
    run_ok(&[
        "delivery",
        "pause",
        "--admin",
        &admin,
        "--game",
        "lantern-heroes",
        "--key-file",
        &keys,
    ]);
    let status: Value = serde_json::from_str(&run_ok(&[
        "delivery",
        "status",
        "--admin",
        &admin,
        "--json",
        "--key-file",
        &keys,
    ]))
    .unwrap();
    let lh = status["games"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["game"] == "lantern-heroes")
        .unwrap()
        .clone();
    assert_eq!(lh["paused"], true, "{lh}");
    assert!(
        run_ok(&["delivery", "status", "--admin", &admin, "--key-file", &keys])
            .contains("lantern-heroes")
    );
    run_ok(&[
        "delivery",
        "resume",
        "--admin",
        &admin,
        "--game",
        "lantern-heroes",
        "--key-file",
        &keys,
    ]);

    // Wait until the last node has drained every queue.
    let last = node;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = admin_get_json(&client, &format!("{admin}/admin/v1/delivery")).await;
        let pending: u64 = status["games"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["queue_depth"].as_u64().unwrap())
            .sum();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The writer's figures on the admin address: every synced commit timed into one bucket (this
    // node only settled deliveries, which need no fsync of their own, so there may be none).
    let store = admin_get_json(&client, &format!("{admin}/admin/v1/store")).await;
    let fsyncs = store["fsyncs"].as_u64().unwrap();
    assert!(store["commands"].as_u64().unwrap() > 0, "{store}");
    let buckets = store["synced_commits_by_ms"].as_array().unwrap();
    assert_eq!(buckets.len(), store["synced_commit_bounds_ms"].as_array().unwrap().len() + 1);
    assert_eq!(buckets.iter().map(|b| b.as_u64().unwrap()).sum::<u64>(), fsyncs, "{store}");
    assert!(last.terminate().success());

    // Ours: every order delivered.
    let inspection: Value =
        serde_json::from_str(&run_ok(&["inspect", "--config", &config, "--data", data])).unwrap();
    assert_eq!(inspection["orders"].as_u64().unwrap(), orders as u64);
    assert_eq!(
        inspection["orders_by_status"]["delivered"].as_u64().unwrap(),
        orders as u64,
        "{inspection}"
    );

    // The game's: every serial applied exactly once, no second over capacity.
    let stats: Value =
        client.get(format!("{sim_url}/idip/v1/stats")).send().await.unwrap().json().await.unwrap();
    let mut applied = 0;
    for (game, s) in stats["games"].as_object().unwrap() {
        applied += s["applied"].as_u64().unwrap();
        assert!(
            s["max_applied_in_1s"].as_u64().unwrap() <= s["capacity_per_s"].as_u64().unwrap(),
            "{game}: {s}"
        );
    }
    assert_eq!(applied, orders as u64, "{stats}");
    let log = std::fs::read_to_string(&game_log).unwrap();
    let mut serials: HashMap<String, u32> = HashMap::new();
    for line in log.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        *serials.entry(record["serial"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(serials.len(), orders);
    assert!(serials.values().all(|&n| n == 1), "a serial was applied twice");
    eprintln!("{stats}");
    drop(sim.child.kill());
}
