//! The claim: `lua/claim.lua` and its reply, and the reads of orders.

use hongbao_store::{
    ClaimOutcome, ClaimRequest, DAY_MS, HOUR_MS, HighValueUsage, IDEMPOTENCY_TTL_MS, ORDERS_OF_MAX,
    Order, OrderId, StoreError, day_ends_at_ms, day_of, hour_ends_at_ms, hour_of,
};
use redis::Value;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::quota::Resource;
use crate::{IDEMPOTENCY_GC_MARGIN_MS, RedisLedger, lua_limit, store_error};

pub(crate) async fn claim(
    ledger: &RedisLedger,
    req: ClaimRequest,
) -> Result<ClaimOutcome, StoreError> {
    // The checks every store makes before its atomic step, and the order it would write.
    let order = req.prepare_order(&ledger.binding)?;
    let json = serde_json::to_string(&order).map_err(|e| {
        StoreError::InvalidRequest(format!("order {} not serialisable: {e}", order.id))
    })?;
    let k = ledger.shard_of(req.user());
    let mut refills = 0;
    loop {
        let outcome = run_script(ledger, k, &req, &order, &json).await?;
        // A shard refuses for want of quota while the pool or other shards may hold some: it
        // gets more and asks again, a bounded number of times (each round moves quota to it).
        let needs = match &outcome {
            ClaimOutcome::OutOfStock if ledger.sharded() => {
                Some(Resource::Stock { gift: req.gift, stock: req.stock })
            }
            ClaimOutcome::HighValueBudgetExhausted { .. } if ledger.sharded() => {
                req.high_value.as_ref().map(|rule| Resource::HighValueHour {
                    hour: hour_of(req.now_ms),
                    budget_cents: rule.budget_cents_per_hour,
                    least_cents: rule.value_cents,
                })
            }
            _ => None,
        };
        let Some(resource) = needs else { return Ok(outcome) };
        if refills == crate::QUOTA_ROUNDS_MAX {
            return Ok(outcome);
        }
        refills += 1;
        if ledger.refill(k, &resource, req.now_ms).await? == 0 {
            // Nothing to be had now. Units of a gift not sold out are on their way between a
            // shard and the pool (a move's two scripts are not one): look again shortly, so
            // the last units are not refused while they are in flight.
            let in_flight = matches!(resource, Resource::Stock { gift, stock }
                if !ledger.quotas.is_sold_out(gift, stock));
            if !in_flight {
                return Ok(outcome);
            }
            tokio::time::sleep(std::time::Duration::from_millis(crate::QUOTA_IN_FLIGHT_PAUSE_MS))
                .await;
        }
    }
}

