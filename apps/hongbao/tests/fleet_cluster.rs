//! `hongbao serve --redis redis+cluster://…` on a local three-master Redis Cluster (started by
//! the test on free loopback ports, killed at the end) with the machine's NATS JetStream: an API
//! node answers a grab and a claim, and the campaign's keys are in the cluster. Without
//! redis-server or NATS the test says it skipped; under CI it fails instead.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Channel, GameIndex, sign_ticket};
use hongbao_redis::testing::LocalCluster;
use rand::Rng;
use serde_json::{Value, json};
use support::{Running, now_s, open_campaign_file, run_ok, spawn_sim};

const NATS_URL: &str = "nats://127.0.0.1:4222";
const USERS: u64 = 500;

fn nats_answers() -> bool {
    let addr = "127.0.0.1:4222".parse().expect("an address");
    let answers = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok();
    if !answers {
        assert!(std::env::var_os("CI").is_none(), "no NATS at 4222, and CI is set");
        println!("skipped: no NATS at 127.0.0.1:4222");
    }
    answers
}

/// The namespace's JetStream stream, deleted when dropped (the cluster's keys go with it).
struct Stream(String);

impl Drop for Stream {
    fn drop(&mut self) {
        let stream = self.0.clone();
        // Drops may run on a runtime thread: clean up from a thread and runtime of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let nats = async_nats::connect(NATS_URL).await?;
                async_nats::jetstream::new(nats).delete_stream(stream).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not delete stream {}", self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_on_a_redis_cluster_answers_a_grab_and_a_claim() {
    if !nats_answers() {
        return;
    }
    let Some(cluster) = LocalCluster::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_sim, sim_url) = spawn_sim(42, USERS, &[]);
    let (config, campaign) = open_campaign_file(dir.path(), &sim_url, |text| text);
    let profiles = dir.path().join("profiles").to_str().expect("utf-8").to_string();
    let users = USERS.to_string();
    run_ok(&["gen", "--config", &config, "--users", &users, "--seed", "42", "--out", &profiles]);
    let ns = format!("hbcluster-{:012x}", rand::rng().random::<u64>() >> 16);
    let _stream = Stream(format!("{ns}_{}", campaign.id));

    let redis_url = cluster.url();
    let args = [
        "serve",
        "--rehearsal",
        "--admin-unsigned",
        "--config",
        &config,
        "--profiles",
        &profiles,
        "--redis",
        &redis_url,
        "--nats",
        NATS_URL,
        "--namespace",
        &ns,
        "--role",
        "api",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    let mut node = Running::spawn(&args);
    let api = node.wait_for_url("api listening");

    // A user with a role in the first game that may claim its festival bundle.
    let game = GameIndex(0);
    let gift = campaign
        .gifts
        .iter()
        .find(|g| g.game == game && g.id.ends_with("-festival"))
        .expect("a festival gift");
    let level = gift.min_role_level.unwrap_or(0).max(15);
    let model = SynthModel::new(42, USERS, campaign.games.len());
    let (user, role) = (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .find_map(|u| model.roles(u, game).into_iter().find(|r| r.level >= level).map(|r| (u, r)))
        .expect("a user who may claim");
    let ticket = sign_ticket(&campaign.auth.ticket_keys[0], user, now_s(), 3600);

    let client = reqwest::Client::new();
    let grabbed: Value = client
        .post(format!("{api}/v1/coupons"))
        .bearer_auth(&ticket)
        .json(&json!({ "channel": Channel::Swipe.as_str() }))
        .send()
        .await
        .expect("grab")
        .json()
        .await
        .expect("a JSON answer");
    let coupon = grabbed["coupon"].as_str().unwrap_or_else(|| panic!("no coupon: {grabbed}"));
    let body = json!({
        "coupon": coupon, "gift_id": gift.id, "zone_id": role.zone_id, "role_id": role.role_id
    });
    let claimed = client
        .post(format!("{api}/v1/claims"))
        .bearer_auth(&ticket)
        .json(&body)
        .send()
        .await
        .expect("claim");
    let status = claimed.status().as_u16();
    let claimed: Value = claimed.json().await.expect("a JSON answer");
    assert_eq!(status, 202, "{claimed}");
    let order_id = claimed["order_id"].as_str().expect("an order id");

    // The order is in the cluster, under the campaign's tag.
    let conn = hongbao_redis::connect(&redis_url).await.expect("connect to the cluster");
    let stored: Option<String> = redis::cmd("HGET")
        .arg(format!("{ns}:{{{}}}:orders", campaign.id))
        .arg(order_id)
        .query_async(&mut conn.clone())
        .await
        .expect("HGET");
    assert!(stored.is_some_and(|json| json.contains(order_id)));
}
