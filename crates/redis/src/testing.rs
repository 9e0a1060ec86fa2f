//! What other tests (this crate's, the distributed backend's, the binary's) need of Redis
//! beyond the ports:
//!
//! - a throwaway Redis Cluster on loopback: `redis-server --cluster-enabled yes` processes on
//!   free ports in a temporary directory, joined with `redis-cli --cluster create`. The
//!   processes are killed and the directory removed when the [`LocalCluster`] drops, also when
//!   the test panics;
//! - damage made by hand to a ledger's records ([`remove_sent_row_by_hand`],
//!   [`remove_order_by_hand`]), through the key layout, so tests never name a key themselves
//!   and keep working when the layout changes;
//! - a fault no public operation makes: a quota transfer whose mover died
//!   ([`strand_transfer`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hongbao_store::{OrderId, StoreError};

use crate::keys::Keys;
use crate::{RedisLedger, store_error};

/// How long the servers may take to answer, and the cluster to agree on every slot.
pub const CLUSTER_READY_TIMEOUT_MS: u64 = 15_000;
/// Pause between two readiness probes.
const PROBE_INTERVAL_MS: u64 = 50;
/// Masters accepted: enough for any test, few enough for a laptop.
pub const MASTERS_MAX: usize = 9;

/// A running cluster of masters without replicas, keeping nothing on disk beyond its
/// `nodes.conf` files.
pub struct LocalCluster {
    servers: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl LocalCluster {
    /// Starts `masters` (3..=[`MASTERS_MAX`]) servers and joins them; waits until every one
    /// reports `cluster_state:ok` with all 16,384 slots. An error of kind `NotFound` means
    /// `redis-server` or `redis-cli` is not installed.
    pub fn start(masters: usize) -> std::io::Result<LocalCluster> {
        if !(3..=MASTERS_MAX).contains(&masters) {
            return Err(std::io::Error::other(format!("masters must be 3..={MASTERS_MAX}")));
        }
        // Spawning it says `NotFound` now rather than a readiness wait timing out later.
        Command::new("redis-cli").arg("--version").stdout(Stdio::null()).status()?;
        let dir = std::env::temp_dir().join(format!("hongbao-cluster-{}", unique_suffix()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = LocalCluster { servers: Vec::new(), ports: Vec::new(), dir };
        for _ in 0..masters {
            cluster.spawn_server()?;
        }
        let deadline = Instant::now() + Duration::from_millis(CLUSTER_READY_TIMEOUT_MS);
        for &port in &cluster.ports {
            wait_until(deadline, || cli(port, &["PING"]).is_ok_and(|out| out.trim() == "PONG"))?;
        }
        cluster.create()?;
        for &port in &cluster.ports {
            wait_until(deadline, || {
                cli(port, &["CLUSTER", "INFO"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            })?;
        }
        Ok(cluster)
    }

    /// Starts a cluster of three masters, or says why not: without `redis-server` a test prints
    /// that it skipped and gets `None` — except under CI (the variable `CI` set), where the
    /// absence is a failure.
    pub fn start_or_skip() -> Option<LocalCluster> {
        match LocalCluster::start(3) {
            Ok(cluster) => Some(cluster),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server or redis-cli missing, and CI is set: CI must run the cluster tests"
                );
                println!("skipped: redis-server or redis-cli not installed ({e})");
                None
            }
            Err(e) => panic!("could not start a local Redis Cluster: {e}"),
        }
    }

    /// The cluster's URL for [`crate::connect`]: `redis+cluster://127.0.0.1:<port>,…`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("{}{}", crate::CLUSTER_SCHEME, seeds.join(","))
    }

    /// The masters' client ports, for talking to one server directly.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    fn spawn_server(&mut self) -> std::io::Result<()> {
        let (port, bus) = (free_port()?, free_port()?);
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir)?;
        let (port_s, bus_s) = (port.to_string(), bus.to_string());
        let args = [
            "--port",
            &port_s,
            "--cluster-port",
            &bus_s,
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ];
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.servers.push(child);
        self.ports.push(port);
        Ok(())
    }

    fn create(&self) -> std::io::Result<()> {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on now (another process could take it before the server
/// does; the server then fails to start and the readiness wait says so).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:09}", std::process::id())
}

/// `redis-cli -p <port> <args>`'s output, or an error if it failed.
fn cli(port: u16, args: &[&str]) -> std::io::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(std::io::Error::other("redis-cli failed"))
    }
}

fn wait_until(deadline: Instant, mut ready: impl FnMut() -> bool) -> std::io::Result<()> {
    while !ready() {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("local Redis Cluster not ready in {CLUSTER_READY_TIMEOUT_MS} ms"),
            ));
        }
        std::thread::sleep(Duration::from_millis(PROBE_INTERVAL_MS));
    }
    Ok(())
}

