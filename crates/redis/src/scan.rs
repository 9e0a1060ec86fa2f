//! Reconciliation's reads of the Redis side: orders in id order, the actual-send log in
//! (order id, time) order, and where each order's message went (`should_send`, `published`).
//!
//! Orders live in a hash, which has no order; the claim script also adds each new order's id
//! to the `order_ids` zset (all scores 0, so `ZRANGEBYLEX` walks it in id order). Orders
//! recorded before that index existed are added by [`RedisLedger::index_orders`], which a pass
//! runs first: it compares the two sizes (two O(1) reads) and walks the hash in bounded pages
//! only when the index is short.
//!
//! The send log is a zset scored by time, with at most one row per order (the settle script
//! adds a row only if the order has none, so a redelivery after a resend keeps the first time).
//! Its id order is the order index's: a page walks the index and reads the rows' times with
//! `ZMSCORE`. The index is never pruned, so the row of an order deleted by hand is still found.

use hongbao_domain::{Order, OrderId};
use hongbao_store::{SCAN_PAGE_MAX, SentRecord, StoreError};

use crate::claim::decode_order;
use crate::keys::Keys;
use crate::outbox::IDS_PER_COMMAND_MAX;
use crate::{RedisLedger, store_error};

impl RedisLedger {
    /// Adds to the order index every order recorded before the claim script wrote it (one
    /// `HSCAN` page of at most [`IDS_PER_COMMAND_MAX`] orders, then one `ZADD`, at a time).
    /// Idempotent and cheap when there is nothing to add. Returns the orders walked.
    pub async fn index_orders(&self) -> Result<u64, StoreError> {
        let mut walked = 0;
        for shard in &self.shards {
            walked += self.index_orders_in(&shard.keys).await?;
        }
        Ok(walked)
    }

