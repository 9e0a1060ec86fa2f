//! The fleet's series store on a real Redis: two stores over one namespace stand for two nodes
//! writing the same series in the same buckets; either answers the fleet's fold. Every key has a
//! TTL, the series cap holds across nodes, and removing the namespace removes the series.

mod common;

use common::{REDIS_URL, namespace, redis_answers};
use hongbao_monitor::catalog::{self, MetricKind};
use hongbao_monitor::kv::{RangeRequest, Reading, Resolution, Rollup, SeriesKey, SeriesKv};
use hongbao_monitor::query::{self, Query};
use hongbao_redis::{MINUTE_CHUNK_TTL_S, RedisConn, RedisSeries, SECOND_CHUNK_TTL_S, SERIES_MAX};

/// A second in 2027, the first of a chunk of seconds and of a chunk of minutes (so the key
/// counts below are exact).
const T: u64 = 1_800_000_000;

async fn node(ns: &str, series_max: usize) -> RedisSeries {
    let conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    RedisSeries::start(conn, ns, series_max).expect("a series store")
}

fn reading(metric: &str, game: &str, value: f32, rollup: Rollup) -> Reading {
    let labels = vec![("game".to_string(), game.to_string())];
    Reading { key: SeriesKey { metric: metric.to_string(), labels }, value, rollup }
}

/// One node's second, written before this returns.
async fn write(node: &RedisSeries, at_s: u64, readings: &[Reading]) {
    node.put(at_s, readings);
    node.flush().await;
}

async fn values(node: &RedisSeries, metric: &str, resolution: Resolution, bucket: u64) -> Vec<f32> {
    let request = RangeRequest {
        metric: metric.to_string(),
        filter: vec![],
        resolution,
        from_bucket: bucket,
        to_bucket: bucket,
    };
    let ranges = node.range(&request).await.expect("Redis answers");
    ranges.into_iter().map(|r| r.values[0]).collect()
}

async fn keys(ns: &str) -> Vec<String> {
    let conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    let mut scan = conn.scan(&format!("{ns}:*")).await.expect("scan");
    let mut keys = Vec::new();
    while let Some(page) = scan.next_page().await.expect("a page") {
        keys.extend(page);
    }
    keys
}

#[tokio::test]
async fn two_nodes_writing_one_bucket_fold_by_rollup() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let (a, b) = (node(&ns, SERIES_MAX).await, node(&ns, SERIES_MAX).await);
    let second = |claims: f32, depth: f32, p99: f32| {
        vec![
            reading("claims", "g1", claims, Rollup::Sum),
            reading("depth", "g1", depth, Rollup::Last),
            reading("p99", "g1", p99, Rollup::Max),
        ]
    };
    write(&a, T, &second(3.0, 5.0, 0.25)).await;
    write(&b, T, &second(4.0, 7.0, 0.125)).await;
    write(&b, T + 1, &second(1.0, 9.0, 0.5)).await;
    write(&a, T + 1, &second(2.0, 8.0, 0.375)).await;

    for node in [&a, &b] {
        assert_eq!(values(node, "claims", Resolution::Second, T).await, vec![7.0], "increases add");
        assert_eq!(values(node, "depth", Resolution::Second, T).await, vec![7.0], "the latest");
        assert_eq!(values(node, "p99", Resolution::Second, T).await, vec![0.25], "the highest");
        assert_eq!(values(node, "depth", Resolution::Second, T + 1).await, vec![8.0]);
        let minute = T / 60;
        assert_eq!(values(node, "claims", Resolution::Minute, minute).await, vec![10.0]);
        assert_eq!(values(node, "depth", Resolution::Minute, minute).await, vec![8.0]);
        assert_eq!(values(node, "p99", Resolution::Minute, minute).await, vec![0.5]);
    }
    // A bucket nobody wrote is a gap, as in the in-process store.
    assert!(values(&a, "claims", Resolution::Second, T + 2).await[0].is_nan());
}

