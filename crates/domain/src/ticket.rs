//! Login tickets: who the caller is, vouched for by the login service's key.
//!
//! A ticket is `v1.<key id>.<payload>.<mac>`: `payload` and `mac` are unpadded base64url, and the
//! MAC is HMAC-SHA256 under the named key over everything before the last dot, so the version and
//! the key id are authenticated too. Several keys may be active at once (rotation): the first in
//! the campaign signs, every one verifies, and the token names its key so verification costs one
//! MAC, not one per key.
//!
//! The API verifies a ticket on every request, so verification allocates only the returned key id
//! and bounds the token's length before looking at it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::campaign::{MAX_ID_LEN, TicketKey};

/// Longest ticket accepted; anything longer is refused before any decoding or MAC work.
/// A well-formed ticket is at most `3 + MAX_ID_LEN + 1 + 32 + 1 + 43` = 144 bytes.
pub const MAX_TICKET_LEN: usize = 160;
/// How far in the future a ticket's issue time may lie: the login service's clock and ours
/// disagree by a little, and a fresh ticket must not bounce because of it.
pub const CLOCK_SKEW_S: i64 = 30;

const TICKET_VERSION: &str = "v1";

// Wire layout of the payload (24 bytes, big-endian). WARNING: changing it invalidates every
// ticket in circulation; introduce `v2` instead and verify both during the change-over.
//
//   user        u64
//   issued_at   i64   Unix seconds
//   expires_at  i64   Unix seconds
const PAYLOAD_LEN: usize = 24;
/// `PAYLOAD_LEN` bytes in unpadded base64.
const PAYLOAD_B64_LEN: usize = 32;
pub(crate) const MAC_LEN: usize = 32;
/// `MAC_LEN` bytes in unpadded base64.
pub(crate) const MAC_B64_LEN: usize = 43;

/// A verified login ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub user: u64,
    pub issued_at_unix_s: i64,
    pub expires_at_unix_s: i64,
    /// The key that signed it (for metrics and for retiring a key once nothing uses it).
    pub key_id: String,
}

/// Why a ticket was refused. Every variant is a 401 for the API, told apart by [`code`].
///
/// [`code`]: TicketError::code
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket at all: wrong shape, length, version or encoding.
    #[error("malformed ticket: {0}")]
    Malformed(&'static str),
    /// Names a key that is not (or no longer) active.
    #[error("ticket signed with unknown key `{0}`")]
    UnknownKey(String),
    /// The MAC does not match: tampered with, or signed by someone without the key.
    #[error("ticket signature is invalid")]
    Forged,
    /// Past its expiry or older than the campaign's maximum ticket age, whichever comes first.
    #[error("ticket expired at {expired_at_unix_s}")]
    Expired { expired_at_unix_s: i64 },
    /// Issued further in the future than the allowed clock skew.
    #[error("ticket issued at {issued_at_unix_s}, in the future")]
    NotYetValid { issued_at_unix_s: i64 },
}

impl TicketError {
    /// Stable snake_case code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            TicketError::Malformed(_) => "malformed_ticket",
            TicketError::UnknownKey(_) => "unknown_ticket_key",
            TicketError::Forged => "forged_ticket",
            TicketError::Expired { .. } => "expired_ticket",
            TicketError::NotYetValid { .. } => "ticket_not_yet_valid",
        }
    }
}

