//! Coupons: a grabbed red packet as a signed, self-contained token.
//!
//! `c1.<payload>.<mac>` (unpadded base64url; HMAC-SHA256 over everything before the last dot).
//! The API checks a coupon on the gift list and on the claim without any lookup: the MAC says we
//! granted it, the payload says to whom, from which channel, and until when. Whether it was
//! already redeemed is the claim store's business, keyed by [`Coupon::id`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use crate::campaign::{Channel, MAX_ID_LEN};
use crate::ticket::{MAC_B64_LEN, MAC_LEN, decode_exact, hmac_sha256, word};

/// Longest coupon token accepted; longer input is refused before any decoding or MAC work.
/// A well-formed coupon is at most `3 + 115 + 1 + 43` = 162 bytes.
pub const MAX_COUPON_LEN: usize = 176;

const COUPON_PREFIX: &str = "c1.";
/// Domain-separation label: a key derived for coupons is useless for anything else, even when
/// (as in the demo) it is seeded from a ticket key's secret.
const COUPON_KEY_LABEL: &[u8] = b"hongbao/coupon-key/v1";

// Wire layout of the payload (big-endian). WARNING: changing it invalidates every coupon already
// granted; introduce `c2` instead and verify both during the change-over.
//
//   user           u64
//   channel        u8    0 swipe, 1 ar_map, 2 scan
//   serial         u32   ≥ 1
//   expires_at     i64   Unix seconds
//   campaign len   u8    1..=MAX_ID_LEN
//   campaign id    bytes
const FIXED_LEN: usize = 8 + 1 + 4 + 8 + 1;
const MAX_PAYLOAD_LEN: usize = FIXED_LEN + MAX_ID_LEN;
/// `MAX_PAYLOAD_LEN` bytes in unpadded base64.
const MAX_PAYLOAD_B64_LEN: usize = (MAX_PAYLOAD_LEN * 4).div_ceil(3);

/// The key that signs coupons. `Debug` never prints it.
#[derive(Clone)]
pub struct CouponKey(Vec<u8>);

impl fmt::Debug for CouponKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CouponKey(<redacted>)")
    }
}

/// Derives the coupon key from a secret: HMAC-SHA256(secret, label).
pub fn derive_coupon_key(secret: &[u8]) -> CouponKey {
    let derived = hmac_sha256(secret).chain_update(COUPON_KEY_LABEL).finalize().into_bytes();
    CouponKey(derived.to_vec())
}

/// A red packet granted to `user`: their `serial`-th from `channel` in `campaign_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coupon {
    pub campaign_id: String,
    pub user: u64,
    pub channel: Channel,
    /// 1-based: the user's n-th grant on this channel, so it never exceeds the channel's
    /// per-user limit and (user, channel, serial) names the coupon.
    pub serial: u32,
    pub expires_at_unix_s: i64,
}

impl Coupon {
    /// The coupon's name among the user's coupons, e.g. `swipe-3`. Stable: order ids are derived
    /// from it, so changing its form would let a resent claim create a second order.
    pub fn id(&self) -> String {
        format!("{}-{}", self.channel.as_str(), self.serial)
    }

    /// Ownership check for the caller: a coupon is usable only by the user it was granted to.
    pub fn check_owner(&self, user: u64) -> Result<(), CouponError> {
        if self.user == user { Ok(()) } else { Err(CouponError::NotOwner) }
    }
}

/// Why a coupon was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CouponError {
    #[error("malformed coupon: {0}")]
    Malformed(&'static str),
    #[error("coupon signature is invalid")]
    Forged,
    #[error("coupon expired at {expired_at_unix_s}")]
    Expired { expired_at_unix_s: i64 },
    #[error("coupon belongs to another campaign")]
    WrongCampaign,
    /// From [`Coupon::check_owner`]; the API should answer as if the coupon did not exist.
    #[error("coupon belongs to another user")]
    NotOwner,
}

