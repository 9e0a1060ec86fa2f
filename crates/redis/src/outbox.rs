//! What the distributed mode's publisher, sweeper and delivery queue need of the Redis side:
//! the should-send set ("recorded, not yet published"), orders read with their stored text, and
//! a delivery outcome recorded with `lua/settle.lua`. The rules (which transition, when) are
//! decided by the callers with the domain's state machine; Redis only makes each write
//! conditional and idempotent.

use hongbao_store::{Order, StoreError};
use redis::Value;

use crate::claim::decode_order;
use crate::{RedisLedger, store_error};

/// Ids one `ZREM` or `HMGET` carries at most; longer lists are split.
pub const IDS_PER_COMMAND_MAX: usize = 1_000;

/// An order as stored: the parsed order and its exact text, which a later conditional write
/// ([`RedisLedger::settle`]) names as the state it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOrder {
    pub order: Order,
    pub json: String,
}

/// What [`RedisLedger::settle`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The next state is written (and, delivered, its send-log row).
    Written,
    /// It was already written: a repeated call.
    AlreadyWritten,
    /// The order changed since it was read: someone else settled it.
    Stale,
    /// No such order.
    Missing,
}

impl RedisLedger {
    /// Up to `max` orders of claim shard `shard` recorded by a claim before
    /// `recorded_before_ms` (their `ready_at_ms`) and not marked published, oldest first.
    pub async fn unpublished(
        &self,
        shard: u16,
        recorded_before_ms: u64,
        max: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let max = max.min(IDS_PER_COMMAND_MAX);
        if max == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.shard(shard).keys.should_send())
            .arg("-inf")
            .arg(recorded_before_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(max)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        let stored = self.stored_orders(shard, &ids).await?;
        ids.iter()
            .zip(stored)
            .map(|(id, s)| {
                s.map(|s| s.order).ok_or_else(|| {
                    StoreError::Corrupt(format!("should-send names missing order {id}"))
                })
            })
            .collect()
    }

    /// Orders recorded and not yet marked published, over the whole campaign.
    pub async fn unpublished_count(&self) -> Result<u64, StoreError> {
        let mut count = 0u64;
        for shard in &self.shards {
            let n: u64 = redis::cmd("ZCARD")
                .arg(shard.keys.should_send())
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            count += n;
        }
        Ok(count)
    }

    /// Marks orders of claim shard `shard` published: out of the should-send set. Idempotent.
    pub async fn mark_published(&self, shard: u16, ids: &[&str]) -> Result<(), StoreError> {
        for chunk in ids.chunks(IDS_PER_COMMAND_MAX) {
            redis::cmd("ZREM")
                .arg(self.shard(shard).keys.should_send())
                .arg(chunk)
                .query_async::<u64>(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// The orders named, in claim shard `shard`, as stored (`None` for an id with no order
    /// there), in the ids' order.
    pub async fn stored_orders(
        &self,
        shard: u16,
        ids: &[String],
    ) -> Result<Vec<Option<StoredOrder>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let keys = &self.shard(shard).keys;
        for chunk in ids.chunks(IDS_PER_COMMAND_MAX) {
            let stored: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(keys.orders())
                .arg(chunk)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            for json in stored {
                out.push(match json {
                    Some(json) => Some(StoredOrder { order: decode_order(json.as_bytes())?, json }),
                    None => None,
                });
            }
        }
        Ok(out)
    }

    /// Writes `next` over `leased` (the order as read, see [`StoredOrder`]) if the order is
    /// still that; a delivered `next` gets its actual-send row. One script, idempotent.
    pub async fn settle(&self, leased: &StoredOrder, next: &Order) -> Result<Settled, StoreError> {
        assert!(next.is_consistent(), "an inconsistent order is never written: {next:?}");
        assert_eq!(leased.order.id, next.id, "settle writes the leased order");
        let json = serde_json::to_string(next).map_err(|e| {
            StoreError::InvalidRequest(format!("order {} not serialisable: {e}", next.id))
        })?;
        let delivered_at = next.delivered_at_ms.map(|ms| ms.to_string()).unwrap_or_default();
        let keys = &self.user_shard(next.user).keys;
        let mut call = self.settle_script.prepare_invoke();
        call.key(keys.orders())
            .key(keys.sent())
            .key(keys.published())
            .arg(next.id.as_str())
            .arg(&leased.json)
            .arg(json)
            .arg(delivered_at)
            .arg(if next.status.is_final() { "1" } else { "" });
        let reply: Value = call.invoke_async(&mut self.conn.clone()).await.map_err(store_error)?;
        match crate::claim::text(&reply)? {
            "ok" => Ok(Settled::Written),
            "same" => Ok(Settled::AlreadyWritten),
            "stale" => Ok(Settled::Stale),
            "missing" => Ok(Settled::Missing),
            other => Err(StoreError::Corrupt(format!("settle script answered `{other}`"))),
        }
    }

    /// The actual-send log: (order id, delivered_at_ms), oldest first, at most `max`.
    pub async fn sent(&self, max: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let max = max.min(IDS_PER_COMMAND_MAX);
        let mut rows: Vec<(String, u64)> = Vec::new();
        if max == 0 {
            return Ok(rows);
        }
        // Each shard's oldest `max`: the campaign's oldest `max` are among them.
        for shard in &self.shards {
            let theirs: Vec<(String, u64)> = redis::cmd("ZRANGE")
                .arg(shard.keys.sent())
                .arg(0)
                .arg(max - 1)
                .arg("WITHSCORES")
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            rows.extend(theirs);
        }
        rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        rows.truncate(max);
        Ok(rows)
    }
}
