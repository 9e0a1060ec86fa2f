//! The persisted layout of the embedded store: keyspace names, key and value encodings.
//!
//! # WARNING: changing anything in this file breaks existing data
//!
//! Stores written by one layout are read by the next. Renaming a keyspace, reordering key
//! parts, changing an integer's width or byte order, renumbering a channel or status code,
//! changing a channel's `as_str()` (it is part of the budget key) or an order value's field
//! order silently resets or corrupts limits, budgets, stock, orders and queues of a running
//! campaign. Add new keyspaces, new key prefixes or a new value version byte instead; a real
//! change needs a migration. Byte-level tests below pin every encoding.
//!
//! Integers in keys are big-endian (so keys sort numerically); in values little-endian. `‖` is
//! concatenation. An order id in a key is its 16 raw bytes ([`OrderId::to_bytes`]), which sort
//! like the id's hex text.
//!
//! | keyspace      | key                                              | value |
//! | ------------- | ------------------------------------------------ | ----- |
//! | `grants`      | user `u64` ‖ channel code `u8` (9 bytes)         | coupons granted to that user on that channel, `u32` (= the last serial) |
//! | `counters`    | `budget/<channel>` (`budget/swipe`, `budget/ar_map`, `budget/scan`) | coupons granted on that channel so far, `u64` |
//! | `counters`    | `stock/<gift id>`                                | units of the gift taken so far, `u64` |
//! | `counters`    | `hv_user/` ‖ user `u64` ‖ UTC day `u64` (24 bytes) | high-value claims of that user in that day, `u32` (added with the high-value rules; absent in older stores = 0) |
//! | `counters`    | `hv_hour/` ‖ UTC hour `u64` (16 bytes)         | high-value cents accepted in that hour, `u64` (added with the high-value rules; absent = 0) |
//! | `counters`    | `incarnation`                                    | times the store was opened, `u64` (part of lease ids) |
//! | `orders`      | order id (16)                                    | the order, see [`encode_order`] (the should-send record; also the redemption record of its coupon) |
//! | `user_orders` | user `u64` ‖ order id (24)                       | empty: index for "my orders" |
//! | `user_gifts`  | user `u64` ‖ gift id bytes                       | orders of that gift the user claimed, `u32` |
//! | `queue`       | game id length `u8` ‖ game id ‖ ready_at_ms `u64` ‖ order id | empty: one entry per order waiting for delivery |
//! | `sent`        | order id (16) ‖ delivered_at_ms `u64` (24)       | empty: the actual-send log, append only (one row per delivery) |
//! | `idempotency` | user `u64` ‖ key bytes (1..=255)                 | version `1` ‖ expires_at_ms `u64` ‖ fingerprint (32) ‖ outcome code `u8` ‖ order id (16) = 58 bytes |
//!
//! Channel codes: swipe = 1, ar_map = 2, scan = 3. Status codes: queued = 1, delivering = 2,
//! retrying = 3, held = 4, delivered = 5, dead = 6, expired = 7. Idempotency outcome codes:
//! accepted = 1, replayed = 2, coupon_already_redeemed = 3. Code 0 is never used.
//!
//! Invariants at every commit point (each change is one atomic batch):
//! - a `grants` row is written only with its budget counter: the sum of a channel's rows equals
//!   its `budget/<channel>` counter;
//! - an order row is written with its `user_orders` row, its `user_gifts` count and its
//!   `stock/<gift id>` counter, so counters equal the number of orders per gift and per
//!   (user, gift); an order of a high-value gift also with its `hv_user/` and `hv_hour/` rows
//!   (of the order's `created_at_ms`), which are read by point look-ups only, never scanned,
//!   so the `counters` keyspace's other readers never meet them;
//! - an order has a `queue` entry exactly when its status is queued or retrying (`delivering` is
//!   never persisted), at the key made of its game and its `ready_at_ms`;
//! - a `sent` row is written in the batch that makes its order `delivered`.
//!
//! Idempotency rows expire after 24 h: the writer ignores and overwrites expired rows, and a
//! compaction filter drops them when their table is compacted, so the keyspace holds about one
//! day of keys plus what compaction has not reached yet.

