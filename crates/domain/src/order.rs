//! Orders: the should-send record of an accepted claim, and its delivery state machine.
//!
//! An order's id is derived from the claim's business key (campaign, user, coupon), so a retried
//! or resent claim names the same order on every node without coordination, and the id doubles
//! as the game side's delivery serial (a redelivery is recognised there as a duplicate).
//!
//! States and transitions ([`transition`] is the whole graph; anything else is illegal):
//!
//! | from                                  | event            | to           |
//! | ------------------------------------- | ---------------- | ------------ |
//! | queued, retrying, delivering          | `StartDelivery`  | delivering (delivering → delivering: redelivery after a crash) |
//! | delivering                            | `Delivered`      | delivered    |
//! | delivering                            | `Retry`          | retrying     |
//! | delivering                            | `Fail`           | dead         |
//! | queued, retrying, delivering, held    | `Expire`         | expired      |
//! | queued                                | `Hold`           | held         |
//! | held                                  | `Release`        | queued       |
//! | held                                  | `Reject`         | dead         |
//! | delivered, dead, expired              | `Resend`         | queued (reconciliation, operators) |
//!
//! Illegal transitions are programmer errors: [`transition`] and [`Order::apply`] return `None`
//! and callers `assert!`. Stores may persist fewer states than exist (the embedded store never
//! persists `delivering`: its in-memory lease is that state), which is why the graph allows
//! `delivering → delivering`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::role::{RoleId, ZoneId};

/// Domain-separation label of order ids: a hash computed for anything else never collides with
/// an order id by construction. WARNING: changing it (or [`OrderId::derive`]'s encoding) gives
/// every resent claim a new id, i.e. a second order and a second delivery.
const ORDER_ID_LABEL: &[u8] = b"hongbao/order-id/v1";

/// Bytes of an order id (128 bits of SHA-256: collisions are out of reach at any campaign size).
pub const ORDER_ID_BYTES: usize = 16;
/// Characters of an order id in its text form (lowercase hex).
pub const ORDER_ID_LEN: usize = 2 * ORDER_ID_BYTES;

/// The id of an order: 32 lowercase hex characters, derived from (campaign, user, coupon).
///
/// Ordering is byte order of the text, which equals byte order of [`OrderId::to_bytes`]: a store
/// keyed by the raw bytes lists orders in the same order as their ids sort as strings.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId([u8; ORDER_ID_LEN]);

/// Text that is not an order id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an order id is {ORDER_ID_LEN} lowercase hex characters")]
pub struct InvalidOrderId;

const HEX: &[u8; 16] = b"0123456789abcdef";

impl OrderId {
    /// The smallest and largest ids: bounds for range scans.
    pub const MIN: OrderId = OrderId([b'0'; ORDER_ID_LEN]);
    pub const MAX: OrderId = OrderId([b'f'; ORDER_ID_LEN]);

    /// The order id of the claim of coupon `coupon_id` (e.g. `swipe-3`, [`crate::Coupon::id`])
    /// by `user` in `campaign_id`. Each part is length-prefixed, so no two different keys hash
    /// the same input.
    pub fn derive(campaign_id: &str, user: u64, coupon_id: &str) -> OrderId {
        let mut hasher = Sha256::new();
        hasher.update(ORDER_ID_LABEL);
        hasher.update((campaign_id.len() as u64).to_be_bytes());
        hasher.update(campaign_id.as_bytes());
        hasher.update(user.to_be_bytes());
        hasher.update((coupon_id.len() as u64).to_be_bytes());
        hasher.update(coupon_id.as_bytes());
        let digest = hasher.finalize();
        let mut raw = [0u8; ORDER_ID_BYTES];
        raw.copy_from_slice(&digest[..ORDER_ID_BYTES]);
        OrderId::from_bytes(raw)
    }

    /// Parses untrusted text (a URL segment): exactly 32 characters `[0-9a-f]`.
    pub fn parse(text: &str) -> Result<OrderId, InvalidOrderId> {
        let bytes: [u8; ORDER_ID_LEN] = text.as_bytes().try_into().map_err(|_| InvalidOrderId)?;
        if bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
            Ok(OrderId(bytes))
        } else {
            Err(InvalidOrderId)
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (`from_bytes`, `parse`).
        std::str::from_utf8(&self.0).expect("an order id is ASCII hex")
    }

