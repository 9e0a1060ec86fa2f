//! Redis adapters of hongbao's grant and claim ports (DESIGN.md §3, distributed mode).
//!
//! [`RedisLedger`] implements [`GrantLedger`] and [`ClaimLedger`] over one Redis connection
//! ([`RedisConn`]: one reconnecting server, or a Redis Cluster for a `redis+cluster://` URL).
//! Each command is ONE Lua script (`EVALSHA`, loaded on first use), so it is decided and
//! recorded atomically however many API nodes share the Redis:
//!
//! - a grab runs `lua/grant.lua`, the rules of the store's `ledger::grant`;
//! - a claim runs `lua/claim.lua`, the rules of `ledger::claim` in the order
//!   [`hongbao_store::claim`] documents. The order an acceptance writes is built by the store
//!   itself ([`ClaimRequest::prepare_order`]); the script decides whether to write it.
//!
//! The scripts restate the ledger core's rules in Lua (Redis runs no Rust); the differential
//! property test (`tests/differential.rs`) drives [`hongbao_store::MemoryStore`], which runs the
//! core itself, and this adapter through the same random commands and requires every answer and
//! the final state to agree.
//!
//! [`RedisRoleStore`] is the role cache's shared second level (`hongbao_gateway::RoleStoreL2`);
//! [`RedisGameLeases`] gives each game to one delivery worker at a time
//! (`hongbao_queue::GameLeases`, the global pacing). [`RedisSeries`] is the fleet's series store
//! (`hongbao_monitor::SeriesKv`): every node's per-second readings folded into shared buckets,
//! so any node's `/monitor/v1/query` answers for the fleet (its keys: `series/layout.rs`).
//!
//! For the distributed mode's publisher, sweeper and delivery queue (`hongbao-distributed`),
//! `outbox` reads and marks the `should_send` set (recorded by the claim script, "not yet
//! published") and records delivery outcomes with `lua/settle.lua` (the order's next state and
//! the actual-send log, conditional on the leased state, idempotent).
//!
//! Reconciliation's side (`scan`, `repair`): orders in id order through an index the claim
//! script keeps (`order_ids`, backfilled for older orders), the send log in (id, time) order,
//! where each order's message went (`should_send`, `published` stream sequences), and the
//! requeue and record writes, conditional like `settle`. `hongbao-distributed` joins them with
//! the stream into the reconciliation ports.
//!
//! On a Redis Cluster every script's keys share one hash tag, so each runs on the one master
//! owning its slot: one campaign's claims on one shard, each channel's grants on theirs (see
//! [`keys`]). A namespace-wide walk ([`RedisConn::scan`], [`RedisConn::delete_namespace`])
//! visits every master. `tests/cluster.rs` runs the concurrency and outbox checks on a real
//! three-master cluster ([`testing::LocalCluster`]).
//!
//! Durability is Redis's: an `Accepted` is as durable as the server's persistence makes it —
//! production needs `appendonly yes` with `appendfsync always` (or `everysec`, accepting up to a
//! second of claims lost with the server); the development and CI instance keeps nothing.

mod claim;
mod conn;
mod grant;
pub mod keys;
mod leases;
mod nonces;
mod outbox;
mod quota;
mod repair;
mod roles;
mod scan;
mod series;
pub mod testing;

use std::sync::atomic::{AtomicU64, Ordering};

use hongbao_store::{
    CampaignBinding, Channel, ClaimLedger, ClaimOutcome, ClaimRequest, GiftIndex, GrantLedger,
    GrantOutcome, GrantRequest, HighValueUsage, Order, OrderId, StoreError,
};
use redis::{ErrorKind, RedisError, Script};

pub use claim::{HIGH_VALUE_DAY_TTL_MS, HIGH_VALUE_HOUR_TTL_MS, HOUR_SPEND_MAX_AGE_MS};
pub use conn::{
    CLUSTER_SCHEME, CLUSTER_SEEDS_MAX, CONNECT_TIMEOUT_MS, KeyScan, RECONNECT_DELAY_MAX_MS,
    RECONNECT_DELAY_MIN_MS, RECONNECT_RETRIES, RESPONSE_TIMEOUT_MS, RedisConn, SCAN_COUNT, connect,
};
pub use keys::{CLAIM_SHARDS_MAX, NAMESPACE_MAX_LEN, check_namespace, check_shards, shard_of};
pub use leases::{HOLDER_BYTES_MAX, RedisGameLeases};
pub use nonces::RedisNonceStore;
pub use outbox::{IDS_PER_COMMAND_MAX, Settled, StoredOrder};
pub use quota::{QUOTA_IN_FLIGHT_PAUSE_MS, QUOTA_ROUNDS_MAX, STOCK_CHUNK_MAX, TransferSweep};
pub use repair::{REPAIR_ROUNDS_MAX, RequeueWrite, busy};
pub use roles::{ROLE_ENTRY_BYTES_MAX, RedisRoleStore};
pub use scan::MessageOf;
pub use series::{
    ADMIT_PER_SECOND_MAX, CHUNK_BUCKETS, KNOWN_SERIES_MAX, LABELS_BYTES_MAX, MINUTE_CHUNK_TTL_S,
    PENDING_SECONDS_MAX, READ_PIPELINE_MAX, READMIT_INTERVAL_S, REGISTRY_TTL_S, RedisSeries,
    SECOND_CHUNK_TTL_S, SERIES_MAX, SHUTDOWN_FLUSH_MS,
};

