//! Quotas: how claim shards share a gift's stock and an hour's high-value budget (the layout and
//! why are in [`crate::keys`], "Claim shards").
//!
//! A shard whose claim script refused for want of quota asks the pool for more
//! ([`RedisLedger::refill`]): the pool gives a share of what it has not given out
//! (`lua/quota_allot.lua`, recording the transfer as pending), the shard applies it once
//! (`lua/quota_receive.lua`), then the pending record is dropped. Shares shrink as the pool
//! empties (an `1/(2·S)` part of what is left, at most [`STOCK_CHUNK_MAX`] units of stock), so
//! little is left idle in shards whose users stopped claiming. When the pool is empty, the
//! refill first takes back what the other shards hold unused (`lua/quota_release.lua` on each,
//! then `lua/quota_give_back.lua` on the pool, the same pending-record discipline the other
//! way), and only then lets the claim answer `out_of_stock` — or `hv_budget`. A gift found with
//! every unit taken is remembered as sold out by this node, so the storm of claims after the
//! last unit costs one script each, not a round of every shard.
//!
//! A mover that dies between its two scripts leaves a pending record on the giving side;
//! [`RedisLedger::sweep_quota_transfers`] (run by the workers' sweeper) applies the records
//! older than a grace period again, which the receiving side's set of applied ids makes
//! harmless if the mover did finish. Units are never lost: a pending transfer is counted given
//! by the pool and not yet held by the shard (neither can spend it) until it is applied.

use std::sync::atomic::{AtomicBool, Ordering};

use hongbao_domain::GiftIndex;
use hongbao_store::StoreError;
use redis::{Script, Value};

use crate::claim::{int, text};
use crate::keys::{Keys, check_shards};
use crate::{RedisConn, RedisLedger, lua_limit, store_error};

/// Refills one claim may ask for before it takes the shard's refusal as the answer. Each
/// refill lets the claim run again; two are enough unless other claims of the same shard
/// spend each refill first, or the units are in flight between two slots, which a busy shard
/// at the very end of a gift's stock may meet (it then answers `out_of_stock` while a unit or
/// two move between shards, to be taken by the claims that moved them).
pub const QUOTA_ROUNDS_MAX: usize = 4;

/// How long a claim waits before looking again when a gift not yet sold out has no unit to be
/// had: the units are in a move between two slots, which takes a round trip or two.
pub const QUOTA_IN_FLIGHT_PAUSE_MS: u64 = 2;

/// Most units of stock one transfer gives a shard: at 6,000 claims/s on a shard, about 25
/// refills a second of one gift, while a shard whose users stop holds at most this much idle.
pub const STOCK_CHUNK_MAX: u64 = 256;

/// Pending transfers or releases one sweep reads per hash and pass.
const SWEEP_PAGE: usize = 1_000;

/// Something shards share through quotas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    /// A gift's stock: units.
    Stock { gift: GiftIndex, stock: u64 },
    /// An hour's high-value budget: cents; a claim needs `least_cents` (its gift's value) at
    /// once.
    HighValueHour { hour: u64, budget_cents: u64, least_cents: u64 },
}

impl Resource {
    /// The quota field of an hour's high-value budget.
    pub fn hour_field(hour: u64) -> String {
        format!("hv:{hour}")
    }
}

/// What one node keeps about the quotas: which gifts it found sold out.
pub(crate) struct Quotas {
    /// Per bound gift: every unit taken (seen by a refill that found nothing anywhere).
    sold_out: Vec<AtomicBool>,
    /// The stock of each gift found sold out, for [`Quotas::sold_out_stock`].
    sold_out_stock: Vec<std::sync::atomic::AtomicU64>,
    allot: Script,
    receive: Script,
    release: Script,
    give_back: Script,
}