    /// The 16 raw bytes (the compact form stores use as keys).
    pub fn to_bytes(&self) -> [u8; ORDER_ID_BYTES] {
        let mut raw = [0u8; ORDER_ID_BYTES];
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = (nibble(self.0[2 * i]) << 4) | nibble(self.0[2 * i + 1]);
        }
        raw
    }

    pub fn from_bytes(raw: [u8; ORDER_ID_BYTES]) -> OrderId {
        let mut text = [0u8; ORDER_ID_LEN];
        for (i, byte) in raw.iter().enumerate() {
            text[2 * i] = HEX[usize::from(byte >> 4)];
            text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        OrderId(text)
    }
}

fn nibble(hex: u8) -> u8 {
    match hex {
        b'0'..=b'9' => hex - b'0',
        b'a'..=b'f' => hex - b'a' + 10,
        _ => unreachable!("order ids hold lowercase hex only"),
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId({})", self.as_str())
    }
}

impl Serialize for OrderId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        OrderId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where an order is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, waiting in its game's delivery queue.
    Queued,
    /// A worker is calling the game side.
    Delivering,
    /// The last attempt failed transiently; waiting for the next one.
    Retrying,
    /// High-value order waiting for review; not in the delivery queue.
    Held,
    /// The game side applied it.
    Delivered,
    /// Failed permanently (see `last_error`).
    Dead,
    /// The delivery deadline passed before it was delivered.
    Expired,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Queued,
        OrderStatus::Delivering,
        OrderStatus::Retrying,
        OrderStatus::Held,
        OrderStatus::Delivered,
        OrderStatus::Dead,
        OrderStatus::Expired,
    ];

    /// Final states change only through [`OrderEvent::Resend`].
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Dead | OrderStatus::Expired)
    }

    /// States in which the order has an entry in its game's delivery queue.
    pub fn is_in_queue(self) -> bool {
        matches!(self, OrderStatus::Queued | OrderStatus::Delivering | OrderStatus::Retrying)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Queued => "queued",
            OrderStatus::Delivering => "delivering",
            OrderStatus::Retrying => "retrying",
            OrderStatus::Held => "held",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Dead => "dead",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to an order. The data rides along for [`Order::apply`];
/// [`transition`] looks at the kind only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    /// A worker starts (or, after a crash, restarts) a delivery attempt.
    StartDelivery,
    /// The game side applied it (or reported it a duplicate: applied before).
    Delivered,
    /// A transient failure: try again at `ready_at_ms`.
    Retry { ready_at_ms: u64, error: String },
    /// A permanent failure.
    Fail { reason: String },
    /// The delivery deadline passed.
    Expire,
    /// Put aside for review (high value).
    Hold,
    /// Review passed: back into the queue, due at `ready_at_ms`.
    Release { ready_at_ms: u64 },
    /// Review refused it.
    Reject { reason: String },
    /// Reconciliation or an operator sends it again, due at `ready_at_ms`, with a new deadline.
    Resend { ready_at_ms: u64, deliver_by_ms: u64 },
}

/// The state machine: the status after `event`, or `None` if the transition is illegal.
pub fn transition(from: OrderStatus, event: &OrderEvent) -> Option<OrderStatus> {
    use OrderEvent as E;
    use OrderStatus as S;
    let to = match (from, event) {
        (S::Queued | S::Retrying | S::Delivering, E::StartDelivery) => S::Delivering,
        (S::Delivering, E::Delivered) => S::Delivered,
        (S::Delivering, E::Retry { .. }) => S::Retrying,
        (S::Delivering, E::Fail { .. }) => S::Dead,
        (S::Queued | S::Retrying | S::Delivering | S::Held, E::Expire) => S::Expired,
        (S::Queued, E::Hold) => S::Held,
        (S::Held, E::Release { .. }) => S::Queued,
        (S::Held, E::Reject { .. }) => S::Dead,
        (S::Delivered | S::Dead | S::Expired, E::Resend { .. }) => S::Queued,
        _ => return None,
    };
    Some(to)
}

/// Longest `last_error` kept; longer reasons are cut at a character boundary. Game sides can
/// return anything; an order row must stay small.
pub const LAST_ERROR_MAX_LEN: usize = 512;