use hongbao_domain::{Order, OrderId, OrderStatus, RoleId, ZoneId};

use crate::ledger::{IdempotencyRecord, RecordedKind};
use hongbao_domain::Channel;

use crate::StoreError;

pub(crate) const GRANTS_KEYSPACE: &str = "grants";
pub(crate) const COUNTERS_KEYSPACE: &str = "counters";
pub(crate) const ORDERS_KEYSPACE: &str = "orders";
pub(crate) const USER_ORDERS_KEYSPACE: &str = "user_orders";
pub(crate) const USER_GIFTS_KEYSPACE: &str = "user_gifts";
pub(crate) const QUEUE_KEYSPACE: &str = "queue";
pub(crate) const SENT_KEYSPACE: &str = "sent";
pub(crate) const IDEMPOTENCY_KEYSPACE: &str = "idempotency";
pub(crate) const INCARNATION_KEY: &str = "incarnation";

/// Version byte of order values.
/// Orders written before zone and role ids were typed: both as decimal text. Still read.
const ORDER_V1: u8 = 1;
const ORDER_V2: u8 = 2;
/// Version byte of idempotency values.
const IDEMPOTENCY_V1: u8 = 1;
pub(crate) const IDEMPOTENCY_VALUE_LEN: usize = 1 + 8 + 32 + 1 + 16;

/// `grants` key: user (big-endian) ‖ channel code.
pub(crate) type GrantKey = [u8; 9];

pub(crate) fn channel_code(channel: Channel) -> u8 {
    match channel {
        Channel::Swipe => 1,
        Channel::ArMap => 2,
        Channel::Scan => 3,
    }
}

pub(crate) fn grant_key(user: u64, channel: Channel) -> GrantKey {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&user.to_be_bytes());
    key[8] = channel_code(channel);
    key
}

pub(crate) fn encode_count(count: u32) -> [u8; 4] {
    count.to_le_bytes()
}

pub(crate) fn decode_count(key: &GrantKey, bytes: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "grants row {key:02x?} holds {} bytes, expected a 4-byte count",
            bytes.len()
        ))
    })?;
    Ok(u32::from_le_bytes(bytes))
}

pub(crate) fn budget_key(channel: Channel) -> String {
    format!("budget/{}", channel.as_str())
}

pub(crate) fn encode_budget(granted: u64) -> [u8; 8] {
    granted.to_le_bytes()
}

pub(crate) fn decode_budget(channel: Channel, bytes: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "counter {} holds {} bytes, expected an 8-byte count",
            budget_key(channel),
            bytes.len()
        ))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

pub(crate) fn stock_key(gift_id: &str) -> String {
    format!("stock/{gift_id}")
}

/// `counters` key of a user's high-value claims in a UTC day.
pub(crate) fn high_value_user_key(user: u64, day: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(b"hv_user/");
    key[8..16].copy_from_slice(&user.to_be_bytes());
    key[16..].copy_from_slice(&day.to_be_bytes());
    key
}

/// `counters` key of the high-value cents accepted in a UTC hour.
pub(crate) fn high_value_hour_key(hour: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(b"hv_hour/");
    key[8..].copy_from_slice(&hour.to_be_bytes());
    key
}

pub(crate) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_le_bytes()
}

pub(crate) fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!("{what} holds {} bytes, expected an 8-byte u64", bytes.len()))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

pub(crate) fn decode_u32(what: &str, bytes: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!("{what} holds {} bytes, expected a 4-byte u32", bytes.len()))
    })?;
    Ok(u32::from_le_bytes(bytes))
}

pub(crate) fn order_key(id: &OrderId) -> [u8; 16] {
    id.to_bytes()
}

