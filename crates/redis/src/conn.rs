//! The connection every adapter of this crate shares: one Redis server or a Redis Cluster,
//! chosen by the URL, with the same timeouts and retries either way.
//!
//! The adapters need nothing cluster-specific: every script's keys share one hash tag (see
//! [`crate::keys`]), so the cluster connection routes each command to the one master owning
//! its slot. What does differ is a namespace-wide walk: `SCAN` walks one server's keys, so on
//! a cluster [`RedisConn::scan`] walks every master in turn.

use std::time::Duration;

use hongbao_store::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Value};

use crate::store_error;

/// The URL scheme of a cluster: `redis+cluster://host:port[,host:port…]`, the seed nodes (any
/// few masters or replicas; the rest is discovered). The `redis` crate has no URL form for a
/// cluster (its `ClusterClient` takes a list of node URLs), so this one is hongbao's.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// How long one command may wait for Redis's answer. A command that timed out may or may not
/// have been applied (as a dropped future of the ports): the same claim again tells which. On a
/// cluster it bounds the whole command, redirections (`MOVED`, `ASK`) and retries included.
pub const RESPONSE_TIMEOUT_MS: u64 = 2_000;
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Reconnection attempts (exponential backoff from [`RECONNECT_DELAY_MIN_MS`]) before a
/// command fails with `Unavailable`; the next command starts again.
pub const RECONNECT_RETRIES: usize = 6;
/// First wait before reconnecting; it doubles per attempt up to [`RECONNECT_DELAY_MAX_MS`].
pub const RECONNECT_DELAY_MIN_MS: u64 = 100;
/// Longest wait between two reconnection attempts.
pub const RECONNECT_DELAY_MAX_MS: u64 = 3_200;
/// Keys one `SCAN` step asks a server for (a hint: a step may return somewhat more).
pub const SCAN_COUNT: usize = 1_000;
/// Seed nodes accepted in one cluster URL.
pub const CLUSTER_SEEDS_MAX: usize = 64;

/// A reconnecting connection to one Redis server or to a Redis Cluster; cheap to clone, and
/// every clone shares the same multiplexed connection(s).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// A reconnecting connection to `url`, with this crate's timeouts and retries:
/// `redis://host:port` (or any URL the `redis` crate reads) for one server,
/// `redis+cluster://[user:password@]host:port[,host:port…]` for a cluster.
pub async fn connect(url: &str) -> Result<RedisConn, StoreError> {
    match cluster_seeds(url)? {
        Some(seeds) => connect_cluster(url, seeds).await,
        None => connect_single(url).await,
    }
}

async fn connect_single(url: &str) -> Result<RedisConn, StoreError> {
    let client = redis::Client::open(url).map_err(|e| bad_url(url, e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
        .set_response_timeout(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS)))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(Duration::from_millis(RECONNECT_DELAY_MIN_MS))
        .set_max_delay(Duration::from_millis(RECONNECT_DELAY_MAX_MS));
    let conn = ConnectionManager::new_with_config(client, config).await.map_err(store_error)?;
    Ok(RedisConn::Single(conn))
}

async fn connect_cluster(url: &str, seeds: Vec<String>) -> Result<RedisConn, StoreError> {
    let retries = u32::try_from(RECONNECT_RETRIES).unwrap_or(u32::MAX);
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .response_timeout(Duration::from_millis(RESPONSE_TIMEOUT_MS))
        .overall_response_timeout(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS)))
        .retries(retries)
        .min_retry_wait(RECONNECT_DELAY_MIN_MS)
        .max_retry_wait(RECONNECT_DELAY_MAX_MS)
        .retry_wait_formula(RECONNECT_DELAY_MIN_MS, 2)
        .build()
        .map_err(|e| bad_url(url, e))?;
    let conn = client.get_async_connection().await.map_err(store_error)?;
    Ok(RedisConn::Cluster(conn))
}

fn bad_url(url: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidConfig(format!("redis url `{url}`: {err}"))
}

/// The seed nodes of a cluster URL as single-node URLs (the credentials repeated on each), or
/// `None` for a URL of one server.
fn cluster_seeds(url: &str) -> Result<Option<Vec<String>>, StoreError> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        return Ok(None);
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds: Vec<String> = hosts.split(',').map(|h| format!("redis://{auth}{h}")).collect();
    let malformed = |h: &str| match h.rsplit_once(':') {
        Some((host, port)) => host.is_empty() || port.parse::<u16>().is_err(),
        None => true,
    };
    if let Some(bad) = hosts.split(',').find(|h| malformed(h)) {
        return Err(bad_url(url, format!("seed `{bad}` is not host:port")));
    }
    if seeds.len() > CLUSTER_SEEDS_MAX {
        return Err(bad_url(url, format!("more than {CLUSTER_SEEDS_MAX} seed nodes")));
    }
    Ok(Some(seeds))
}