/// An accepted claim: what to deliver to whom, and how far delivery got. Times are Unix ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub campaign_id: String,
    pub user: u64,
    /// The redeemed coupon, [`crate::Coupon::id`] (e.g. `swipe-3`).
    pub coupon_id: String,
    pub gift_id: String,
    pub game_id: String,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
    pub status: OrderStatus,
    pub created_at_ms: u64,
    /// Undelivered at this time, the order expires.
    pub deliver_by_ms: u64,
    pub updated_at_ms: u64,
    /// Delivery attempts that got an answer (delivered, retry, permanent failure).
    pub attempts: u32,
    pub last_error: Option<String>,
    /// `Some` exactly when the status is `delivered`.
    pub delivered_at_ms: Option<u64>,
    /// `Some` exactly while the order has a delivery-queue entry (queued, delivering,
    /// retrying): when it is (next) due. Also the entry's position in the queue.
    pub ready_at_ms: Option<u64>,
}

impl Order {
    /// The order after `event` at `now_ms`, or `None` if the transition is illegal.
    pub fn apply(&self, event: &OrderEvent, now_ms: u64) -> Option<Order> {
        let status = transition(self.status, event)?;
        let mut next = self.clone();
        next.status = status;
        next.updated_at_ms = now_ms;
        match event {
            OrderEvent::StartDelivery => {}
            OrderEvent::Delivered => {
                next.attempts = next.attempts.saturating_add(1);
                next.delivered_at_ms = Some(now_ms);
                next.ready_at_ms = None;
            }
            OrderEvent::Retry { ready_at_ms, error } => {
                next.attempts = next.attempts.saturating_add(1);
                next.last_error = Some(truncate(error));
                next.ready_at_ms = Some(*ready_at_ms);
            }
            OrderEvent::Fail { reason } => {
                next.attempts = next.attempts.saturating_add(1);
                next.last_error = Some(truncate(reason));
                next.ready_at_ms = None;
            }
            OrderEvent::Expire | OrderEvent::Hold => next.ready_at_ms = None,
            OrderEvent::Release { ready_at_ms } => next.ready_at_ms = Some(*ready_at_ms),
            OrderEvent::Reject { reason } => next.last_error = Some(truncate(reason)),
            OrderEvent::Resend { ready_at_ms, deliver_by_ms } => {
                next.ready_at_ms = Some(*ready_at_ms);
                next.deliver_by_ms = *deliver_by_ms;
                next.delivered_at_ms = None;
            }
        }
        debug_assert!(next.is_consistent(), "{next:?}");
        Some(next)
    }