/// Signs a ticket for `user`, issued at `issued_at` and valid for `ttl_s` seconds.
/// Panics on a key id that a campaign file could not hold (a bug in the caller).
pub fn sign_ticket(key: &TicketKey, user: u64, issued_at: i64, ttl_s: u64) -> String {
    assert!(is_key_id(&key.id), "ticket key id `{}` is not a valid id", key.id);
    let expires_at = issued_at.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[..8].copy_from_slice(&user.to_be_bytes());
    payload[8..16].copy_from_slice(&issued_at.to_be_bytes());
    payload[16..].copy_from_slice(&expires_at.to_be_bytes());

    let mut token = String::with_capacity(MAX_TICKET_LEN);
    token.push_str(TICKET_VERSION);
    token.push('.');
    token.push_str(&key.id);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let tag = hmac_sha256(&key.secret).chain_update(token.as_bytes()).finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// Verifies a ticket against the active `keys` at `now_unix_s`.
///
/// Checks, in order: length and shape, key id among `keys`, MAC (constant time), then time:
/// issued no later than `now + CLOCK_SKEW_S`, and `now` before both its own expiry and
/// `issued_at + max_age_s`.
pub fn verify_ticket(
    keys: &[TicketKey],
    token: &str,
    now_unix_s: i64,
    max_age_s: u64,
) -> Result<Ticket, TicketError> {
    if token.len() > MAX_TICKET_LEN {
        return Err(TicketError::Malformed("too long"));
    }
    let (signed, mac_b64) = token.rsplit_once('.').ok_or(TicketError::Malformed("no signature"))?;
    let mut parts = signed.splitn(3, '.');
    let (Some(version), Some(key_id), Some(payload_b64)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::Malformed("expected four dot-separated parts"));
    };
    if version != TICKET_VERSION {
        return Err(TicketError::Malformed("unknown version"));
    }
    if !is_key_id(key_id) {
        return Err(TicketError::Malformed("bad key id"));
    }
    let payload: [u8; PAYLOAD_LEN] = decode_exact::<PAYLOAD_LEN, PAYLOAD_B64_LEN>(payload_b64)
        .ok_or(TicketError::Malformed("bad payload encoding"))?;
    let tag: [u8; MAC_LEN] = decode_exact::<MAC_LEN, MAC_B64_LEN>(mac_b64)
        .ok_or(TicketError::Malformed("bad signature encoding"))?;

    let key = keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| TicketError::UnknownKey(key_id.to_string()))?;
    hmac_sha256(&key.secret)
        .chain_update(signed.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| TicketError::Forged)?;

    let user = u64::from_be_bytes(word(&payload, 0));
    let issued_at = i64::from_be_bytes(word(&payload, 8));
    let expires_at = i64::from_be_bytes(word(&payload, 16));
    if expires_at < issued_at {
        // Only a broken signer writes this; refuse rather than guess.
        return Err(TicketError::Malformed("expires before it was issued"));
    }
    if issued_at > now_unix_s.saturating_add(CLOCK_SKEW_S) {
        return Err(TicketError::NotYetValid { issued_at_unix_s: issued_at });
    }
    let too_old_at = issued_at.saturating_add(i64::try_from(max_age_s).unwrap_or(i64::MAX));
    let expired_at = expires_at.min(too_old_at);
    if now_unix_s >= expired_at {
        return Err(TicketError::Expired { expired_at_unix_s: expired_at });
    }
    Ok(Ticket {
        user,
        issued_at_unix_s: issued_at,
        expires_at_unix_s: expires_at,
        key_id: key.id.clone(),
    })
}

/// A key id as the campaign file allows it: what may appear between the dots of a ticket.
fn is_key_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(crate) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Decodes unpadded base64url that must be exactly `B` characters holding exactly `N` bytes,
/// in canonical form (the engine refuses stray trailing bits), without allocating.
pub(crate) fn decode_exact<const N: usize, const B: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != B {
        return None;
    }
    let mut buf = [0u8; 64];
    debug_assert!(N < buf.len());
    let n = URL_SAFE_NO_PAD.decode_slice(s, &mut buf).ok()?;
    if n != N {
        return None;
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[..N]);
    Some(out)
}