#[tokio::test]
async fn the_query_model_answers_the_fleets_sum() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let nodes = [node(&ns, SERIES_MAX).await, node(&ns, SERIES_MAX).await];
    for (n, node) in nodes.iter().enumerate() {
        for s in 0..10 {
            let accepted = reading(catalog::CLAIMS, "g1", 1.0 + n as f32, Rollup::Sum);
            write(node, T + s, &[accepted]).await;
        }
    }
    let query = Query {
        metric: catalog::CLAIMS.to_string(),
        kind: MetricKind::Counter,
        filter: vec![],
        window_s: 10,
        step_s: 10,
        by: None,
    };
    let answer = query::series(&nodes[1], &query, T + 10).await.expect("Redis answers");
    assert_eq!(answer.series.len(), 1);
    assert_eq!(answer.series[0].total, Some(30.0), "node 0's 10 and node 1's 20");
}

#[tokio::test]
async fn every_key_written_has_a_ttl() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let a = node(&ns, SERIES_MAX).await;
    for s in [T, T + 1, T + 119, T + 120] {
        write(&a, s, &[reading("m", "g1", 1.0, Rollup::Sum), reading("n", "g2", 2.0, Rollup::Max)])
            .await;
    }
    let keys = keys(&ns).await;
    // The registry's set of ids and one set per metric; two second chunks and one minute chunk
    // per series.
    assert_eq!(keys.len(), 1 + 2 + 2 * (2 + 1), "{keys:?}");
    let mut conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    for key in keys {
        let ttl_s: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.expect("TTL");
        let max = if key.contains(":1s:") { SECOND_CHUNK_TTL_S } else { MINUTE_CHUNK_TTL_S };
        assert!(ttl_s > 0 && ttl_s as u64 <= max, "{key}: TTL {ttl_s} s");
    }
}

#[tokio::test]
async fn the_series_cap_holds_across_nodes() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let (a, b) = (node(&ns, 3).await, node(&ns, 3).await);
    let series = |games: &[&str]| -> Vec<Reading> {
        games.iter().map(|g| reading("m", g, 1.0, Rollup::Sum)).collect()
    };
    write(&a, T, &series(&["a1", "a2"])).await;
    write(&b, T, &series(&["b1", "b2"])).await;
    write(&b, T + 1, &series(&["b1", "b2"])).await;
    write(&a, T + 1, &series(&["a1", "a2", "a3"])).await;

    let request = RangeRequest {
        metric: "m".to_string(),
        filter: vec![],
        resolution: Resolution::Second,
        from_bucket: T,
        to_bucket: T + 1,
    };
    let stored = a.range(&request).await.expect("Redis answers");
    let games: Vec<&str> = stored.iter().map(|s| s.labels[0].1.as_str()).collect();
    assert_eq!(games, vec!["a1", "a2", "b1"], "the first three series asked for");
    assert_eq!(stored[2].values, vec![1.0, 1.0]);
    let mut conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    let all = format!("{ns}:series:{{{ns}:series}}:all");
    let held: u64 = redis::cmd("SCARD").arg(&all).query_async(&mut conn).await.expect("SCARD");
    assert_eq!(held, 3);
    let second_chunks = keys(&ns).await.into_iter().filter(|k| k.contains(":1s:m:")).count();
    assert_eq!(second_chunks, 3, "a refused series writes nothing");
}

#[tokio::test]
async fn removing_the_namespace_removes_every_series_key() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let a = node(&ns, SERIES_MAX).await;
    write(&a, T, &[reading("m", "g1", 1.0, Rollup::Last)]).await;
    assert!(!keys(&ns).await.is_empty());
    // What `hongbao_distributed::remove_namespace` (demo --redis, the tests) runs for Redis.
    let conn: RedisConn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    assert_eq!(conn.delete_namespace(&ns).await.expect("deleted"), 4);
    assert!(keys(&ns).await.is_empty());
}