pub(crate) fn decode_order_id(bytes: &[u8]) -> Result<OrderId, StoreError> {
    let raw: [u8; 16] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!("an order id has {} bytes, expected 16", bytes.len()))
    })?;
    Ok(OrderId::from_bytes(raw))
}

pub(crate) fn user_order_key(user: u64, id: &OrderId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&user.to_be_bytes());
    key[8..].copy_from_slice(&id.to_bytes());
    key
}

pub(crate) fn user_gift_key(user: u64, gift_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + gift_id.len());
    key.extend_from_slice(&user.to_be_bytes());
    key.extend_from_slice(gift_id.as_bytes());
    key
}

/// All keys of one game's queue start with this; the length byte keeps `ab` and `abc` apart.
pub(crate) fn queue_prefix(game_id: &str) -> Vec<u8> {
    assert!((1..=usize::from(u8::MAX)).contains(&game_id.len()), "game ids are bound-checked");
    let mut key = Vec::with_capacity(1 + game_id.len() + 24);
    key.push(game_id.len() as u8);
    key.extend_from_slice(game_id.as_bytes());
    key
}

pub(crate) fn queue_key(game_id: &str, ready_at_ms: u64, id: &OrderId) -> Vec<u8> {
    let mut key = queue_prefix(game_id);
    key.extend_from_slice(&ready_at_ms.to_be_bytes());
    key.extend_from_slice(&id.to_bytes());
    key
}

/// The smallest key of `game_id`'s queue with `ready_at_ms` (a scan bound).
pub(crate) fn queue_bound(game_id: &str, ready_at_ms: u64) -> Vec<u8> {
    let mut key = queue_prefix(game_id);
    key.extend_from_slice(&ready_at_ms.to_be_bytes());
    key
}

/// The first key after every key of `game_id`'s queue.
pub(crate) fn queue_end(game_id: &str) -> Vec<u8> {
    let mut key = queue_prefix(game_id);
    key.extend_from_slice(&[0xff; 25]);
    key
}

/// Splits a queue key into (game id, ready_at_ms, order id).
pub(crate) fn decode_queue_key(key: &[u8]) -> Result<(&str, u64, OrderId), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("queue key {key:02x?} has a bad shape"));
    let (&len, rest) = key.split_first().ok_or_else(corrupt)?;
    let len = usize::from(len);
    if len == 0 || rest.len() != len + 24 {
        return Err(corrupt());
    }
    let game = std::str::from_utf8(&rest[..len]).map_err(|_| corrupt())?;
    let ready_at_ms = u64::from_be_bytes(rest[len..len + 8].try_into().map_err(|_| corrupt())?);
    let id = decode_order_id(&rest[len + 8..])?;
    Ok((game, ready_at_ms, id))
}

pub(crate) fn sent_key(id: &OrderId, delivered_at_ms: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&id.to_bytes());
    key[16..].copy_from_slice(&delivered_at_ms.to_be_bytes());
    key
}

pub(crate) fn decode_sent_key(key: &[u8]) -> Result<(OrderId, u64), StoreError> {
    if key.len() != 24 {
        return Err(StoreError::Corrupt(format!("sent key {key:02x?} is not 24 bytes")));
    }
    let id = decode_order_id(&key[..16])?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&key[16..]);
    Ok((id, u64::from_be_bytes(at)))
}

