//! The adapters on a real Redis Cluster of three masters (started here on free loopback ports,
//! killed at the end): claims and grants stay exact under concurrency, the outbox and settle
//! path works, each script's keys lie in one slot, a namespace-wide walk reaches every master,
//! and the fleet's series store folds two nodes' seconds. Skipped without `redis-server` except
//! under CI.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{NOW_MS, STOCK, binding, claim_req};
use hongbao_domain::{Channel, OrderEvent, OrderStatus};
use hongbao_redis::testing::LocalCluster;
use hongbao_redis::{RedisConn, RedisLedger, Settled};
use hongbao_store::{ClaimLedger, ClaimOutcome, GrantLedger, GrantOutcome, GrantRequest};
use rand::Rng;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapters_hold_their_rules_on_a_three_master_cluster() {
    let Some(cluster) = LocalCluster::start_or_skip() else {
        return;
    };
    let conn = hongbao_redis::connect(&cluster.url()).await.expect("connect to the cluster");
    assert!(matches!(conn, RedisConn::Cluster(_)), "{conn:?}");
    let ns = format!("hbcluster-{:012x}", rand::rng().random::<u64>() >> 16);
    // Two "nodes": two connections of their own, as two API processes would have.
    let nodes = [
        Arc::new(ledger(&cluster, &ns).await),
        Arc::new(RedisLedger::over(conn.clone(), &ns, binding(), None).await.expect("ledger")),
    ];

    common::claims_take_exactly_the_stock(&nodes).await;
    common::one_coupon_is_redeemed_once(&nodes).await;
    grants_hold_the_budget(&nodes).await;
    outbox_and_settle(&nodes[0]).await;
    each_scripts_keys_share_a_slot(&conn, &ns).await;
    walks_reach_every_master(&cluster, &conn, &ns).await;

    // The same rules over claim shards, whose scripts run on every master: each script's keys
    // must still lie in one slot (the cluster refuses a script's keys across slots, where one
    // server does not), and the stock moved around in quotas is still taken exactly.
    let sharded = format!("{ns}-s");
    let nodes = [
        Arc::new(RedisLedger::over(conn.clone(), &sharded, binding(), Some(6)).await.expect("6")),
        Arc::new(RedisLedger::over(conn.clone(), &sharded, binding(), None).await.expect("same")),
    ];
    assert_eq!(nodes[1].shards(), 6, "the second node takes the stored layout");
    common::claims_take_exactly_the_stock(&nodes).await;
    common::one_coupon_is_redeemed_once(&nodes).await;
    outbox_and_settle(&nodes[0]).await;
    let moves = nodes[0].sweep_quota_transfers(NOW_MS + 3_600_000, 0).await.expect("sweep");
    assert_eq!(moves.transfers + moves.releases, 0, "no move was left pending");
}

async fn ledger(cluster: &LocalCluster, ns: &str) -> RedisLedger {
    RedisLedger::connect(&cluster.url(), ns, binding()).await.expect("ledger on the cluster")
}

/// Grants on all three channels at once (three slots, possibly three masters): each channel's
/// budget exactly.
async fn grants_hold_the_budget(nodes: &[Arc<RedisLedger>; 2]) {
    const BUDGET: u64 = 20;
    let mut tasks = JoinSet::new();
    for i in 0..180u64 {
        let node = Arc::clone(&nodes[(i % 2) as usize]);
        let channel = [Channel::Swipe, Channel::ArMap, Channel::Scan][(i % 3) as usize];
        let req = GrantRequest { user: i % 12, channel, per_user_limit: 10, budget: BUDGET };
        tasks.spawn(async move { (channel, node.grant(req).await) });
    }
    let mut granted: BTreeMap<&str, u64> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (channel, outcome) = joined.expect("the task ran");
        if let GrantOutcome::Granted { .. } = outcome.expect("the cluster answers") {
            *granted.entry(channel.as_str()).or_default() += 1;
        }
    }
    assert_eq!(granted.values().copied().collect::<Vec<_>>(), [BUDGET; 3], "{granted:?}");
    nodes[0].refresh_counters().await.expect("the cluster answers");
    assert_eq!(nodes[0].granted(Channel::Scan), BUDGET);
}