impl CouponError {
    /// Stable snake_case code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            CouponError::Malformed(_) => "malformed_coupon",
            CouponError::Forged => "forged_coupon",
            CouponError::Expired { .. } => "expired_coupon",
            CouponError::WrongCampaign => "wrong_campaign",
            CouponError::NotOwner => "not_your_coupon",
        }
    }
}

fn channel_byte(channel: Channel) -> u8 {
    match channel {
        Channel::Swipe => 0,
        Channel::ArMap => 1,
        Channel::Scan => 2,
    }
}

fn channel_of_byte(b: u8) -> Option<Channel> {
    match b {
        0 => Some(Channel::Swipe),
        1 => Some(Channel::ArMap),
        2 => Some(Channel::Scan),
        _ => None,
    }
}

/// Signs a coupon. Panics on a coupon no campaign can produce (serial 0, campaign id empty or
/// longer than `MAX_ID_LEN`): that is a bug in the caller, not bad input.
pub fn sign_coupon(key: &CouponKey, coupon: &Coupon) -> String {
    let campaign = coupon.campaign_id.as_bytes();
    assert!(!campaign.is_empty() && campaign.len() <= MAX_ID_LEN, "bad campaign id");
    assert!(coupon.serial >= 1, "coupon serials are 1-based");
    let mut payload = [0u8; MAX_PAYLOAD_LEN];
    payload[..8].copy_from_slice(&coupon.user.to_be_bytes());
    payload[8] = channel_byte(coupon.channel);
    payload[9..13].copy_from_slice(&coupon.serial.to_be_bytes());
    payload[13..21].copy_from_slice(&coupon.expires_at_unix_s.to_be_bytes());
    payload[21] = campaign.len() as u8;
    payload[FIXED_LEN..FIXED_LEN + campaign.len()].copy_from_slice(campaign);

    let mut token = String::with_capacity(MAX_COUPON_LEN);
    token.push_str(COUPON_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&payload[..FIXED_LEN + campaign.len()], &mut token);
    let tag = hmac_sha256(&key.0).chain_update(token.as_bytes()).finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// Verifies a coupon for campaign `campaign_id` at `now_unix_s`.
///
/// Checks, in order: length and shape, MAC (constant time), payload contents, campaign, expiry.
/// Nothing in the payload is looked at before the MAC holds. Ownership is the caller's check
/// ([`Coupon::check_owner`]).
pub fn verify_coupon(
    key: &CouponKey,
    token: &str,
    campaign_id: &str,
    now_unix_s: i64,
) -> Result<Coupon, CouponError> {
    if token.len() > MAX_COUPON_LEN {
        return Err(CouponError::Malformed("too long"));
    }
    let body =
        token.strip_prefix(COUPON_PREFIX).ok_or(CouponError::Malformed("unknown version"))?;
    let (payload_b64, mac_b64) =
        body.split_once('.').ok_or(CouponError::Malformed("expected three dot-separated parts"))?;
    if payload_b64.len() > MAX_PAYLOAD_B64_LEN {
        return Err(CouponError::Malformed("payload too long"));
    }
    let mut payload = [0u8; MAX_PAYLOAD_LEN + 3];
    let len = URL_SAFE_NO_PAD
        .decode_slice(payload_b64, &mut payload)
        .map_err(|_| CouponError::Malformed("bad payload encoding"))?;
    let payload = &payload[..len];
    let tag: [u8; MAC_LEN] = decode_exact::<MAC_LEN, MAC_B64_LEN>(mac_b64)
        .ok_or(CouponError::Malformed("bad signature encoding"))?;
    let signed = &token[..COUPON_PREFIX.len() + payload_b64.len()];
    hmac_sha256(&key.0)
        .chain_update(signed.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| CouponError::Forged)?;

    // Authentic from here on; a bad field means a signer bug, still refused rather than trusted.
    if payload.len() <= FIXED_LEN || payload.len() != FIXED_LEN + usize::from(payload[21]) {
        return Err(CouponError::Malformed("bad payload length"));
    }
    let user = u64::from_be_bytes(word(payload, 0));
    let channel = channel_of_byte(payload[8]).ok_or(CouponError::Malformed("unknown channel"))?;
    let serial = u32::from_be_bytes([payload[9], payload[10], payload[11], payload[12]]);
    if serial == 0 {
        return Err(CouponError::Malformed("serial 0"));
    }
    let expires_at = i64::from_be_bytes(word(payload, 13));
    let campaign = std::str::from_utf8(&payload[FIXED_LEN..])
        .map_err(|_| CouponError::Malformed("campaign id is not UTF-8"))?;
    if campaign != campaign_id {
        return Err(CouponError::WrongCampaign);
    }
    if now_unix_s >= expires_at {
        return Err(CouponError::Expired { expired_at_unix_s: expires_at });
    }
    Ok(Coupon {
        campaign_id: campaign.to_string(),
        user,
        channel,
        serial,
        expires_at_unix_s: expires_at,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_802_188_800;

    fn coupon() -> Coupon {
        Coupon {
            campaign_id: "spring-2027".to_string(),
            user: 10_001,
            channel: Channel::ArMap,
            serial: 2,
            expires_at_unix_s: NOW + 86_400,
        }
    }

    fn key() -> CouponKey {
        derive_coupon_key(b"dev-only-change-me-0123456789abcdef")
    }

    #[test]
    fn a_signed_coupon_verifies_and_round_trips() {
        let c = coupon();
        let token = sign_coupon(&key(), &c);
        assert!(token.starts_with("c1."));
        assert_eq!(verify_coupon(&key(), &token, "spring-2027", NOW), Ok(c.clone()));
        assert_eq!(c.id(), "ar_map-2");
        assert_eq!(c.check_owner(10_001), Ok(()));
        assert_eq!(c.check_owner(10_002), Err(CouponError::NotOwner));
    }

    #[test]
    fn the_longest_coupon_fits_the_bound() {
        let c = Coupon {
            campaign_id: "x".repeat(MAX_ID_LEN),
            user: u64::MAX,
            channel: Channel::Scan,
            serial: u32::MAX,
            expires_at_unix_s: i64::MAX,
        };
        let token = sign_coupon(&key(), &c);
        assert!(token.len() <= MAX_COUPON_LEN, "{}", token.len());
        assert_eq!(verify_coupon(&key(), &token, &c.campaign_id, NOW), Ok(c));
    }

    #[test]
    fn the_derived_key_depends_on_the_secret_and_is_not_the_secret() {
        let secret = b"dev-only-change-me-0123456789abcdef";
        let k = derive_coupon_key(secret);
        assert_eq!(k.0.len(), 32);
        assert_ne!(k.0.as_slice(), secret.as_slice());
        assert_ne!(k.0, derive_coupon_key(b"another-secret-0123456789abcdef").0);
        assert_eq!(format!("{k:?}"), "CouponKey(<redacted>)");
    }

    #[test]
    fn refusals() {
        let c = coupon();
        let token = sign_coupon(&key(), &c);
        let other_key = derive_coupon_key(b"another-secret-0123456789abcdef");
        let expired = sign_coupon(&key(), &Coupon { expires_at_unix_s: NOW, ..c.clone() });
        let other_campaign =
            sign_coupon(&key(), &Coupon { campaign_id: "autumn-2027".to_string(), ..c.clone() });
        let (payload, mac) = token["c1.".len()..].split_once('.').unwrap();
        let other_user = sign_coupon(&key(), &Coupon { user: 10_002, ..c.clone() });
        let other_payload = other_user["c1.".len()..].split_once('.').unwrap().0;

        let k = key();
        let cases: Vec<(&str, String, &CouponKey, &str)> = vec![
            ("forged_coupon", token.clone(), &other_key, "another key"),
            ("forged_coupon", format!("c1.{other_payload}.{mac}"), &k, "payload swapped"),
            ("expired_coupon", expired, &k, "expires now"),
            ("wrong_campaign", other_campaign, &k, "other campaign"),
            ("malformed_coupon", String::new(), &k, "empty"),
            ("malformed_coupon", "x".repeat(MAX_COUPON_LEN + 1), &k, "too long"),
            ("malformed_coupon", token.replacen("c1.", "c2.", 1), &k, "version"),
            ("malformed_coupon", format!("c1.{payload}"), &k, "no mac"),
            ("malformed_coupon", format!("c1.{payload}.{mac}.x"), &k, "extra part"),
            ("malformed_coupon", format!("c1.{payload}=.{mac}"), &k, "padding"),
            ("malformed_coupon", format!("c1.{payload}.{}", &mac[..40]), &k, "short mac"),
            ("malformed_coupon", format!("c1.{}.{mac}", "A".repeat(200)), &k, "long payload"),
        ];
        for (code, token, key, case) in cases {
            let got = verify_coupon(key, &token, "spring-2027", NOW).map_err(|e| e.code());
            assert_eq!(got, Err(code), "{case}");
        }
    }

    #[test]
    fn a_payload_with_a_valid_mac_but_bad_fields_is_malformed() {
        // Only a broken signer produces these; build them by hand with the real key.
        let sign_raw = |payload: &[u8]| {
            let mut t = String::from("c1.");
            URL_SAFE_NO_PAD.encode_string(payload, &mut t);
            let tag = hmac_sha256(&key().0).chain_update(t.as_bytes()).finalize().into_bytes();
            t.push('.');
            URL_SAFE_NO_PAD.encode_string(tag, &mut t);
            t
        };
        let good = {
            let mut p = vec![0u8; FIXED_LEN];
            p[8] = 0;
            p[12] = 1;
            p[13..21].copy_from_slice(&(NOW + 10).to_be_bytes());
            p[21] = 1;
            p.push(b'x');
            p
        };
        assert!(verify_coupon(&key(), &sign_raw(&good), "x", NOW).is_ok());
        let mut bad_channel = good.clone();
        bad_channel[8] = 3;
        let mut zero_serial = good.clone();
        zero_serial[12] = 0;
        let mut bad_len = good.clone();
        bad_len[21] = 2;
        let mut not_utf8 = good.clone();
        not_utf8[22] = 0xFF;
        for p in [bad_channel, zero_serial, bad_len, not_utf8, good[..FIXED_LEN].to_vec()] {
            let got = verify_coupon(&key(), &sign_raw(&p), "x", NOW);
            assert!(matches!(got, Err(CouponError::Malformed(_))), "{p:?}: {got:?}");
        }
    }

    #[test]
    fn codes_are_distinct() {
        let all = [
            CouponError::Malformed("x"),
            CouponError::Forged,
            CouponError::Expired { expired_at_unix_s: 0 },
            CouponError::WrongCampaign,
            CouponError::NotOwner,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(CouponError::code).collect();
        assert_eq!(codes.len(), all.len());
    }

    proptest! {
        #[test]
        fn round_trip(
            user in any::<u64>(), ch in 0usize..3, serial in 1u32..100,
            ttl_s in 1i64..1_000_000, campaign in "[a-z0-9_-]{1,64}",
        ) {
            let c = Coupon {
                campaign_id: campaign.clone(),
                user,
                channel: Channel::ALL[ch],
                serial,
                expires_at_unix_s: NOW + ttl_s,
            };
            let token = sign_coupon(&key(), &c);
            prop_assert!(token.len() <= MAX_COUPON_LEN);
            prop_assert_eq!(verify_coupon(&key(), &token, &campaign, NOW), Ok(c));
        }

        #[test]
        fn any_single_character_change_is_refused(
            at in 0usize..200, c in proptest::char::range('-', 'z'),
        ) {
            let token = sign_coupon(&key(), &coupon());
            let at = at % token.len();
            let mut bytes = token.clone().into_bytes();
            prop_assume!(bytes[at] != c as u8);
            bytes[at] = c as u8;
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert!(verify_coupon(&key(), &tampered, "spring-2027", NOW).is_err());
        }
    }
}