pub(crate) fn idempotency_key(user: u64, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&user.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn kind_code(kind: RecordedKind) -> u8 {
    match kind {
        RecordedKind::Accepted => 1,
        RecordedKind::Replayed => 2,
        RecordedKind::CouponAlreadyRedeemed => 3,
    }
}

pub(crate) fn encode_idempotency(record: &IdempotencyRecord) -> [u8; IDEMPOTENCY_VALUE_LEN] {
    let mut out = [0u8; IDEMPOTENCY_VALUE_LEN];
    out[0] = IDEMPOTENCY_V1;
    out[1..9].copy_from_slice(&record.expires_at_ms.to_le_bytes());
    out[9..41].copy_from_slice(&record.fingerprint);
    out[41] = kind_code(record.kind);
    out[42..].copy_from_slice(&record.order_id.to_bytes());
    out
}

/// The expiry of an idempotency value, for the compaction filter; `None` if it is not one.
pub(crate) fn idempotency_expiry(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != IDEMPOTENCY_VALUE_LEN || bytes[0] != IDEMPOTENCY_V1 {
        return None;
    }
    Some(u64::from_le_bytes(bytes[1..9].try_into().ok()?))
}

pub(crate) fn decode_idempotency(bytes: &[u8]) -> Result<IdempotencyRecord, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("idempotency value {bytes:02x?} is malformed"));
    let expires_at_ms = idempotency_expiry(bytes).ok_or_else(corrupt)?;
    let kind = match bytes[41] {
        1 => RecordedKind::Accepted,
        2 => RecordedKind::Replayed,
        3 => RecordedKind::CouponAlreadyRedeemed,
        _ => return Err(corrupt()),
    };
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(&bytes[9..41]);
    Ok(IdempotencyRecord {
        expires_at_ms,
        fingerprint,
        kind,
        order_id: decode_order_id(&bytes[42..])?,
    })
}

fn status_code(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Queued => 1,
        OrderStatus::Delivering => 2,
        OrderStatus::Retrying => 3,
        OrderStatus::Held => 4,
        OrderStatus::Delivered => 5,
        OrderStatus::Dead => 6,
        OrderStatus::Expired => 7,
    }
}

fn status_of_code(code: u8) -> Option<OrderStatus> {
    OrderStatus::ALL.into_iter().find(|s| status_code(*s) == code)
}

const HAS_DELIVERED_AT: u8 = 1;
const HAS_READY_AT: u8 = 2;
const HAS_LAST_ERROR: u8 = 4;

/// Order value, version 2 (the id is the key):
///
/// ```text
/// version u8 = 2 ‖ status u8 ‖ flags u8 (1 delivered_at, 2 ready_at, 4 last_error)
/// ‖ user u64 ‖ created_at_ms u64 ‖ deliver_by_ms u64 ‖ updated_at_ms u64 ‖ attempts u32
/// ‖ [delivered_at_ms u64] ‖ [ready_at_ms u64] ‖ zone_id u16 ‖ role_id u64
/// ‖ campaign_id, coupon_id, gift_id, game_id: each length u8 ‖ UTF-8
/// ‖ [last_error: length u16 ‖ UTF-8]
/// ```
///
/// Version 1 had no zone and role fields and instead a fifth and sixth string after `game_id`:
/// the zone and role ids as decimal text. Decoding still accepts it.
///
/// Panics on an order no claim produces (inconsistent, or an id longer than 255 bytes): the
/// callers validated it, so that is a bug, and it must not reach the disk.
pub(crate) fn encode_order(order: &Order) -> Vec<u8> {
    assert!(order.is_consistent(), "refusing to persist an inconsistent order: {order:?}");
    let strings = [&order.campaign_id, &order.coupon_id, &order.gift_id, &order.game_id];
    let mut out = Vec::with_capacity(
        3 + 36 + 16 + 10 + strings.iter().map(|s| 1 + s.len()).sum::<usize>() + 2 + 64,
    );
    let flags = if order.delivered_at_ms.is_some() { HAS_DELIVERED_AT } else { 0 }
        | if order.ready_at_ms.is_some() { HAS_READY_AT } else { 0 }
        | if order.last_error.is_some() { HAS_LAST_ERROR } else { 0 };
    out.extend_from_slice(&[ORDER_V2, status_code(order.status), flags]);
    for value in [order.user, order.created_at_ms, order.deliver_by_ms, order.updated_at_ms] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&order.attempts.to_le_bytes());
    for value in [order.delivered_at_ms, order.ready_at_ms].into_iter().flatten() {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&order.zone_id.0.to_le_bytes());
    out.extend_from_slice(&order.role_id.0.to_le_bytes());
    for text in strings {
        let len = u8::try_from(text.len()).expect("order ids and targets are at most 255 bytes");
        out.push(len);
        out.extend_from_slice(text.as_bytes());
    }
    if let Some(error) = &order.last_error {
        let len = u16::try_from(error.len()).expect("last_error is bounded");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(error.as_bytes());
    }
    out
}

