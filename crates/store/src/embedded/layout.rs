//! The persisted layout of the embedded store: keyspace names, key and value encodings.
//!
//! # WARNING: changing anything in this file breaks existing data
//!
//! Stores written by one layout are read by the next. Renaming a keyspace, reordering key
//! parts, changing an integer's width or byte order, renumbering a channel code or changing a
//! channel's `as_str()` (it is part of the budget key) silently resets or corrupts limits and
//! budgets of a running campaign. Add new keyspaces or new key prefixes instead; a real change
//! needs a migration and a version marker.
//!
//! | keyspace   | key                                   | value                          |
//! | ---------- | ------------------------------------- | ------------------------------ |
//! | `grants`   | user `u64` big-endian ‖ channel code `u8` (9 bytes) | coupons granted to that user on that channel, `u32` little-endian (= the last serial) |
//! | `counters` | `budget/<channel>` (`budget/swipe`, `budget/ar_map`, `budget/scan`) | coupons granted on that channel so far, `u64` little-endian |
//!
//! Channel codes: swipe = 1, ar_map = 2, scan = 3 (0 is never used). User ids come first and
//! big-endian so one user's rows sort together (a later "my coupons" scan is one prefix).
//! A row is written only with a grant and always in the same atomic batch as its budget counter,
//! so at every commit point the sum of `grants` rows of a channel equals its budget counter.

use hongbao_domain::Channel;

use crate::StoreError;

pub(crate) const GRANTS_KEYSPACE: &str = "grants";
pub(crate) const COUNTERS_KEYSPACE: &str = "counters";

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
}
