//! Reconciliation's writes on the Redis side: a requeue's state change (`lua/requeue.lua`) and
//! a delivery the game logged but we did not (the settle script). Which transition is the
//! store's rule ([`hongbao_store::resent`], [`hongbao_store::recorded_delivered`]); the scripts
//! only make each write conditional on the order as read, so a concurrent worker's write is
//! never overwritten: the caller reads again and decides again.

use hongbao_domain::{Order, OrderId};
use hongbao_store::{RecordOutcome, StoreError, recorded_delivered};
use redis::Value;

use crate::claim::{int, text};
use crate::outbox::{Settled, StoredOrder};
use crate::{RedisLedger, store_error};

/// Reads and decisions of one repair before it gives up on an order that keeps changing under
/// it (each round lost to a worker's write: a busy order, not a broken one).
pub const REPAIR_ROUNDS_MAX: usize = 8;

/// What [`RedisLedger::requeue_write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequeueWrite {
    /// Written and recorded unpublished; the new message's generation.
    Written {
        generation: u64,
    },
    /// The order changed since it was read.
    Stale,
    Missing,
}

impl RedisLedger {
    /// One order as stored, with its text (the state a conditional write names), wherever
    /// its claim shard is (one read per shard until found: for reconciliation and the tools,
    /// which know only the id; the API and the workers know the shard).
    pub async fn stored_order(&self, id: &OrderId) -> Result<Option<StoredOrder>, StoreError> {
        for shard in 0..self.shards() {
            let mut found = self.stored_orders(shard, &[id.as_str().to_string()]).await?;
            if let Some(stored) = found.pop().flatten() {
                return Ok(Some(stored));
            }
        }
        Ok(None)
    }

    /// Writes `next` over `read` (or keeps it, for `None`), records the order unpublished and
    /// takes the next requeue generation: one script, conditional on `read`.
    pub async fn requeue_write(
        &self,
        read: &StoredOrder,
        next: Option<&Order>,
    ) -> Result<RequeueWrite, StoreError> {
        let order = next.unwrap_or(&read.order);
        assert!(order.is_consistent(), "an inconsistent order is never written: {order:?}");
        assert!(order.status.is_in_queue(), "a requeue writes a waiting order: {order:?}");
        let json = match next {
            Some(next) => serde_json::to_string(next).map_err(|e| {
                StoreError::InvalidRequest(format!("order {} not serialisable: {e}", next.id))
            })?,
            None => String::new(),
        };
        let keys = &self.user_shard(order.user).keys;
        let mut call = self.requeue_script.prepare_invoke();
        call.key(keys.orders())
            .key(keys.should_send())
            .key(keys.requeues())
            .arg(order.id.as_str())
            .arg(&read.json)
            .arg(json)
            .arg(order.ready_at_ms.unwrap_or(order.updated_at_ms));
        let reply: Value = call.invoke_async(&mut self.conn.clone()).await.map_err(store_error)?;
        let Value::Array(parts) = &reply else {
            return Err(StoreError::Corrupt(format!("requeue script answered {reply:?}")));
        };
        let [outcome, generation] = parts.as_slice() else {
            return Err(StoreError::Corrupt(format!("requeue script answered {reply:?}")));
        };
        match text(outcome)? {
            "ok" => Ok(RequeueWrite::Written {
                generation: u64::try_from(int(generation)?).unwrap_or(0),
            }),
            "stale" => Ok(RequeueWrite::Stale),
            "missing" => Ok(RequeueWrite::Missing),
            other => Err(StoreError::Corrupt(format!("requeue script answered `{other}`"))),
        }
    }

    /// [`hongbao_store::LedgerRepair::record_delivered`] on Redis: the store's rule, written
    /// with the settle script (order and send-log row at once, conditional, idempotent).
    ///
    /// Never `InFlight`: leases are JetStream messages held by workers in other processes, so
    /// no read here tells whether one is being delivered. None needs to: a worker holding the
    /// order finds its own write stale and ends the lease as lost, and the next fetch of the
    /// message acknowledges it unsent (the order is no longer waiting).
    pub async fn record_delivered(
        &self,
        id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> Result<RecordOutcome, StoreError> {
        for _ in 0..REPAIR_ROUNDS_MAX {
            let Some(read) = self.stored_order(id).await? else {
                return Ok(RecordOutcome::NotFound);
            };
            let Some(next) = recorded_delivered(&read.order, delivered_at_ms, now_ms) else {
                return Ok(RecordOutcome::Unchanged(Box::new(read.order)));
            };
            match self.settle(&read, &next).await? {
                Settled::Written | Settled::AlreadyWritten => {
                    return Ok(RecordOutcome::Recorded(Box::new(next)));
                }
                Settled::Missing => return Ok(RecordOutcome::NotFound),
                Settled::Stale => continue,
            }
        }
        Err(busy(id))
    }
}

/// An order that changed under every one of [`REPAIR_ROUNDS_MAX`] rounds.
pub fn busy(id: &OrderId) -> StoreError {
    StoreError::Unavailable(format!(
        "order {id} changed under each of {REPAIR_ROUNDS_MAX} attempts to repair it; try again"
    ))
}
