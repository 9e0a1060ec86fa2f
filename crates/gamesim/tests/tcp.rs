//! The simulator over a real socket (`serve`, as `RunningSim` runs it for other crates' tests)
//! with reqwest, and a graceful shutdown that leaves the delivery log complete.

mod common;

use common::*;
use hongbao_gamesim::testing::RunningSim;
use hongbao_gamesim::{LogRecord, SimConfig, StatsBody};
use serde_json::{Value, json};

#[tokio::test]
async fn serves_the_contract_over_tcp_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("game.jsonl");
    let config = SimConfig { log_path: Some(log_path.clone()), ..config() };
    let sim = RunningSim::start(campaign(), config).await.unwrap();
    let base = sim.base_url().to_string();
    assert!(sim.campaign().games.iter().all(|g| g.idip_url == base), "the games point at it");

    let client = reqwest::Client::new();
    let (user, role) = user_with_role(0, 1);
    let roles: Value = client
        .get(format!("{base}/idip/v1/roles?user={user}&game=lantern-heroes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(roles["roles"][0], serde_json::to_value(&role).unwrap());

    let body = delivery("tcp-1", user, "lantern-heroes", &role);
    for expected in ["applied", "duplicate"] {
        let response = client.post(format!("{base}/idip/v1/deliver")).json(&body).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"result": expected}));
    }

    let missing = client.get(format!("{base}/no/such/path")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["code"], "not_found");

    let stats: StatsBody =
        client.get(format!("{base}/idip/v1/stats")).send().await.unwrap().json().await.unwrap();
    let lh = &stats.games["lantern-heroes"];
    assert_eq!((lh.applied, lh.duplicates, lh.role_queries), (1, 1, 1));

    sim.stop().await.unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let record: LogRecord = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!((record.serial.as_str(), record.user), ("tcp-1", user));
}