impl Quotas {
    pub fn new(gifts: usize) -> Quotas {
        Quotas {
            sold_out: (0..gifts).map(|_| AtomicBool::new(false)).collect(),
            sold_out_stock: (0..gifts).map(|_| Default::default()).collect(),
            allot: Script::new(include_str!("lua/quota_allot.lua")),
            receive: Script::new(include_str!("lua/quota_receive.lua")),
            release: Script::new(include_str!("lua/quota_release.lua")),
            give_back: Script::new(include_str!("lua/quota_give_back.lua")),
        }
    }

    /// The stock at which this node found the gift sold out (units taken never go back).
    fn sold_out_stock(&self, gift: GiftIndex) -> Option<u64> {
        let i = usize::from(gift.0);
        self.sold_out
            .get(i)
            .filter(|s| s.load(Ordering::Relaxed))
            .and_then(|_| self.sold_out_stock.get(i))
            .map(|s| s.load(Ordering::Relaxed))
    }

    /// Whether `gift` was found with all of `stock` taken (a campaign file read again with
    /// more stock makes it sellable again).
    pub fn is_sold_out(&self, gift: GiftIndex, stock: u64) -> bool {
        self.sold_out_stock(gift).is_some_and(|found| stock <= found)
    }

    fn mark_sold_out(&self, gift: GiftIndex, stock: u64) {
        let i = usize::from(gift.0);
        if let (Some(flag), Some(units)) = (self.sold_out.get(i), self.sold_out_stock.get(i)) {
            units.store(stock, Ordering::Relaxed);
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Decides the campaign's claim layout: the one stored (`{<c>}:layout`), or the one asked for
/// written if none is, or one shard. A campaign with orders and no stored layout was written by
/// a node before layouts were stored: one shard.
pub(crate) async fn settle_layout(
    conn: &RedisConn,
    keys: &Keys,
    asked: Option<u16>,
) -> Result<u16, StoreError> {
    if let Some(shards) = asked {
        check_shards(shards)?;
    }
    let mut conn = conn.clone();
    let stored: Option<String> =
        redis::cmd("GET").arg(keys.layout()).query_async(&mut conn).await.map_err(store_error)?;
    let stored = match stored {
        Some(text) => Some(parse_layout(&text)?),
        None => {
            let orders: u64 = redis::cmd("HLEN")
                .arg(keys.orders())
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            (orders > 0).then_some(1)
        }
    };
    let shards = match (stored, asked) {
        (Some(stored), Some(asked)) if stored != asked => {
            return Err(StoreError::InvalidConfig(format!(
                "this campaign's claims were first written in {stored} claim shard(s); a \
                 layout never changes (users' state would be looked for elsewhere): ask for \
                 {stored} or none"
            )));
        }
        (Some(stored), _) => stored,
        (None, asked) => asked.unwrap_or(1),
    };
    // Racing first nodes: the first write wins and the others must agree with it.
    let written: bool = redis::cmd("SET")
        .arg(keys.layout())
        .arg(format!("shards={shards}"))
        .arg("NX")
        .query_async::<Option<String>>(&mut conn)
        .await
        .map_err(store_error)?
        .is_some();
    if !written && stored.is_none() {
        // Another node wrote its layout first: decide again against it.
        return Box::pin(settle_layout(&conn, keys, asked)).await;
    }
    Ok(shards)
}

fn parse_layout(text: &str) -> Result<u16, StoreError> {
    text.strip_prefix("shards=")
        .and_then(|n| n.parse::<u16>().ok())
        .filter(|n| check_shards(*n).is_ok())
        .ok_or_else(|| StoreError::Corrupt(format!("claim layout `{text}`")))
}

/// What one sweep of pending quota moves did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferSweep {
    /// Pool → shard transfers found pending past the grace period and applied.
    pub transfers: usize,
    /// Shard → pool releases found pending past the grace period and applied.
    pub releases: usize,
}

impl RedisLedger {
    /// Moves quota of `resource` to shard `k`: from the pool, or, when the pool is empty, from
    /// what the other shards hold unused. Returns the units `k` received (0: there are none to
    /// be had now). See the module doc.
    /// `now_ms` (the claim's clock) stamps pending moves for the sweeper's grace period.
    pub(crate) async fn refill(
        &self,
        k: u16,
        resource: &Resource,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        if let Resource::Stock { gift, stock } = resource
            && self.quotas.is_sold_out(*gift, *stock)
        {
            return Ok(0);
        }
        let mut given = self.allot(k, resource, now_ms).await?;
        if given.is_none() {
            self.reclaim(k, resource, now_ms).await?;
            given = self.allot(k, resource, now_ms).await?;
        }
        let Some((units, id)) = given else {
            if let Resource::Stock { gift, stock } = resource
                && self.units_taken(*gift).await? >= *stock
            {
                self.quotas.mark_sold_out(*gift, *stock);
            }
            return Ok(0);
        };
        self.receive(k, &id, &field(self, resource), units).await?;
        Ok(units)
    }

    /// The pool's share for shard `k`, or `None` when it is empty.
    pub(crate) async fn allot(
        &self,
        k: u16,
        resource: &Resource,
        now_ms: u64,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let (total, least, most) = match resource {
            Resource::Stock { stock, .. } => (*stock, 1, STOCK_CHUNK_MAX),
            Resource::HighValueHour { budget_cents, least_cents, .. } => {
                (*budget_cents, *least_cents, u64::MAX)
            }
        };
        let share = 2 * u64::from(self.shards());
        let reply: Value = self
            .quotas
            .allot
            .key(self.keys.pool_allotted())
            .key(self.keys.pool_transfers())
            .key(self.keys.quota_seq())
            .arg(field(self, resource))
            .arg(lua_limit(total))
            .arg(lua_limit(least))
            .arg(share)
            .arg(lua_limit(most))
            .arg(k)
            .arg(now_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        let (units, id) = units_and_id(&reply)?;
        Ok((units > 0).then_some((units, id)))
    }

    /// Applies transfer `id` to shard `k`, then drops its pending record.
    async fn receive(&self, k: u16, id: &str, field: &str, units: u64) -> Result<(), StoreError> {
        let keys = &self.shard(k).keys;
        let (counter, applied) = (keys.quota(), keys.quota_received());
        let pending = self.keys.pool_transfers();
        self.apply_move(&self.quotas.receive, [counter, applied], pending, id, field, units).await
    }

    /// Takes back into the pool what every shard but `k` holds of `resource` and has not used.
    async fn reclaim(&self, k: u16, resource: &Resource, now_ms: u64) -> Result<(), StoreError> {
        let field = field(self, resource);
        for j in (0..self.shards()).filter(|j| *j != k) {
            let keys = &self.shard(j).keys;
            let (used_key, used_field) = match resource {
                Resource::Stock { .. } => (keys.stock(), field.clone()),
                Resource::HighValueHour { hour, .. } => {
                    (keys.high_value_hour(*hour), String::new())
                }
            };
            let reply: Value = self
                .quotas
                .release
                .key(keys.quota())
                .key(used_key)
                .key(keys.quota_releases())
                .key(keys.quota_seq())
                .arg(&field)
                .arg(used_field)
                .arg(j)
                .arg(now_ms)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            let (units, id) = units_and_id(&reply)?;
            if units > 0 {
                self.give_back(j, &id, &field, units).await?;
            }
        }
        Ok(())
    }

    /// Takes release `id` of shard `j` back into the pool, then drops its pending record.
    async fn give_back(&self, j: u16, id: &str, field: &str, units: u64) -> Result<(), StoreError> {
        let (counter, applied) = (self.keys.pool_allotted(), self.keys.pool_returned());
        let pending = self.shard(j).keys.quota_releases();
        self.apply_move(&self.quotas.give_back, [counter, applied], pending, id, field, units).await
    }

    /// The second half of a quota move, either way: `script` applies move `id` to the
    /// receiving side's counter once (its set of applied ids remembers it), then the move's
    /// pending record on the giving side is dropped.
    async fn apply_move(
        &self,
        script: &Script,
        [counter, applied]: [String; 2],
        pending: String,
        id: &str,
        field: &str,
        units: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        script
            .key(counter)
            .key(applied)
            .arg(id)
            .arg(field)
            .arg(units)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(store_error)?;
        redis::cmd("HDEL")
            .arg(pending)
            .arg(id)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Units of `gift` taken over every shard, read now.
    async fn units_taken(&self, gift: GiftIndex) -> Result<u64, StoreError> {
        let Some((gift_id, _)) = self.binding.gift(gift) else { return Ok(0) };
        let mut taken = 0u64;
        for shard in &self.shards {
            let units: Option<u64> = redis::cmd("HGET")
                .arg(shard.keys.stock())
                .arg(gift_id)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            taken = taken.saturating_add(units.unwrap_or(0));
        }
        Ok(taken)
    }

    /// Finishes the quota moves whose mover died: pending transfers and releases recorded
    /// before `now_ms - grace_ms` are applied again (harmless if they were: each side
    /// remembers the ids it applied). Nothing to do with one claim shard.
    pub async fn sweep_quota_transfers(
        &self,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<TransferSweep, StoreError> {
        let mut sweep = TransferSweep::default();
        if !self.sharded() {
            return Ok(sweep);
        }
        let before = now_ms.saturating_sub(grace_ms);
        for (id, record) in pending(&self.conn, &self.keys.pool_transfers()).await? {
            let [shard, field, units, at] = split::<4>(&record)?;
            if at.parse::<u64>().is_ok_and(|at| at < before) {
                let shard = shard.parse::<u16>().map_err(|_| corrupt(&record))?;
                let units = units.parse::<u64>().map_err(|_| corrupt(&record))?;
                self.receive(shard, &id, field, units).await?;
                sweep.transfers += 1;
            }
        }
        for j in 0..self.shards() {
            for (id, record) in pending(&self.conn, &self.shard(j).keys.quota_releases()).await? {
                let [field, units, at] = split::<3>(&record)?;
                if at.parse::<u64>().is_ok_and(|at| at < before) {
                    let units = units.parse::<u64>().map_err(|_| corrupt(&record))?;
                    self.give_back(j, &id, field, units).await?;
                    sweep.releases += 1;
                }
            }
        }
        Ok(sweep)
    }
}

/// The quota field of `resource`.
fn field(ledger: &RedisLedger, resource: &Resource) -> String {
    match resource {
        Resource::Stock { gift, .. } => {
            ledger.binding.gift(*gift).map(|(id, _)| id.to_string()).unwrap_or_default()
        }
        Resource::HighValueHour { hour, .. } => Resource::hour_field(*hour),
    }
}

/// Up to [`SWEEP_PAGE`] entries of a pending hash.
async fn pending(conn: &RedisConn, key: &str) -> Result<Vec<(String, String)>, StoreError> {
    let (_, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
        .arg(key)
        .arg(0)
        .arg("COUNT")
        .arg(SWEEP_PAGE)
        .query_async(&mut conn.clone())
        .await
        .map_err(store_error)?;
    Ok(pairs)
}

fn split<const N: usize>(record: &str) -> Result<[&str; N], StoreError> {
    let parts: Vec<&str> = record.split('|').collect();
    parts.try_into().map_err(|_| corrupt(record))
}

fn corrupt(record: &str) -> StoreError {
    StoreError::Corrupt(format!("pending quota move `{record}`"))
}

fn units_and_id(reply: &Value) -> Result<(u64, String), StoreError> {
    let bad = || StoreError::Corrupt(format!("quota script answered {reply:?}"));
    let Value::Array(parts) = reply else { return Err(bad()) };
    let [units, id] = parts.as_slice() else { return Err(bad()) };
    let units = u64::try_from(int(units)?).map_err(|_| bad())?;
    Ok((units, text(id)?.to_string()))
}