impl RedisConn {
    /// A walk over the keys matching `pattern` (a `SCAN MATCH` glob) on every master, one page
    /// at a time: a key present throughout is returned at least once (SCAN's own guarantee, per
    /// server).
    pub async fn scan(&self, pattern: &str) -> Result<KeyScan, StoreError> {
        let servers = match self {
            RedisConn::Single(_) => vec![None],
            RedisConn::Cluster(_) => self.masters().await?.into_iter().map(Some).collect(),
        };
        Ok(KeyScan { conn: self.clone(), pattern: pattern.to_string(), servers, cursor: 0 })
    }

    /// Deletes every key of `namespace` (see [`crate::check_namespace`]) on every master; how
    /// many. For tests and operators retiring a namespace, never on a live one.
    pub async fn delete_namespace(&self, namespace: &str) -> Result<u64, StoreError> {
        crate::check_namespace(namespace)?;
        let mut scan = self.scan(&format!("{namespace}:*")).await?;
        let mut deleted = 0;
        while let Some(keys) = scan.next_page().await? {
            // One key per DEL: the keys of a page may lie in any slots.
            for key in keys {
                deleted += redis::cmd("DEL")
                    .arg(key)
                    .query_async::<u64>(&mut self.clone())
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(deleted)
    }

    /// The cluster's masters as (host, port), from `CLUSTER SLOTS` (each slot range's first
    /// node is its master).
    async fn masters(&self) -> Result<Vec<(String, u16)>, StoreError> {
        let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("redis: CLUSTER SLOTS: {e}")))?;
        let mut masters = Vec::new();
        for range in ranges {
            let node = range.get(2).ok_or_else(|| slots_reply("a range without a master"))?;
            let (host, port): (String, u16) = match node {
                Value::Array(fields) if fields.len() >= 2 => (
                    String::from_redis_value_ref(&fields[0]).map_err(parse_error)?,
                    u16::from_redis_value_ref(&fields[1]).map_err(parse_error)?,
                ),
                _ => return Err(slots_reply("a master that is not [host, port, …]")),
            };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
        Ok(masters)
    }
}

fn parse_error(err: redis::ParsingError) -> StoreError {
    store_error(err.into())
}

fn slots_reply(what: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected CLUSTER SLOTS reply: {what}"))
}

/// A walk over matching keys, server after server (see [`RedisConn::scan`]).
pub struct KeyScan {
    conn: RedisConn,
    pattern: String,
    /// The servers still to walk, the current one last; `None` is the single server.
    servers: Vec<Option<(String, u16)>>,
    /// The current server's cursor (0: its walk starts, or just ended).
    cursor: u64,
}

impl KeyScan {
    /// The next page of keys (possibly empty), or `None` once every server has been walked.
    pub async fn next_page(&mut self) -> Result<Option<Vec<String>>, StoreError> {
        let Some(server) = self.servers.last().cloned() else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor).arg("MATCH").arg(&self.pattern).arg("COUNT").arg(SCAN_COUNT);
        let reply = match (&mut self.conn, server) {
            (RedisConn::Cluster(c), Some((host, port))) => {
                let to = SingleNodeRoutingInfo::ByAddress { host, port };
                c.route_command(cmd, RoutingInfo::SingleNode(to)).await
            }
            (conn, _) => cmd.query_async(conn).await,
        };
        let (next, keys): (u64, Vec<String>) =
            FromRedisValue::from_redis_value(reply.map_err(store_error)?).map_err(parse_error)?;
        self.cursor = next;
        if next == 0 {
            self.servers.pop();
        }
        Ok(Some(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_its_seeds_with_their_credentials() {
        let seeds = cluster_seeds("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/").unwrap();
        assert_eq!(
            seeds,
            Some(vec!["redis://u:p@10.0.0.1:7000".into(), "redis://u:p@10.0.0.2:7001".into()])
        );
        assert_eq!(cluster_seeds("redis://127.0.0.1:6379").unwrap(), None);
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,",
            "redis+cluster://a",
            "redis+cluster://:1",
            "redis+cluster://a:x",
        ] {
            assert!(matches!(cluster_seeds(bad), Err(StoreError::InvalidConfig(_))), "{bad}");
        }
    }
}
