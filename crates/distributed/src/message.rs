//! What a delivery message is: the order id as payload, the order id as `Nats-Msg-Id`, on the
//! order's game subject. The order itself stays in Redis, which is the truth about its state;
//! the message only says "this order is waiting for its game".
//!
//! WARNING: persisted — messages in a stream outlive a deployment; changing the payload breaks
//! the queue's reading of the stored ones.

use bytes::Bytes;
use hongbao_jetstream::Outgoing;
use hongbao_store::{CampaignBinding, Order, OrderId, StoreError};

/// The message that queues `order` for delivery.
pub(crate) fn outgoing(binding: &CampaignBinding, order: &Order) -> Result<Outgoing, StoreError> {
    let game = binding.game_index(&order.game_id).ok_or_else(|| {
        StoreError::Corrupt(format!("order {} names unknown game {}", order.id, order.game_id))
    })?;
    Ok(Outgoing {
        game: usize::from(game.0),
        msg_id: order.id.as_str().to_string(),
        payload: Bytes::copy_from_slice(order.id.as_str().as_bytes()),
    })
}

/// The order id a message carries, if it is one.
pub(crate) fn order_id(payload: &[u8]) -> Option<OrderId> {
    OrderId::parse(std::str::from_utf8(payload).ok()?).ok()
}