use keys::{Keys, channel_index};

/// Extra Redis lifetime of an idempotency record past [`hongbao_store::IDEMPOTENCY_TTL_MS`].
/// Whether a record still answers is decided by its stored expiry against the request's clock
/// (the node's injected clock, like every other decision); Redis's own TTL only collects records
/// certainly expired, even with the nodes' and Redis's clocks an hour apart.
pub const IDEMPOTENCY_GC_MARGIN_MS: u64 = 3_600 * 1_000;

/// Largest integer Lua's numbers (doubles) hold exactly. Limits above it are sent as it: no
/// counter, incremented by one per command, comes near it, so the decision is the same.
const LUA_EXACT_MAX: u64 = 1 << 53;

/// A limit as the scripts compare it (see [`LUA_EXACT_MAX`]).
fn lua_limit(limit: u64) -> u64 {
    limit.min(LUA_EXACT_MAX)
}

/// The grant and claim ledgers of one campaign in Redis, under one namespace.
pub struct RedisLedger {
    conn: RedisConn,
    binding: CampaignBinding,
    /// The campaign's own keys (`{<c>}`): the grants, the layout, the quota pool, and with one
    /// claim shard every claim key.
    keys: Keys,
    /// The claim shards (see [`keys`]): one, over `keys`, or more, each under its own tag.
    shards: Vec<ClaimShard>,
    /// Coupons granted per channel, as last seen by this node.
    granted: [AtomicU64; 3],
    quotas: quota::Quotas,
    /// The other shards' high-value spend, for gift lists.
    hour_spend: claim::HourSpend,
    grant_script: Script,
    claim_script: Script,
    settle_script: Script,
    requeue_script: Script,
}

/// One claim shard: its keys and what this node last saw of its units taken.
pub(crate) struct ClaimShard {
    keys: Keys,
    /// Units taken in this shard per bound gift. See [`ClaimLedger::stock_taken`].
    stock_taken: Vec<AtomicU64>,
}