/// The first half of a quota refill alone: the pool gives claim shard `k` a transfer of
/// `gift`'s stock (of `stock` units) that nobody applies — what a node that died between the
/// two scripts leaves behind, for the sweeper's tests. Returns the units stranded (0: none left
/// in the pool).
pub async fn strand_transfer(
    ledger: &RedisLedger,
    k: u16,
    gift: hongbao_domain::GiftIndex,
    stock: u64,
    now_ms: u64,
) -> Result<u64, StoreError> {
    let resource = crate::quota::Resource::Stock { gift, stock };
    Ok(ledger.allot(k, &resource, now_ms).await?.map_or(0, |(units, _)| units))
}

/// Fault injection for tests: deletes `id`'s row of the actual-send log behind the ledger's back
/// (a lost write, an operator's mistake), leaving its order as it is. Returns whether there was
/// one. Never used by services.
pub async fn remove_sent_row_by_hand(
    ledger: &RedisLedger,
    id: &OrderId,
) -> Result<bool, StoreError> {
    remove_from_its_shard(ledger, "ZREM", Keys::sent, id).await
}

/// Fault injection for tests: deletes `id`'s order behind the ledger's back, leaving everything
/// else of it (its send-log row, its place in the order index, the user's list, its message)
/// as it is. Returns whether there was one. Never used by services.
pub async fn remove_order_by_hand(ledger: &RedisLedger, id: &OrderId) -> Result<bool, StoreError> {
    remove_from_its_shard(ledger, "HDEL", Keys::orders, id).await
}

/// `command key id` on the key `key` names in every claim shard: an id alone does not tell its
/// shard, and at most one shard holds it.
async fn remove_from_its_shard(
    ledger: &RedisLedger,
    command: &str,
    key: fn(&Keys) -> String,
    id: &OrderId,
) -> Result<bool, StoreError> {
    let mut removed = 0u64;
    for shard in &ledger.shards {
        let n: u64 = redis::cmd(command)
            .arg(key(&shard.keys))
            .arg(id.as_str())
            .query_async(&mut ledger.conn.clone())
            .await
            .map_err(store_error)?;
        removed += n;
    }
    Ok(removed > 0)
}

/// Where a gift's units are, read from Redis: what the quota design keeps true at rest (no
/// move pending) is `allotted == quotas.sum()`, `taken[k] <= quotas[k]` and
/// `allotted <= stock` — no unit in two places, none sold twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaAccounts {
    /// Units the pool has given to shards and not got back.
    pub allotted: u64,
    /// Each shard's quota of the gift.
    pub quotas: Vec<u64>,
    /// Each shard's units taken.
    pub taken: Vec<u64>,
    /// Moves recorded pending, either way, of any resource.
    pub pending_moves: u64,
}

/// The [`QuotaAccounts`] of `gift` (a sharded ledger's; with one shard, all zero but `taken`).
pub async fn quota_accounts(
    ledger: &RedisLedger,
    gift: hongbao_domain::GiftIndex,
) -> Result<QuotaAccounts, StoreError> {
    let Some((gift_id, _)) = ledger.binding.gift(gift) else {
        return Err(StoreError::InvalidRequest(format!("gift {gift:?} is not bound")));
    };
    let mut conn = ledger.conn.clone();
    let hget = |key: String| redis::cmd("HGET").arg(key).arg(gift_id).to_owned();
    let hlen = |key: String| redis::cmd("HLEN").arg(key).to_owned();
    let allotted: Option<u64> =
        hget(ledger.keys.pool_allotted()).query_async(&mut conn).await.map_err(store_error)?;
    let mut pending: u64 =
        hlen(ledger.keys.pool_transfers()).query_async(&mut conn).await.map_err(store_error)?;
    let (mut quotas, mut taken) = (Vec::new(), Vec::new());
    for shard in &ledger.shards {
        let quota: Option<u64> =
            hget(shard.keys.quota()).query_async(&mut conn).await.map_err(store_error)?;
        let units: Option<u64> =
            hget(shard.keys.stock()).query_async(&mut conn).await.map_err(store_error)?;
        let releases: u64 =
            hlen(shard.keys.quota_releases()).query_async(&mut conn).await.map_err(store_error)?;
        quotas.push(quota.unwrap_or(0));
        taken.push(units.unwrap_or(0));
        pending += releases;
    }
    Ok(QuotaAccounts { allotted: allotted.unwrap_or(0), quotas, taken, pending_moves: pending })
}