    /// The invariants every stored order keeps: queue position iff in the queue, delivery time
    /// iff delivered, a bounded error text. Stores assert it before writing and check it after
    /// reading.
    pub fn is_consistent(&self) -> bool {
        self.ready_at_ms.is_some() == self.status.is_in_queue()
            && self.delivered_at_ms.is_some() == (self.status == OrderStatus::Delivered)
            && self.last_error.as_ref().is_none_or(|e| e.len() <= LAST_ERROR_MAX_LEN)
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= LAST_ERROR_MAX_LEN {
        return text.to_string();
    }
    let mut end = LAST_ERROR_MAX_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn order(status: OrderStatus) -> Order {
        let in_queue = status.is_in_queue();
        Order {
            id: OrderId::derive("spring-2027", 10_001, "swipe-1"),
            campaign_id: "spring-2027".into(),
            user: 10_001,
            coupon_id: "swipe-1".into(),
            gift_id: "g1".into(),
            game_id: "game1".into(),
            zone_id: ZoneId(1),
            role_id: RoleId(7),
            status,
            created_at_ms: 1_000,
            deliver_by_ms: 1_000_000,
            updated_at_ms: 1_000,
            attempts: 0,
            last_error: None,
            delivered_at_ms: (status == OrderStatus::Delivered).then_some(2_000),
            ready_at_ms: in_queue.then_some(1_000),
        }
    }

    #[test]
    fn ids_are_derived_stable_and_distinct() {
        let id = OrderId::derive("spring-2027", 10_001, "swipe-3");
        assert_eq!(id.as_str().len(), ORDER_ID_LEN);
        assert_eq!(id, OrderId::derive("spring-2027", 10_001, "swipe-3"));
        // Pinned: if this changes, resent claims create second orders.
        assert_eq!(id.as_str(), "ba53306e49b8b7d931811e53bf34243b");
        for other in [
            OrderId::derive("spring-2028", 10_001, "swipe-3"),
            OrderId::derive("spring-2027", 10_002, "swipe-3"),
            OrderId::derive("spring-2027", 10_001, "swipe-4"),
            OrderId::derive("spring-2027", 10_001, "scan-3"),
            // Length prefixes: moving a character between parts changes the id.
            OrderId::derive("spring-2027s", 10_001, "wipe-3"),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn parse_accepts_exactly_lowercase_hex_of_the_right_length() {
        let id = OrderId::derive("c", 1, "scan-1");
        assert_eq!(OrderId::parse(id.as_str()), Ok(id));
        assert_eq!(id.to_string(), id.as_str());
        for bad in [
            "",
            "0123",
            &"a".repeat(31),
            &"a".repeat(33),
            &"A".repeat(32),
            &"g".repeat(32),
            &format!("{}é", "a".repeat(30)),
            "../../../../../../../../etc/pwd",
        ] {
            assert_eq!(OrderId::parse(bad), Err(InvalidOrderId), "{bad:?}");
        }
    }

    #[test]
    fn serde_names() {
        #[derive(Serialize, Deserialize)]
        struct Wrap {
            order: Order,
        }
        let o = order(OrderStatus::Retrying);
        let text = toml::to_string(&Wrap { order: o.clone() }).expect("serialises");
        assert!(text.contains("status = \"retrying\""), "{text}");
        assert!(text.contains(&format!("id = \"{}\"", o.id)), "{text}");
        let back: Wrap = toml::from_str(&text).expect("parses");
        assert_eq!(back.order, o);
        let bad = text.replace(o.id.as_str(), "not-an-id");
        assert!(toml::from_str::<Wrap>(&bad).is_err());
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn apply_keeps_the_data_consistent() {
        let queued = order(OrderStatus::Queued);
        let delivering = queued.apply(&OrderEvent::StartDelivery, 1_500).expect("legal");
        assert_eq!(delivering.status, OrderStatus::Delivering);
        assert_eq!(delivering.attempts, 0);
        let retrying = delivering
            .apply(&OrderEvent::Retry { ready_at_ms: 9_000, error: "busy".into() }, 1_600)
            .expect("legal");
        assert_eq!(
            (retrying.status, retrying.attempts, retrying.ready_at_ms),
            (OrderStatus::Retrying, 1, Some(9_000))
        );
        assert_eq!(retrying.last_error.as_deref(), Some("busy"));
        let delivered = retrying
            .apply(&OrderEvent::StartDelivery, 9_000)
            .and_then(|o| o.apply(&OrderEvent::Delivered, 9_100))
            .expect("legal");
        assert_eq!(delivered.delivered_at_ms, Some(9_100));
        assert_eq!((delivered.ready_at_ms, delivered.attempts), (None, 2));
        assert!(delivered.apply(&OrderEvent::Delivered, 9_200).is_none());
        let resent = delivered
            .apply(&OrderEvent::Resend { ready_at_ms: 10_000, deliver_by_ms: 99_000 }, 10_000)
            .expect("legal");
        assert_eq!(resent.status, OrderStatus::Queued);
        assert_eq!((resent.delivered_at_ms, resent.deliver_by_ms), (None, 99_000));
        let long = "é".repeat(LAST_ERROR_MAX_LEN);
        let dead = resent
            .apply(&OrderEvent::StartDelivery, 10_001)
            .and_then(|o| o.apply(&OrderEvent::Fail { reason: long }, 10_002))
            .expect("legal");
        assert!(dead.is_consistent());
        assert!(dead.last_error.as_ref().is_some_and(|e| e.len() <= LAST_ERROR_MAX_LEN));
    }

    /// The graph as listed in the module doc, written out independently of `transition`.
    const EDGES: &[(OrderStatus, &str, OrderStatus)] = {
        use OrderStatus::*;
        &[
            (Queued, "start", Delivering),
            (Retrying, "start", Delivering),
            (Delivering, "start", Delivering),
            (Delivering, "delivered", Delivered),
            (Delivering, "retry", Retrying),
            (Delivering, "fail", Dead),
            (Queued, "expire", Expired),
            (Retrying, "expire", Expired),
            (Delivering, "expire", Expired),
            (Held, "expire", Expired),
            (Queued, "hold", Held),
            (Held, "release", Queued),
            (Held, "reject", Dead),
            (Delivered, "resend", Queued),
            (Dead, "resend", Queued),
            (Expired, "resend", Queued),
        ]
    };

    fn kind(event: &OrderEvent) -> &'static str {
        match event {
            OrderEvent::StartDelivery => "start",
            OrderEvent::Delivered => "delivered",
            OrderEvent::Retry { .. } => "retry",
            OrderEvent::Fail { .. } => "fail",
            OrderEvent::Expire => "expire",
            OrderEvent::Hold => "hold",
            OrderEvent::Release { .. } => "release",
            OrderEvent::Reject { .. } => "reject",
            OrderEvent::Resend { .. } => "resend",
        }
    }

    fn event() -> impl Strategy<Value = OrderEvent> {
        prop_oneof![
            Just(OrderEvent::StartDelivery),
            Just(OrderEvent::Delivered),
            (0u64..100_000, ".{0,8}")
                .prop_map(|(ready_at_ms, error)| OrderEvent::Retry { ready_at_ms, error }),
            ".{0,8}".prop_map(|reason| OrderEvent::Fail { reason }),
            Just(OrderEvent::Expire),
            Just(OrderEvent::Hold),
            (0u64..100_000).prop_map(|ready_at_ms| OrderEvent::Release { ready_at_ms }),
            ".{0,8}".prop_map(|reason| OrderEvent::Reject { reason }),
            (0u64..100_000, 0u64..100_000).prop_map(|(ready_at_ms, deliver_by_ms)| {
                OrderEvent::Resend { ready_at_ms, deliver_by_ms }
            }),
        ]
    }

    #[test]
    fn every_state_can_reach_a_final_state_and_final_states_only_leave_by_resend() {
        for status in OrderStatus::ALL {
            let leaves: Vec<&str> =
                EDGES.iter().filter(|(from, _, _)| *from == status).map(|(_, e, _)| *e).collect();
            if status.is_final() {
                assert_eq!(leaves, vec!["resend"], "{status}");
            } else {
                // Expiry is the deadline's guarantee: nothing waits forever.
                assert!(leaves.contains(&"expire"), "{status} cannot expire");
            }
        }
    }

    proptest! {
        /// Random event sequences: every applied transition is an edge of the documented graph,
        /// every refused one is not, the order stays consistent, and `delivered` is reached only
        /// from `delivering`.
        #[test]
        fn random_events_never_leave_the_graph(
            start in 0usize..7,
            events in prop::collection::vec(event(), 0..64),
        ) {
            let mut current = order(OrderStatus::ALL[start]);
            let mut now_ms = 2_000;
            for event in events {
                now_ms += 1;
                let edge = EDGES.iter().find(|(from, e, _)| *from == current.status && *e == kind(&event));
                match current.apply(&event, now_ms) {
                    Some(next) => {
                        let edge = edge.copied();
                        prop_assert_eq!(edge.map(|(_, _, to)| to), Some(next.status), "{:?} {:?}", current.status, event);
                        prop_assert!(next.is_consistent(), "{:?}", next);
                        prop_assert_eq!(next.updated_at_ms, now_ms);
                        prop_assert!(next.attempts >= current.attempts);
                        if current.status.is_final() {
                            let resend = matches!(event, OrderEvent::Resend { .. });
                            prop_assert!(resend);
                            prop_assert_eq!(next.status, OrderStatus::Queued);
                        }
                        if next.status == OrderStatus::Delivered {
                            prop_assert_eq!(current.status, OrderStatus::Delivering);
                        }
                        prop_assert_eq!(transition(current.status, &event), Some(next.status));
                        current = next;
                    }
                    None => {
                        prop_assert!(edge.is_none(), "{:?} refused {:?}", current.status, event);
                        prop_assert_eq!(transition(current.status, &event), None);
                    }
                }
            }
        }

        #[test]
        fn ids_round_trip_through_bytes_and_text(campaign in "[a-z0-9-]{1,16}", user in any::<u64>(), coupon in "[a-z_]{1,6}-[0-9]{1,3}") {
            let id = OrderId::derive(&campaign, user, &coupon);
            prop_assert_eq!(OrderId::from_bytes(id.to_bytes()), id);
            prop_assert_eq!(OrderId::parse(id.as_str()), Ok(id));
        }

        #[test]
        fn byte_order_equals_text_order(a in any::<[u8; 16]>(), b in any::<[u8; 16]>()) {
            let (x, y) = (OrderId::from_bytes(a), OrderId::from_bytes(b));
            prop_assert_eq!(a.cmp(&b), x.cmp(&y));
            prop_assert_eq!(a.cmp(&b), x.as_str().cmp(y.as_str()));
        }
    }
}