impl RedisLedger {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) for `binding`'s campaign under
    /// `namespace` (see [`check_namespace`]), in the claim layout the campaign was first
    /// written in (one shard for a new one), and reads the campaign's counters.
    pub async fn connect(
        url: &str,
        namespace: &str,
        binding: CampaignBinding,
    ) -> Result<Self, StoreError> {
        check_namespace(namespace)?;
        let conn = connect(url).await?;
        Self::over(conn, namespace, binding, None).await
    }

    /// The ledger over a connection already made (shared with the role store and the rest of
    /// the node's Redis use). `shards`: the claim shards asked for (see [`keys`]); `None` takes
    /// the layout the campaign was first written in. A campaign's layout never changes: asking
    /// for another than its own is refused (its users' state would be looked for elsewhere).
    pub async fn over(
        conn: RedisConn,
        namespace: &str,
        binding: CampaignBinding,
        shards: Option<u16>,
    ) -> Result<Self, StoreError> {
        check_namespace(namespace)?;
        let keys = Keys::new(namespace, binding.campaign_id());
        let count = quota::settle_layout(&conn, &keys, shards).await?;
        let gifts = binding.gifts();
        let shard = |keys: Keys| ClaimShard {
            keys,
            stock_taken: (0..gifts).map(|_| AtomicU64::new(0)).collect(),
        };
        let shards = if count == 1 {
            vec![shard(keys.clone())]
        } else {
            (0..count).map(|k| shard(Keys::shard(namespace, binding.campaign_id(), k))).collect()
        };
        let hour_spend = claim::HourSpend::new(shards.len());
        let ledger = Self {
            conn,
            keys,
            shards,
            granted: Default::default(),
            quotas: quota::Quotas::new(gifts),
            hour_spend,
            binding,
            grant_script: Script::new(include_str!("lua/grant.lua")),
            claim_script: Script::new(include_str!("lua/claim.lua")),
            settle_script: Script::new(include_str!("lua/settle.lua")),
            requeue_script: Script::new(include_str!("lua/requeue.lua")),
        };
        ledger.refresh_counters().await?;
        Ok(ledger)
    }

    pub fn binding(&self) -> &CampaignBinding {
        &self.binding
    }

    /// How many claim shards the campaign's claims are split into.
    pub fn shards(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    /// The claim shard holding `user`'s claim state.
    pub fn shard_of(&self, user: u64) -> u16 {
        shard_of(user, self.shards())
    }

    /// Whether the claims are split over more than one shard (quotas in play).
    fn sharded(&self) -> bool {
        self.shards.len() > 1
    }

    /// The claim shard `k` (the last one for an index out of range: callers pass indexes
    /// from [`RedisLedger::shard_of`] or a message this layout wrote).
    fn shard(&self, k: u16) -> &ClaimShard {
        let last = self.shards.len() - 1;
        &self.shards[usize::from(k).min(last)]
    }

    /// `user`'s claim shard.
    fn user_shard(&self, user: u64) -> &ClaimShard {
        self.shard(self.shard_of(user))
    }

    /// Reads the units taken of every bound gift and the coupons granted on every channel, so
    /// that [`ClaimLedger::stock_taken`] and [`GrantLedger::granted`] catch up with the other
    /// nodes. Done at connect; a caller that wants a bounded lag calls it periodically.
    pub async fn refresh_counters(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let gift_ids: Vec<&str> = (0..self.binding.gifts())
            .filter_map(|i| u16::try_from(i).ok())
            .filter_map(|i| self.binding.gift(GiftIndex(i)).map(|(id, _)| id))
            .collect();
        if !gift_ids.is_empty() {
            for shard in &self.shards {
                let taken: Vec<Option<u64>> = redis::cmd("HMGET")
                    .arg(shard.keys.stock())
                    .arg(&gift_ids)
                    .query_async(&mut conn)
                    .await
                    .map_err(store_error)?;
                for (seen, taken) in shard.stock_taken.iter().zip(taken) {
                    seen.fetch_max(taken.unwrap_or(0), Ordering::Relaxed);
                }
            }
        }
        // One GET per channel: their keys are in different slots (see `keys`).
        for channel in [Channel::Swipe, Channel::ArMap, Channel::Scan] {
            let granted: Option<u64> = redis::cmd("GET")
                .arg(self.keys.grant(channel).granted)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            self.saw_granted(channel, granted.unwrap_or(0));
        }
        Ok(())
    }

    /// Counters only grow, and replies of concurrent commands arrive in any order: keep the
    /// largest value seen.
    fn saw_granted(&self, channel: Channel, granted: u64) {
        self.granted[channel_index(channel)].fetch_max(granted, Ordering::Relaxed);
    }

    fn saw_taken(&self, shard: &ClaimShard, gift: GiftIndex, taken: u64) {
        if let Some(seen) = shard.stock_taken.get(usize::from(gift.0)) {
            seen.fetch_max(taken, Ordering::Relaxed);
        }
    }
}

impl GrantLedger for RedisLedger {
    async fn grant(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        grant::grant(self, req).await
    }

    /// Coupons granted on `channel` as this node last saw them: from its own grants' replies
    /// and the last [`RedisLedger::refresh_counters`]. Lags other nodes' grants until then.
    fn granted(&self, channel: Channel) -> u64 {
        self.granted[channel_index(channel)].load(Ordering::Relaxed)
    }
}

impl ClaimLedger for RedisLedger {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        claim::claim(self, req).await
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.stored_order(id).await?.map(|s| s.order))
    }

    async fn user_order(&self, user: u64, id: &OrderId) -> Result<Option<Order>, StoreError> {
        claim::user_order(self, user, id).await
    }

    async fn orders_of(&self, user: u64, limit: usize) -> Result<Vec<Order>, StoreError> {
        claim::orders_of(self, user, limit).await
    }

    /// Units of `gift` taken as this node last saw them: from every claim script's reply (each
    /// reports the gift's count in its shard as the script saw it), summed over the shards, and
    /// the last [`RedisLedger::refresh_counters`]. It lags the other nodes' claims until their
    /// effect is seen here. That is enough for what it is for: the gift list uses it only to
    /// hide sold-out gifts, while the claim script decides stock exactly, against Redis's own
    /// counts.
    fn stock_taken(&self, gift: GiftIndex) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.stock_taken.get(usize::from(gift.0)))
            .map(|seen| seen.load(Ordering::Relaxed))
            .sum()
    }

    async fn high_value_usage(&self, user: u64, now_ms: u64) -> Result<HighValueUsage, StoreError> {
        claim::high_value_usage(self, user, now_ms).await
    }
}

/// A Redis error as the ports' error: a reply of the wrong shape means the keys hold something
/// this layout did not write; anything else (connection, timeout, server) is unavailability.
fn store_error(err: RedisError) -> StoreError {
    match err.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            StoreError::Corrupt(format!("unexpected redis reply: {err}"))
        }
        _ => StoreError::Unavailable(format!("redis: {err}")),
    }
}
