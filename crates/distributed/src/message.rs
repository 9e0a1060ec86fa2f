//! What a delivery message is: the order id as payload, the order id as `Nats-Msg-Id` (for a
//! message reconciliation published again, `<order id>:r<generation>`: a new id, so the
//! stream's deduplication window of the earlier ones does not swallow it), on the order's game
//! subject. The order itself stays in Redis, which is the truth about its state;
//! the message only says "this order is waiting for its game".
//!
//! WARNING: persisted — messages in a stream outlive a deployment; changing the payload breaks
//! the queue's reading of the stored ones.

use bytes::Bytes;
use hongbao_jetstream::Outgoing;
use hongbao_store::{CampaignBinding, Order, OrderId, StoreError};

/// The message that queues `order` for delivery, the `generation`-th time reconciliation
/// published it again (0: the claim's own message).
pub(crate) fn outgoing(
    binding: &CampaignBinding,
    order: &Order,
    generation: u64,
) -> Result<Outgoing, StoreError> {
    let game = binding.game_index(&order.game_id).ok_or_else(|| {
        StoreError::Corrupt(format!("order {} names unknown game {}", order.id, order.game_id))
    })?;
    Ok(Outgoing {
        game: usize::from(game.0),
        msg_id: message_id(&order.id, generation),
        payload: Bytes::copy_from_slice(order.id.as_str().as_bytes()),
    })
}

/// WARNING: persisted (in the stream's deduplication window, across deployments).
pub(crate) fn message_id(id: &OrderId, generation: u64) -> String {
    match generation {
        0 => id.as_str().to_string(),
        n => format!("{id}:r{n}"),
    }
}

/// The order id a message carries, if it is one.
pub(crate) fn order_id(payload: &[u8]) -> Option<OrderId> {
    OrderId::parse(std::str::from_utf8(payload).ok()?).ok()
}