    async fn index_orders_in(&self, keys: &Keys) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let (orders, indexed): (u64, u64) = redis::pipe()
            .cmd("HLEN")
            .arg(keys.orders())
            .cmd("ZCARD")
            .arg(keys.order_ids())
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        if indexed >= orders {
            return Ok(0);
        }
        let (mut cursor, mut walked) = (0u64, 0u64);
        loop {
            let (next, pairs): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(keys.orders())
                .arg(cursor)
                .arg("COUNT")
                .arg(IDS_PER_COMMAND_MAX)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            let mut add = redis::cmd("ZADD");
            add.arg(keys.order_ids());
            let mut any = false;
            for id in pairs.iter().step_by(2) {
                add.arg(0).arg(id);
                any = true;
                walked += 1;
            }
            if any {
                add.query_async::<u64>(&mut conn).await.map_err(store_error)?;
            }
            if next == 0 {
                return Ok(walked);
            }
            cursor = next;
        }
    }

    /// Up to `limit` ids of the order index after `from` (a `ZRANGEBYLEX` bound: `-`, `[id`
    /// or `(id`).
    async fn indexed_ids(
        &self,
        keys: &Keys,
        from: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        redis::cmd("ZRANGEBYLEX")
            .arg(keys.order_ids())
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }

    /// Orders in id order after `after`, at most `limit` (and [`SCAN_PAGE_MAX`]). An indexed
    /// id without an order (deleted by hand) is skipped; the page is empty only at the end.
    pub async fn scan_orders(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let limit = limit.min(SCAN_PAGE_MAX);
        // Each shard's first `limit`: the campaign's first `limit` are among them.
        let mut page = Vec::new();
        for shard in &self.shards {
            page.extend(self.scan_orders_in(&shard.keys, after, limit).await?);
        }
        page.sort_by_key(|o| o.id);
        page.truncate(limit);
        Ok(page)
    }

    async fn scan_orders_in(
        &self,
        keys: &Keys,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let mut from = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let mut page = Vec::new();
        while page.len() < limit {
            let ids = self
                .indexed_ids(keys, &from, (limit - page.len()).min(IDS_PER_COMMAND_MAX))
                .await?;
            let Some(last) = ids.last() else { break };
            from = format!("({last}");
            let stored: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(keys.orders())
                .arg(&ids)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            for json in stored.into_iter().flatten() {
                page.push(decode_order(&json)?);
            }
        }
        Ok(page)
    }

    /// The send log's rows after `after` in (order id, delivered at) order, at most `limit`
    /// (and [`SCAN_PAGE_MAX`]); empty only at the end.
    pub async fn scan_sent(
        &self,
        after: Option<SentRecord>,
        limit: usize,
    ) -> Result<Vec<SentRecord>, StoreError> {
        let limit = limit.min(SCAN_PAGE_MAX);
        let mut page = Vec::new();
        for shard in &self.shards {
            page.extend(self.scan_sent_in(&shard.keys, after, limit).await?);
        }
        page.sort();
        page.truncate(limit);
        Ok(page)
    }

    async fn scan_sent_in(
        &self,
        keys: &Keys,
        after: Option<SentRecord>,
        limit: usize,
    ) -> Result<Vec<SentRecord>, StoreError> {
        // Inclusive of `after`'s id: its row may come after `after` (a later time).
        let mut from = after.map_or_else(|| "-".to_string(), |a| format!("[{}", a.order_id));
        let mut page = Vec::new();
        while page.len() < limit {
            let ids = self.indexed_ids(keys, &from, IDS_PER_COMMAND_MAX).await?;
            let Some(last) = ids.last() else { break };
            from = format!("({last}");
            let times: Vec<Option<String>> = redis::cmd("ZMSCORE")
                .arg(keys.sent())
                .arg(&ids)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            for (id, time) in ids.iter().zip(times) {
                let Some(time) = time else { continue };
                let row = SentRecord { order_id: parse_id(id)?, delivered_at_ms: parse_ms(&time)? };
                if after.is_none_or(|a| row > a) && page.len() < limit {
                    page.push(row);
                }
            }
        }
        Ok(page)
    }

    /// Where `id`'s message is: `Unpublished` while it waits in `should_send` for a publisher
    /// or the sweeper, else the stream sequence of its latest message if one was recorded.
    pub async fn message_of(&self, order: &Order) -> Result<MessageOf, StoreError> {
        let (id, keys) = (&order.id, &self.user_shard(order.user).keys);
        let (pending, sequence): (Option<String>, Option<u64>) = redis::pipe()
            .cmd("ZSCORE")
            .arg(keys.should_send())
            .arg(id.as_str())
            .cmd("HGET")
            .arg(keys.published())
            .arg(id.as_str())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(match (pending, sequence) {
            (Some(_), _) => MessageOf::Unpublished,
            (None, Some(sequence)) => MessageOf::Published { sequence },
            (None, None) => MessageOf::Unknown,
        })
    }

    /// Marks orders of claim shard `shard` published, each with the stream sequence its
    /// message was stored at: out of `should_send`, into `published`, in one transaction.
    /// Idempotent.
    pub async fn mark_published_at(
        &self,
        shard: u16,
        published: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        let keys = &self.shard(shard).keys;
        for chunk in published.chunks(IDS_PER_COMMAND_MAX) {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("ZREM").arg(keys.should_send());
            for (id, _) in chunk {
                pipe.arg(*id);
            }
            pipe.ignore().cmd("HSET").arg(keys.published());
            for (id, sequence) in chunk {
                pipe.arg(*id).arg(*sequence);
            }
            pipe.ignore().query_async::<()>(&mut self.conn.clone()).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// The requeue generation of each order of claim shard `shard` (0: never published again
    /// by reconciliation).
    pub async fn generations(&self, shard: u16, ids: &[&str]) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_COMMAND_MAX) {
            let found: Vec<Option<u64>> = redis::cmd("HMGET")
                .arg(self.shard(shard).keys.requeues())
                .arg(chunk)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_error)?;
            out.extend(found.into_iter().map(|g| g.unwrap_or(0)));
        }
        Ok(out)
    }
}

/// What Redis knows about an order's message (see [`RedisLedger::message_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOf {
    /// Recorded and not yet published: the sweeper publishes it.
    Unpublished,
    /// Published; the stream stored it at `sequence`.
    Published { sequence: u64 },
    /// Published before sequences were recorded: not checkable here.
    Unknown,
}

fn parse_id(id: &str) -> Result<OrderId, StoreError> {
    OrderId::parse(id).map_err(|_| StoreError::Corrupt(format!("indexed order id `{id}`")))
}

/// A zset score as Redis prints it: integer digits for any time written (below 2^53).
fn parse_ms(score: &str) -> Result<u64, StoreError> {
    score
        .parse::<u64>()
        .ok()
        .or_else(|| score.parse::<f64>().ok().filter(|f| *f >= 0.0).map(|f| f as u64))
        .ok_or_else(|| StoreError::Corrupt(format!("send-log time `{score}`")))
}