/// Eight bytes at `at`.
pub(crate) fn word(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    w
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_802_188_800;
    const DAY_S: u64 = 86_400;

    fn key(id: &str, secret: &str) -> TicketKey {
        TicketKey { id: id.to_string(), secret: secret.as_bytes().to_vec() }
    }

    fn keys() -> Vec<TicketKey> {
        vec![
            key("k-new", "new-secret-0123456789abcdef"),
            key("k-old", "old-secret-0123456789abcdef"),
        ]
    }

    #[test]
    fn a_signed_ticket_verifies_and_round_trips() {
        let keys = keys();
        let token = sign_ticket(&keys[0], 123_456_789, NOW - 10, 3600);
        assert!(token.starts_with("v1.k-new."));
        assert!(token.len() <= MAX_TICKET_LEN);
        let t = verify_ticket(&keys, &token, NOW, DAY_S).unwrap();
        assert_eq!(
            t,
            Ticket {
                user: 123_456_789,
                issued_at_unix_s: NOW - 10,
                expires_at_unix_s: NOW + 3590,
                key_id: "k-new".to_string()
            }
        );
    }

    #[test]
    fn the_longest_well_formed_ticket_fits_the_bound() {
        let long = key(&"k".repeat(MAX_ID_LEN), "secret-0123456789abcdef");
        let token = sign_ticket(&long, u64::MAX, i64::MAX - 1, 1);
        assert!(token.len() <= MAX_TICKET_LEN, "{}", token.len());
    }

    #[test]
    fn every_active_key_verifies_and_a_retired_one_does_not() {
        let keys = keys();
        let old = sign_ticket(&keys[1], 7, NOW, 3600);
        assert_eq!(verify_ticket(&keys, &old, NOW, DAY_S).unwrap().key_id, "k-old");
        let err = verify_ticket(&keys[..1], &old, NOW, DAY_S).unwrap_err();
        assert_eq!(err, TicketError::UnknownKey("k-old".to_string()));
        assert_eq!(err.code(), "unknown_ticket_key");
    }

    #[test]
    fn a_ticket_signed_with_another_secret_under_a_known_id_is_forged() {
        let keys = keys();
        let impostor = key("k-new", "guessed-secret-0123456789abcdef");
        let token = sign_ticket(&impostor, 7, NOW, 3600);
        assert_eq!(verify_ticket(&keys, &token, NOW, DAY_S), Err(TicketError::Forged));
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let keys = keys();
        let token = sign_ticket(&keys[0], 7, NOW, 3600);
        // Another user's payload under the first ticket's MAC.
        let other = sign_ticket(&keys[0], 8, NOW, 3600);
        let payload_7 = token.split('.').nth(2).unwrap();
        let payload_8 = other.split('.').nth(2).unwrap();
        let swapped = token.replace(payload_7, payload_8);
        assert_eq!(verify_ticket(&keys, &swapped, NOW, DAY_S), Err(TicketError::Forged));
        // The key id is covered by the MAC: renaming the key breaks it.
        let renamed = token.replacen("k-new", "k-old", 1);
        assert_eq!(verify_ticket(&keys, &renamed, NOW, DAY_S), Err(TicketError::Forged));
    }

    #[test]
    fn time_rules() {
        let keys = keys();
        let max_age_s = 600;
        let cases: &[(&str, i64, u64, Result<(), TicketError>)] = &[
            // (case, issued_at, ttl_s, expected at NOW)
            ("fresh", NOW, 60, Ok(())),
            ("last valid second", NOW - 59, 60, Ok(())),
            (
                "expired exactly now",
                NOW - 60,
                60,
                Err(TicketError::Expired { expired_at_unix_s: NOW }),
            ),
            (
                "long expired",
                NOW - 5000,
                60,
                Err(TicketError::Expired { expired_at_unix_s: NOW - 4940 }),
            ),
            ("within skew", NOW + CLOCK_SKEW_S, 60, Ok(())),
            (
                "beyond skew",
                NOW + CLOCK_SKEW_S + 1,
                60,
                Err(TicketError::NotYetValid { issued_at_unix_s: NOW + CLOCK_SKEW_S + 1 }),
            ),
            ("long ttl, under max age", NOW - 599, DAY_S, Ok(())),
            (
                "long ttl, past max age",
                NOW - 600,
                DAY_S,
                Err(TicketError::Expired { expired_at_unix_s: NOW }),
            ),
            ("zero ttl", NOW, 0, Err(TicketError::Expired { expired_at_unix_s: NOW })),
        ];
        for (case, issued_at, ttl_s, expected) in cases {
            let token = sign_ticket(&keys[0], 42, *issued_at, *ttl_s);
            let got = verify_ticket(&keys, &token, NOW, max_age_s).map(|_| ());
            assert_eq!(&got, expected, "{case}");
        }
    }

    #[test]
    fn malformed_tickets_are_refused_before_any_key_lookup() {
        let keys = keys();
        let good = sign_ticket(&keys[0], 7, NOW, 3600);
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            "v1".to_string(),
            "x".repeat(MAX_TICKET_LEN + 1),
            format!("{good}.extra"),
            format!("v2.{}.{}.{}", parts[1], parts[2], parts[3]),
            format!("v1..{}.{}", parts[2], parts[3]),
            format!("v1.K-NEW.{}.{}", parts[2], parts[3]),
            format!("v1.{}.{}", parts[1], parts[3]),
            format!("v1.{}.{}=.{}", parts[1], &parts[2][..31], parts[3]),
            format!("v1.{}.{}A.{}", parts[1], parts[2], parts[3]),
            format!("v1.{}.{}.{}", parts[1], parts[2], &parts[3][..42]),
            format!("v1.{}.{}.{}+", parts[1], parts[2], &parts[3][..42]),
            format!("v1.{}.{}.{}", parts[1], parts[2], parts[3].to_uppercase()),
            // Unknown key but malformed payload: shape is judged first.
            format!("v1.nobody.{}.{}", &parts[2][..10], parts[3]),
        ];
        for token in cases {
            let err = verify_ticket(&keys, &token, NOW, DAY_S).unwrap_err();
            // Upper-casing the MAC keeps a valid encoding but breaks the MAC.
            assert!(
                matches!(err, TicketError::Malformed(_) | TicketError::Forged),
                "{token:?}: {err:?}"
            );
        }
        assert!(matches!(
            verify_ticket(&keys, "v1.nobody.x.y", NOW, DAY_S),
            Err(TicketError::Malformed(_))
        ));
    }

    #[test]
    fn a_non_canonical_encoding_of_the_mac_is_refused() {
        let keys = keys();
        let good = sign_ticket(&keys[0], 7, NOW, 3600);
        let (signed, mac) = good.rsplit_once('.').unwrap();
        // 43 base64 characters carry 258 bits; the last character's low 2 bits must be zero.
        let last = mac.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let twin = alphabet[pos | 1] as char;
        let forged = format!("{signed}.{}{twin}", &mac[..42]);
        assert_ne!(forged, good);
        assert!(matches!(
            verify_ticket(&keys, &forged, NOW, DAY_S),
            Err(TicketError::Malformed(_))
        ));
    }

    #[test]
    fn codes_are_distinct() {
        let all = [
            TicketError::Malformed("x"),
            TicketError::UnknownKey("k".to_string()),
            TicketError::Forged,
            TicketError::Expired { expired_at_unix_s: 0 },
            TicketError::NotYetValid { issued_at_unix_s: 0 },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(TicketError::code).collect();
        assert_eq!(codes.len(), all.len());
    }

    proptest! {
        #[test]
        fn round_trip(user in any::<u64>(), age_s in 0i64..600, ttl_s in 601u64..1_000_000) {
            let keys = keys();
            let token = sign_ticket(&keys[1], user, NOW - age_s, ttl_s);
            let t = verify_ticket(&keys, &token, NOW, DAY_S).unwrap();
            prop_assert_eq!(t.user, user);
            prop_assert_eq!(t.issued_at_unix_s, NOW - age_s);
            prop_assert_eq!(t.expires_at_unix_s, NOW - age_s + ttl_s as i64);
        }

        #[test]
        fn any_single_character_change_is_refused(
            user in any::<u64>(), at in 0usize..200, c in proptest::char::range('-', 'z'),
        ) {
            let keys = keys();
            let token = sign_ticket(&keys[0], user, NOW, 3600);
            let at = at % token.len();
            let mut bytes = token.clone().into_bytes();
            prop_assume!(bytes[at] != c as u8);
            bytes[at] = c as u8;
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert!(verify_ticket(&keys, &tampered, NOW, DAY_S).is_err(), "{}", tampered);
        }
    }
}
