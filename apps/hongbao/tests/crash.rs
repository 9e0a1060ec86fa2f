//! `kill -9` in the middle of a claim storm: every claim answered 202 survives the restart,
//! queued, and the stock taken equals the orders written (no oversell, nothing half-done).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, sign_ticket};
use serde_json::{Value, json};
use support::{Running, now_s, open_campaign_file, run_ok, spawn_sim};

const USERS: u64 = 5_000;
const SEED: u64 = 42;
const STOCK: u64 = 3_000;

/// The example campaign, opened two hours ago, its games at `sim`, `ck-lucky` limited to STOCK.
fn campaign_file(dir: &std::path::Path, sim: &str) -> (String, Campaign) {
    open_campaign_file(dir, sim, |text| {
        text.replacen("stock = 5000000\nper_user = 2", &format!("stock = {STOCK}\nper_user = 2"), 1)
    })
}

fn serve(config: &str, data: &str) -> (Running, String) {
    let mut node = Running::spawn(&[
        "serve",
        "--rehearsal",
        "--admin-unsigned",
        "--no-profiles",
        "--config",
        config,
        "--data",
        data,
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--role",
        "api",
    ]);
    let api = node.wait_for_url("api listening");
    (node, api)
}

/// One client: grabs and claims `ck-lucky` for its users until the server goes away.
async fn storm_client(
    api: String,
    campaign: Arc<Campaign>,
    users: Vec<(u64, u16, u64)>,
    accepted: Arc<Mutex<Vec<(u64, String)>>>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for (user, zone, role) in users {
        let ticket = sign_ticket(&campaign.auth.ticket_keys[0], user, now_s(), 3600);
        for _ in 0..2 {
            let Ok(grab) = client
                .post(format!("{api}/v1/coupons"))
                .bearer_auth(&ticket)
                .json(&json!({ "channel": "swipe" }))
                .send()
                .await
            else {
                return;
            };
            let Ok(grab) = grab.json::<Value>().await else { return };
            let Some(coupon) = grab["coupon"].as_str() else { continue };
            let body = json!({ "coupon": coupon, "gift_id": "ck-lucky", "zone_id": zone, "role_id": role });
            let Ok(answer) = client
                .post(format!("{api}/v1/claims"))
                .bearer_auth(&ticket)
                .json(&body)
                .send()
                .await
            else {
                return;
            };
            if answer.status() == 202 {
                let Ok(order) = answer.json::<Value>().await else { return };
                accepted
                    .lock()
                    .unwrap()
                    .push((user, order["order_id"].as_str().unwrap().to_string()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_claim_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (mut sim, sim_url) = spawn_sim(42, USERS, &[]);
    let (config, campaign) = campaign_file(dir.path(), &sim_url);
    let campaign = Arc::new(campaign);
    let game = campaign.game_by_id("cloud-kingdom").unwrap().index;
    let model = SynthModel::new(SEED, USERS, campaign.games.len());
    let users: Vec<(u64, u16, u64)> = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .filter_map(|u| model.roles(u, game).first().map(|r| (u, r.zone_id.0, r.role_id.0)))
        .collect();
    assert!(users.len() > 1000);

    let accepted = Arc::new(Mutex::new(Vec::new()));
    // Two storms, each killed at a different moment; the second runs on the recovered store.
    for (round, kill_after_ms) in [(0usize, 400 + now_s() as u64 % 500), (1, 700)] {
        let (mut node, api) = serve(&config, data);
        let clients: Vec<_> = users
            .iter()
            .skip(round * users.len() / 2)
            .take(users.len() / 2)
            .cloned()
            .collect::<Vec<_>>()
            .chunks(users.len() / 32)
            .map(|chunk| {
                tokio::spawn(storm_client(
                    api.clone(),
                    campaign.clone(),
                    chunk.to_vec(),
                    accepted.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();
        for c in clients {
            c.await.unwrap();
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(!accepted.is_empty(), "the storm got no claim through before the kill");
    eprintln!("{} claims answered 202 before the kills", accepted.len());

    // Restart: every 202 is there, queued (this node runs no delivery).
    let (node, api) = serve(&config, data);
    let client = reqwest::Client::new();
    for (user, order_id) in &accepted {
        let ticket = sign_ticket(&campaign.auth.ticket_keys[0], *user, now_s(), 3600);
        let response = client
            .get(format!("{api}/v1/orders/{order_id}"))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "accepted order {order_id} lost");
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["status"], "queued");
    }
    assert!(node.terminate().success());

    // Offline: stock taken == orders written, and never more than the stock.
    let out = run_ok(&["inspect", "--config", &config, "--data", data]);
    let inspection: Value = serde_json::from_str(&out).unwrap();
    let taken = inspection["stock_taken"]["ck-lucky"].as_u64().unwrap();
    let orders = inspection["orders_by_gift"]["ck-lucky"].as_u64().unwrap_or(0);
    assert_eq!(taken, orders, "stock taken and orders disagree: {inspection}");
    assert!(orders <= STOCK, "oversold: {orders} > {STOCK}");
    assert!(orders >= accepted.len() as u64);
    eprintln!("after restart: {orders} orders, {taken} stock taken of {STOCK}");
    assert_eq!(inspection["queue_depth"]["cloud-kingdom"].as_u64().unwrap(), orders);
    drop(sim.child.kill());
}