/// One run of `lua/claim.lua` on shard `k`.
async fn run_script(
    ledger: &RedisLedger,
    k: u16,
    req: &ClaimRequest,
    order: &Order,
    json: &str,
) -> Result<ClaimOutcome, StoreError> {
    let shard = ledger.shard(k);
    let (keys, user) = (&shard.keys, req.user());
    let quota = ledger.sharded();
    let mut call = ledger.claim_script.prepare_invoke();
    call.key(keys.orders())
        .key(keys.stock())
        .key(keys.user_gifts(user))
        .key(keys.user_orders(user))
        .key(keys.should_send())
        .key(keys.high_value_user(user, day_of(req.now_ms)))
        .key(keys.high_value_hour(hour_of(req.now_ms)))
        .key(keys.order_ids())
        .key(keys.quota());
    let (fingerprint, expires) = match &req.idempotency {
        Some(key) => {
            call.key(keys.idempotency(user, key.key()));
            let expires_at_ms = req.now_ms.saturating_add(IDEMPOTENCY_TTL_MS);
            (hex::encode(key.fingerprint()), digits(expires_at_ms))
        }
        None => (String::new(), String::new()),
    };
    call.arg(order.id.as_str()).arg(&order.gift_id);
    // A shard's stock and hour budget are its quotas, which the script reads itself.
    if quota {
        call.arg("");
    } else {
        call.arg(lua_limit(req.stock));
    }
    call.arg(req.per_user_limit)
        .arg(digits(req.now_ms))
        .arg(fingerprint)
        .arg(expires)
        .arg(IDEMPOTENCY_TTL_MS + IDEMPOTENCY_GC_MARGIN_MS)
        .arg(json)
        .arg(order.created_at_ms)
        .arg(order.ready_at_ms.unwrap_or(order.created_at_ms));
    match &req.high_value {
        // Limits above 2^53 as 2^53 (see `lua_limit`); a gift's value is at most its budget.
        Some(rule) => {
            call.arg(lua_limit(rule.value_cents)).arg(rule.per_user_per_day);
            if quota {
                call.arg("");
            } else {
                call.arg(lua_limit(rule.budget_cents_per_hour));
            }
        }
        None => {
            call.arg("").arg(0).arg(0);
        }
    };
    // The hour's quota field, read only by a shard's high-value claim.
    let hour_field = match (&req.high_value, quota) {
        (Some(_), true) => Resource::hour_field(hour_of(req.now_ms)),
        _ => String::new(),
    };
    call.arg(HIGH_VALUE_DAY_TTL_MS).arg(HIGH_VALUE_HOUR_TTL_MS).arg(hour_field);
    let reply: Value = call.invoke_async(&mut ledger.conn.clone()).await.map_err(store_error)?;

    let Value::Array(parts) = reply else {
        return Err(bad_reply(&reply));
    };
    let [outcome, stored, taken] = parts.as_slice() else {
        return Err(bad_reply(&Value::Array(parts)));
    };
    if let Ok(taken) = u64::try_from(int(taken)?) {
        ledger.saw_taken(shard, req.gift, taken);
    }
    let stored = bytes(stored)?;
    Ok(match text(outcome)? {
        // The order this claim wrote: the one built above, as sent.
        "A" if stored.is_empty() => ClaimOutcome::Accepted(Box::new(order.clone())),
        "A" => ClaimOutcome::Accepted(Box::new(decode_order(stored)?)),
        "R" => ClaimOutcome::Replayed(Box::new(decode_order(stored)?)),
        "C" => ClaimOutcome::CouponAlreadyRedeemed(Box::new(decode_order(stored)?)),
        "conflict" => ClaimOutcome::IdempotencyConflict,
        "out_of_stock" => ClaimOutcome::OutOfStock,
        "limit" => ClaimOutcome::LimitReached,
        "hv_day" => ClaimOutcome::HighValueDailyLimit { resets_at_ms: day_ends_at_ms(req.now_ms) },
        "hv_budget" => {
            ClaimOutcome::HighValueBudgetExhausted { resets_at_ms: hour_ends_at_ms(req.now_ms) }
        }
        "corrupt" => {
            return Err(StoreError::Corrupt(String::from_utf8_lossy(stored).into_owned()));
        }
        _ => return Err(bad_reply(outcome)),
    })
}

/// Redis lifetime of a user's high-value day count: the rest of its day and a day more, so it
/// outlives its day whatever the distance between the nodes' clocks and Redis's. The day it
/// counts is the node's (the request's `now_ms`); the TTL only collects old days.
pub const HIGH_VALUE_DAY_TTL_MS: u64 = 2 * DAY_MS;
/// Redis lifetime of an hour's high-value spend, for the same reason.
pub const HIGH_VALUE_HOUR_TTL_MS: u64 = 3 * HOUR_MS;

/// The committed high-value counts of `user`'s day and everyone's hour at `now_ms`. With claim
/// shards, the hour's cents are the user's shard's as committed plus the other shards' as last
/// read (see [`HourSpend`]).
pub(crate) async fn high_value_usage(
    ledger: &RedisLedger,
    user: u64,
    now_ms: u64,
) -> Result<HighValueUsage, StoreError> {
    let (day, hour) = (day_of(now_ms), hour_of(now_ms));
    let mine = ledger.shard_of(user);
    let keys = &ledger.shard(mine).keys;
    let (claimed, spent): (Option<u32>, Option<u64>) = redis::cmd("MGET")
        .arg(keys.high_value_user(user, day))
        .arg(keys.high_value_hour(hour))
        .query_async(&mut ledger.conn.clone())
        .await
        .map_err(store_error)?;
    let others =
        if ledger.sharded() { ledger.hour_spend.others(ledger, mine, now_ms).await? } else { 0 };
    Ok(HighValueUsage {
        claimed_today: claimed.unwrap_or(0),
        spent_this_hour_cents: spent.unwrap_or(0).saturating_add(others),
    })
}

/// How old the other shards' hour spend may be when a gift list reads it.
pub const HOUR_SPEND_MAX_AGE_MS: u64 = 1_000;

/// Every claim shard's spend of an hour's high-value budget, as this node last read it. The
/// gift list asks for it on every list holding a high-value gift: reading every other shard
/// each time would be S − 1 commands per list, so they are read again at most once per
/// [`HOUR_SPEND_MAX_AGE_MS`] of the request clock, by one request while the others use what
/// was read. Like [`hongbao_store::ClaimLedger::stock_taken`], it only hides gifts in lists: the
/// claim script decides the budget exactly.
pub(crate) struct HourSpend {
    hour: AtomicU64,
    read_at_ms: AtomicU64,
    cents: Vec<AtomicU64>,
    reading: tokio::sync::Mutex<()>,
}