/// Reads a value front to back; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }

    fn text(&mut self, len: usize) -> Option<String> {
        std::str::from_utf8(self.take(len)?).ok().map(str::to_string)
    }

    fn text8(&mut self) -> Option<String> {
        let len = usize::from(self.u8()?);
        self.text(len)
    }
}

pub(crate) fn decode_order(id: OrderId, bytes: &[u8]) -> Result<Order, StoreError> {
    decode_order_fields(id, bytes).ok_or_else(|| {
        StoreError::Corrupt(format!("order {id} has a malformed value ({} bytes)", bytes.len()))
    })
}

fn decode_order_fields(id: OrderId, bytes: &[u8]) -> Option<Order> {
    let mut c = Cursor { bytes, at: 0 };
    let version = c.u8()?;
    if version != ORDER_V1 && version != ORDER_V2 {
        return None;
    }
    let status = status_of_code(c.u8()?)?;
    let flags = c.u8()?;
    if flags & !(HAS_DELIVERED_AT | HAS_READY_AT | HAS_LAST_ERROR) != 0 {
        return None;
    }
    let (user, created_at_ms, deliver_by_ms, updated_at_ms) =
        (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
    let attempts = c.u32()?;
    let delivered_at_ms = if flags & HAS_DELIVERED_AT != 0 { Some(c.u64()?) } else { None };
    let ready_at_ms = if flags & HAS_READY_AT != 0 { Some(c.u64()?) } else { None };
    let typed = if version == ORDER_V2 { Some((c.u16()?, c.u64()?)) } else { None };
    let (campaign_id, coupon_id, gift_id) = (c.text8()?, c.text8()?, c.text8()?);
    let game_id = c.text8()?;
    let (zone_id, role_id) = match typed {
        Some(ids) => ids,
        None => (c.text8()?.parse().ok()?, c.text8()?.parse().ok()?),
    };
    let (zone_id, role_id) = (ZoneId(zone_id), RoleId(role_id));
    let last_error = if flags & HAS_LAST_ERROR != 0 {
        let len = usize::from(c.u16()?);
        Some(c.text(len)?)
    } else {
        None
    };
    if c.at != bytes.len() {
        return None;
    }
    let order = Order {
        id,
        campaign_id,
        user,
        coupon_id,
        gift_id,
        game_id,
        zone_id,
        role_id,
        status,
        created_at_ms,
        deliver_by_ms,
        updated_at_ms,
        attempts,
        last_error,
        delivered_at_ms,
        ready_at_ms,
    };
    order.is_consistent().then_some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the bytes: if this test needs changing, so does every store on disk.
    #[test]
    fn layout_bytes_are_pinned() {
        assert_eq!(grant_key(0x0102_0304_0506_0708, Channel::Swipe), [1, 2, 3, 4, 5, 6, 7, 8, 1]);
        assert_eq!(grant_key(7, Channel::ArMap)[8], 2);
        assert_eq!(grant_key(7, Channel::Scan)[8], 3);
        assert_eq!(encode_count(0x0102_0304), [4, 3, 2, 1]);
        let hv_user = high_value_user_key(1, 2);
        assert_eq!(&hv_user[..8], b"hv_user/");
        assert_eq!(hv_user[8..], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(high_value_hour_key(3), *b"hv_hour/\0\0\0\0\0\0\0\x03");
        assert_eq!(budget_key(Channel::Swipe), "budget/swipe");
        assert_eq!(budget_key(Channel::ArMap), "budget/ar_map");
        assert_eq!(budget_key(Channel::Scan), "budget/scan");
        assert_eq!(encode_budget(1), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(GRANTS_KEYSPACE, "grants");
        assert_eq!(COUNTERS_KEYSPACE, "counters");
    }

    #[test]
    fn values_round_trip_and_bad_lengths_are_corrupt() {
        let key = grant_key(42, Channel::Scan);
        assert_eq!(decode_count(&key, &encode_count(3)), Ok(3));
        assert!(matches!(decode_count(&key, &[1, 2, 3]), Err(StoreError::Corrupt(_))));
        assert_eq!(decode_budget(Channel::Scan, &encode_budget(500)), Ok(500));
        assert!(matches!(decode_budget(Channel::Scan, &[0; 4]), Err(StoreError::Corrupt(_))));
    }

    fn order() -> Order {
        Order {
            id: OrderId::from_bytes([0xab; 16]),
            campaign_id: "c".into(),
            user: 0x0102_0304_0506_0708,
            coupon_id: "swipe-1".into(),
            gift_id: "g".into(),
            game_id: "gm".into(),
            zone_id: ZoneId(3),
            role_id: RoleId(1 << 40),
            status: OrderStatus::Retrying,
            created_at_ms: 1,
            deliver_by_ms: 2,
            updated_at_ms: 3,
            attempts: 4,
            last_error: Some("busy".into()),
            delivered_at_ms: None,
            ready_at_ms: Some(5),
        }
    }

    /// Pins the claim keyspaces' bytes: if this test needs changing, so does every store.
    #[test]
    fn claim_layout_bytes_are_pinned() {
        let names = [
            ORDERS_KEYSPACE,
            USER_ORDERS_KEYSPACE,
            USER_GIFTS_KEYSPACE,
            QUEUE_KEYSPACE,
            SENT_KEYSPACE,
            IDEMPOTENCY_KEYSPACE,
        ];
        assert_eq!(names, ["orders", "user_orders", "user_gifts", "queue", "sent", "idempotency"]);
        assert_eq!(stock_key("gift-1"), "stock/gift-1");
        assert_eq!(INCARNATION_KEY, "incarnation");
        let id = OrderId::from_bytes([0xab; 16]);
        assert_eq!(order_key(&id), [0xab; 16]);
        assert_eq!(user_order_key(0x0102, &id)[..8], [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(user_gift_key(1, "g"), [0, 0, 0, 0, 0, 0, 0, 1, b'g']);
        let mut queue = vec![2, b'g', b'm', 0, 0, 0, 0, 0, 0, 1, 0];
        queue.extend_from_slice(&[0xab; 16]);
        assert_eq!(queue_key("gm", 256, &id), queue);
        assert_eq!(sent_key(&id, 1)[16..], [0, 0, 0, 0, 0, 0, 0, 1]);
        let head = |version: u8| {
            let mut encoded = vec![version, 3, 2 | 4];
            encoded.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
            for v in [1u64, 2, 3] {
                encoded.extend_from_slice(&v.to_le_bytes());
            }
            encoded.extend_from_slice(&4u32.to_le_bytes());
            encoded.extend_from_slice(&5u64.to_le_bytes());
            encoded
        };
        let texts = |encoded: &mut Vec<u8>, texts: &[&str]| {
            for text in texts {
                encoded.push(text.len() as u8);
                encoded.extend_from_slice(text.as_bytes());
            }
            encoded.extend_from_slice(&[4, 0]);
            encoded.extend_from_slice(b"busy");
        };
        let mut v2 = head(2);
        v2.extend_from_slice(&3u16.to_le_bytes());
        v2.extend_from_slice(&(1u64 << 40).to_le_bytes());
        texts(&mut v2, &["c", "swipe-1", "g", "gm"]);
        assert_eq!(encode_order(&order()), v2);
        // Version 1, with the zone and role as decimal text, still reads as the same order.
        let mut v1 = head(1);
        texts(&mut v1, &["c", "swipe-1", "g", "gm", "3", &(1u64 << 40).to_string()]);
        assert_eq!(decode_order(order().id, &v1), Ok(order()));
        let mut v1_bad_zone = head(1);
        texts(&mut v1_bad_zone, &["c", "swipe-1", "g", "gm", "z", "1"]);
        assert!(decode_order(order().id, &v1_bad_zone).is_err());
        let record = IdempotencyRecord {
            expires_at_ms: 7,
            fingerprint: [9; 32],
            kind: RecordedKind::CouponAlreadyRedeemed,
            order_id: id,
        };
        let value = encode_idempotency(&record);
        assert_eq!(value[..9], [1, 7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(value[41], 3);
    }

    #[test]
    fn claim_values_round_trip_and_damage_is_corrupt() {
        let order = order();
        let bytes = encode_order(&order);
        assert_eq!(decode_order(order.id, &bytes), Ok(order.clone()));
        let delivered = Order {
            status: OrderStatus::Delivered,
            delivered_at_ms: Some(9),
            ready_at_ms: None,
            last_error: None,
            ..order.clone()
        };
        assert_eq!(decode_order(order.id, &encode_order(&delivered)), Ok(delivered));
        // Every truncation, an extra byte, an unknown version or status, and an inconsistent
        // order are refused, never half-read.
        for len in 0..bytes.len() {
            assert!(matches!(decode_order(order.id, &bytes[..len]), Err(StoreError::Corrupt(_))));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        for bad in [
            longer,
            [&[3u8][..], &bytes[1..]].concat(),
            [&bytes[..1], &[9u8], &bytes[2..]].concat(),
        ] {
            assert!(matches!(decode_order(order.id, &bad), Err(StoreError::Corrupt(_))));
        }
        let mut queued_without_position = bytes.clone();
        queued_without_position[2] &= !HAS_READY_AT;
        queued_without_position.drain(3 + 36..3 + 36 + 8);
        assert!(decode_order(order.id, &queued_without_position).is_err());

        let id = order.id;
        assert_eq!(
            decode_queue_key(&queue_key("gm", 42, &id)).map(|(g, t, i)| (g.to_string(), t, i)),
            Ok(("gm".to_string(), 42, id))
        );
        assert!(decode_queue_key(&[2, b'g']).is_err());
        assert!(decode_queue_key(&[0; 25]).is_err());
        assert_eq!(decode_sent_key(&sent_key(&id, 77)), Ok((id, 77)));
        assert!(decode_sent_key(&[0; 23]).is_err());
        let record = IdempotencyRecord {
            expires_at_ms: 7,
            fingerprint: [9; 32],
            kind: RecordedKind::Accepted,
            order_id: id,
        };
        assert_eq!(decode_idempotency(&encode_idempotency(&record)), Ok(record));
        assert_eq!(idempotency_expiry(&[1; 10]), None);
        let mut bad_kind = encode_idempotency(&IdempotencyRecord {
            expires_at_ms: 7,
            fingerprint: [9; 32],
            kind: RecordedKind::Replayed,
            order_id: id,
        });
        bad_kind[41] = 0;
        assert!(decode_idempotency(&bad_kind).is_err());
        // Queue keys of one game sort by due time, then id, and stay inside the game's range.
        let a = queue_key("g", 1, &OrderId::from_bytes([0xff; 16]));
        let b = queue_key("g", 2, &OrderId::from_bytes([0; 16]));
        assert!(queue_prefix("g") <= a && a < b && b < queue_end("g"));
        assert!(queue_end("g") < queue_prefix("h") && queue_end("g") < queue_prefix("gg"));
    }
}
