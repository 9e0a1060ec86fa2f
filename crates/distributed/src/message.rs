//! What a delivery message is: the order id as payload (with claim shards, `<order id>@<shard>`,
//! so a worker reads the order in its shard without asking every shard), the order id as
//! `Nats-Msg-Id` (for a
//! message reconciliation published again, `<order id>:r<generation>`: a new id, so the
//! stream's deduplication window of the earlier ones does not swallow it), on the order's game
//! subject. The order itself stays in Redis, which is the truth about its state;
//! the message only says "this order is waiting for its game".
//!
//! WARNING: persisted — messages in a stream outlive a deployment; changing the payload breaks
//! the queue's reading of the stored ones.

use bytes::Bytes;
use hongbao_jetstream::Outgoing;
use hongbao_redis::RedisLedger;
use hongbao_store::{Order, OrderId, StoreError};

/// The message that queues `order` for delivery, the `generation`-th time reconciliation
/// published it again (0: the claim's own message).
pub(crate) fn outgoing(
    ledger: &RedisLedger,
    order: &Order,
    generation: u64,
) -> Result<Outgoing, StoreError> {
    let game = ledger.binding().game_index(&order.game_id).ok_or_else(|| {
        StoreError::Corrupt(format!("order {} names unknown game {}", order.id, order.game_id))
    })?;
    Ok(Outgoing {
        game: usize::from(game.0),
        msg_id: message_id(&order.id, generation),
        payload: payload(ledger, order),
    })
}

/// WARNING: persisted. `<order id>` with one claim shard (the layout before shards), else
/// `<order id>@<shard>`.
pub(crate) fn payload(ledger: &RedisLedger, order: &Order) -> Bytes {
    if ledger.shards() == 1 {
        Bytes::copy_from_slice(order.id.as_str().as_bytes())
    } else {
        Bytes::from(format!("{}@{}", order.id, ledger.shard_of(order.user)))
    }
}

/// WARNING: persisted (in the stream's deduplication window, across deployments).
pub(crate) fn message_id(id: &OrderId, generation: u64) -> String {
    match generation {
        0 => id.as_str().to_string(),
        n => format!("{id}:r{n}"),
    }
}

/// The order id a message carries and its claim shard (0 for a payload without one: written
/// with one shard), if it is one.
pub(crate) fn order_ref(payload: &[u8]) -> Option<(OrderId, u16)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, shard) = match text.split_once('@') {
        Some((id, shard)) => (id, shard.parse().ok()?),
        None => (text, 0),
    };
    Some((OrderId::parse(id).ok()?, shard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_order_and_its_shard() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(order_ref(id.as_bytes()).map(|(i, s)| (i.to_string(), s)), Some((id.into(), 0)));
        let sharded = format!("{id}@17");
        assert_eq!(order_ref(sharded.as_bytes()).map(|(_, s)| s), Some(17));
        for bad in ["", "xyz", &format!("{id}@"), &format!("{id}@-1"), &format!("{id}@x")] {
            assert!(order_ref(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