impl HourSpend {
    pub fn new(shards: usize) -> HourSpend {
        HourSpend {
            hour: AtomicU64::new(u64::MAX),
            read_at_ms: AtomicU64::new(0),
            cents: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The hour's cents spent in every shard but `mine`.
    async fn others(
        &self,
        ledger: &RedisLedger,
        mine: u16,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let hour = hour_of(now_ms);
        let fresh = self.hour.load(Ordering::Relaxed) == hour
            && now_ms
                < self.read_at_ms.load(Ordering::Relaxed).saturating_add(HOUR_SPEND_MAX_AGE_MS);
        if !fresh && let Ok(_reading) = self.reading.try_lock() {
            // One GET per shard: their keys are in other slots.
            for (cents, shard) in self.cents.iter().zip(&ledger.shards) {
                let spent: Option<u64> = redis::cmd("GET")
                    .arg(shard.keys.high_value_hour(hour))
                    .query_async(&mut ledger.conn.clone())
                    .await
                    .map_err(store_error)?;
                cents.store(spent.unwrap_or(0), Ordering::Relaxed);
            }
            self.hour.store(hour, Ordering::Relaxed);
            self.read_at_ms.store(now_ms, Ordering::Relaxed);
        }
        // Readings of another hour count nothing for this one.
        if self.hour.load(Ordering::Relaxed) != hour {
            return Ok(0);
        }
        Ok(self
            .cents
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != usize::from(mine))
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add))
    }
}

/// `user`'s order `id`, looked up in the user's shard only.
pub(crate) async fn user_order(
    ledger: &RedisLedger,
    user: u64,
    id: &OrderId,
) -> Result<Option<Order>, StoreError> {
    let found = ledger.stored_orders(ledger.shard_of(user), &[id.as_str().to_string()]).await?;
    Ok(found.into_iter().flatten().map(|s| s.order).find(|o| o.user == user))
}

/// The user's first `limit` orders by (`created_at_ms`, id): the index's own order.
pub(crate) async fn orders_of(
    ledger: &RedisLedger,
    user: u64,
    limit: usize,
) -> Result<Vec<Order>, StoreError> {
    let limit = limit.min(ORDERS_OF_MAX);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut conn = ledger.conn.clone();
    let keys = &ledger.shard(ledger.shard_of(user)).keys;
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.user_orders(user))
        .arg(0)
        .arg(limit - 1)
        .query_async(&mut conn)
        .await
        .map_err(store_error)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
        .arg(keys.orders())
        .arg(&ids)
        .query_async(&mut conn)
        .await
        .map_err(store_error)?;
    // The script writes an order and its index entry together: one without the other is damage.
    ids.iter()
        .zip(stored)
        .map(|(id, json)| match json {
            Some(json) => decode_order(&json),
            None => {
                Err(StoreError::Corrupt(format!("user {user}'s index names missing order {id}")))
            }
        })
        .collect()
}

/// A stored order, checked: it must parse and be consistent (DESIGN.md §6: data from the
/// network is never trusted).
pub(crate) fn decode_order(json: &[u8]) -> Result<Order, StoreError> {
    let order: Order = serde_json::from_slice(json)
        .map_err(|e| StoreError::Corrupt(format!("stored order is not an order: {e}")))?;
    if !order.is_consistent() {
        return Err(StoreError::Corrupt(format!("stored order {} is inconsistent", order.id)));
    }
    Ok(order)
}

/// A time as the script compares it: 20 digits, so that string order is numeric order for any
/// u64.
fn digits(ms: u64) -> String {
    format!("{ms:020}")
}

pub(crate) fn int(value: &Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(bad_reply(other)),
    }
}

pub(crate) fn bytes(value: &Value) -> Result<&[u8], StoreError> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(bad_reply(other)),
    }
}

pub(crate) fn text(value: &Value) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes(value)?).map_err(|_| bad_reply(value))
}

fn bad_reply(value: &Value) -> StoreError {
    StoreError::Corrupt(format!("unexpected reply of a script: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_compare_as_strings_like_numbers() {
        let times = [0, 9, 10, 1_800_000_000_000, u64::MAX - 1, u64::MAX];
        for pair in times.windows(2) {
            assert!(digits(pair[0]) < digits(pair[1]), "{pair:?}");
            assert_eq!(digits(pair[0]).len(), 20);
        }
    }
}