/// The publisher's and the queue's Redis side: unpublished orders, marking them, settling one.
async fn outbox_and_settle(ledger: &RedisLedger) {
    let before = ledger.unpublished_count().await.expect("count");
    let outcome = ledger
        .claim(claim_req(9_001, Channel::Scan, 1, 1, 1_000, 1, NOW_MS + 1))
        .await
        .expect("the cluster answers");
    let ClaimOutcome::Accepted(order) = outcome else { panic!("{outcome:?}") };
    assert_eq!(ledger.unpublished_count().await.expect("count"), before + 1);
    let mut listed_anywhere = false;
    for shard in 0..ledger.shards() {
        let listed = ledger.unpublished(shard, NOW_MS + 1, 1_000).await.expect("list");
        listed_anywhere |= listed.iter().any(|o| o.id == order.id);
        let ids: Vec<String> = listed.iter().map(|o| o.id.as_str().to_string()).collect();
        ledger
            .mark_published(shard, &ids.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .expect("the cluster answers");
    }
    assert!(listed_anywhere);
    assert_eq!(ledger.unpublished_count().await.expect("count"), 0);

    let leased = ledger
        .stored_orders(ledger.shard_of(9_001), &[order.id.as_str().to_string()])
        .await
        .expect("the cluster answers")[0]
        .clone()
        .expect("stored");
    let delivering =
        leased.order.apply(&OrderEvent::StartDelivery, NOW_MS + 5).expect("leased → delivering");
    let delivered =
        delivering.apply(&OrderEvent::Delivered, NOW_MS + 5).expect("delivering → delivered");
    assert_eq!(
        ledger.settle(&leased, &delivered).await.expect("the cluster answers"),
        Settled::Written
    );
    assert_eq!(
        ledger.settle(&leased, &delivered).await.expect("the cluster answers"),
        Settled::AlreadyWritten
    );
    let stored = ledger.order(&order.id).await.expect("the cluster answers").expect("stored");
    assert_eq!(stored.status, OrderStatus::Delivered);
    assert_eq!(
        ledger.sent(10).await.expect("the cluster answers"),
        [(order.id.as_str().to_string(), NOW_MS + 5)]
    );
}

/// The namespace's keys as the cluster holds them.
async fn keys_of(conn: &RedisConn, ns: &str) -> Vec<String> {
    let mut scan = conn.scan(&format!("{ns}:*")).await.expect("scan");
    let mut keys = Vec::new();
    while let Some(page) = scan.next_page().await.expect("scan") {
        keys.extend(page);
    }
    keys
}

async fn slot(conn: &RedisConn, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .expect("the cluster answers")
}

/// Every claim key of the campaign in one slot; each channel's grant keys in one slot of theirs.
async fn each_scripts_keys_share_a_slot(conn: &RedisConn, ns: &str) {
    let keys = keys_of(conn, ns).await;
    let mut slots: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for key in &keys {
        let tag = key.split_once('{').and_then(|(_, r)| r.split_once('}')).map(|(t, _)| t);
        let Some(tag) = tag else { continue };
        slots.entry(tag.to_string()).or_default().insert(slot(conn, key).await);
    }
    let claims = keys.iter().filter(|k| k.contains("{spring}")).count();
    assert!(claims > 2 * STOCK as usize, "orders, stock, users' keys: {claims}");
    assert!(keys.contains(&format!("{ns}:{{spring}}:orders")), "{keys:?}");
    let tags: Vec<&str> = slots.keys().map(String::as_str).collect();
    assert_eq!(
        tags,
        ["spring", "spring:grants:ar_map", "spring:grants:scan", "spring:grants:swipe"],
        "{keys:?}"
    );
    for (tag, in_slots) in &slots {
        assert_eq!(in_slots.len(), 1, "the keys tagged {{{tag}}} span slots {in_slots:?}");
    }
}

/// The namespace's keys are spread over several masters (untagged ones everywhere); a walk
/// finds them all, and deleting the namespace leaves none on any master.
async fn walks_reach_every_master(cluster: &LocalCluster, conn: &RedisConn, ns: &str) {
    for i in 0..60 {
        redis::cmd("SET")
            .arg(format!("{ns}:spread:{i}"))
            .arg(i)
            .query_async::<()>(&mut conn.clone())
            .await
            .expect("SET");
    }
    let per_master: Vec<usize> = cluster.ports().iter().map(|&p| keys_on(p, ns)).collect();
    assert!(per_master.iter().all(|&n| n > 0), "keys on every master: {per_master:?}");
    let total: usize = per_master.iter().sum();
    assert_eq!(keys_of(conn, ns).await.len(), total);

    let deleted = conn.delete_namespace(ns).await.expect("delete");
    assert_eq!(deleted, total as u64);
    let left: Vec<usize> = cluster.ports().iter().map(|&p| keys_on(p, ns)).collect();
    assert_eq!(left, [0, 0, 0]);
}

/// Keys of the namespace held by the master at `port`, asked directly.
fn keys_on(port: u16, ns: &str) -> usize {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let mut conn = client.get_connection().expect("a connection to one master");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{ns}:*")).query(&mut conn).expect("KEYS");
    keys.len()
}

/// The fleet's series store on the cluster: a second's pipeline and a range's reads go to the
/// one master owning the store's slot, and two nodes' readings fold there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_store_folds_two_nodes_on_a_cluster() {
    use hongbao_monitor::kv::{RangeRequest, Reading, Resolution, Rollup, SeriesKey, SeriesKv};
    let Some(cluster) = LocalCluster::start_or_skip() else {
        return;
    };
    let ns = format!("hbcluster-{:012x}", rand::rng().random::<u64>() >> 16);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let conn = hongbao_redis::connect(&cluster.url()).await.expect("connect to the cluster");
        nodes.push(hongbao_redis::RedisSeries::start(conn, &ns, 16).expect("a series store"));
    }
    let at_s = NOW_MS / 1000;
    for (n, node) in nodes.iter().enumerate() {
        let readings: Vec<Reading> = ["g1", "g2", "g3"]
            .iter()
            .map(|game| Reading {
                key: SeriesKey {
                    metric: "claims".to_string(),
                    labels: vec![("game".to_string(), game.to_string())],
                },
                value: 1.0 + n as f32,
                rollup: Rollup::Sum,
            })
            .collect();
        node.put(at_s, &readings);
        node.flush().await;
        assert_eq!(node.dropped_seconds(), 0);
    }
    let request = RangeRequest {
        metric: "claims".to_string(),
        filter: vec![],
        resolution: Resolution::Second,
        from_bucket: at_s,
        to_bucket: at_s,
    };
    let ranges = nodes[0].range(&request).await.expect("the cluster answers");
    let values: Vec<f32> = ranges.iter().map(|r| r.values[0]).collect();
    assert_eq!(values, vec![3.0, 3.0, 3.0], "each game's two increases added");
    let conn = hongbao_redis::connect(&cluster.url()).await.expect("connect");
    assert!(conn.delete_namespace(&ns).await.expect("removed") > 0);
}
