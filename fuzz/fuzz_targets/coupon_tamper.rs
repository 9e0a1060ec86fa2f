//! Coupons, structured: a coupon signed for arbitrary fields verifies (before its expiry) with
//! exactly those fields, is refused for another campaign, is forged under another key, and after
//! any change to its bytes never verifies.
#![no_main]

use arbitrary::Arbitrary;
use hongbao_domain::campaign::MAX_ID_LEN;
use hongbao_domain::{Channel, Coupon, CouponError, derive_coupon_key, sign_coupon, verify_coupon};
use hongbao_fuzz::{Edit, NOW_UNIX_S, apply_edits, coupon_key};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    campaign_id: String,
    other_campaign_id: String,
    user: u64,
    channel: u8,
    serial: u32,
    expires_offset_s: i64,
    edits: Vec<Edit>,
    other_secret: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // `sign_coupon` panics on ids no campaign can hold: a caller bug, not an input.
    if input.campaign_id.is_empty() || input.campaign_id.len() > MAX_ID_LEN || input.serial == 0 {
        return;
    }
    let coupon = Coupon {
        campaign_id: input.campaign_id.clone(),
        user: input.user,
        channel: Channel::ALL[usize::from(input.channel) % Channel::ALL.len()],
        serial: input.serial,
        expires_at_unix_s: NOW_UNIX_S.saturating_add(input.expires_offset_s),
    };
    let key = coupon_key();
    let token = sign_coupon(&key, &coupon);

    let got = verify_coupon(&key, &token, &coupon.campaign_id, NOW_UNIX_S);
    if coupon.expires_at_unix_s > NOW_UNIX_S {
        assert_eq!(got.as_ref(), Ok(&coupon));
    } else {
        assert!(matches!(got, Err(CouponError::Expired { .. })), "{got:?}");
    }

    if input.other_campaign_id != coupon.campaign_id {
        let got = verify_coupon(&key, &token, &input.other_campaign_id, NOW_UNIX_S);
        assert_eq!(got, Err(CouponError::WrongCampaign));
    }

    let tampered = apply_edits(&token, &input.edits);
    if tampered != token {
        let got = verify_coupon(&key, &tampered, &coupon.campaign_id, NOW_UNIX_S);
        assert!(got.is_err(), "a changed coupon verified: {tampered:?} from {token:?}");
    }

    let other = derive_coupon_key(&input.other_secret);
    if sign_coupon(&other, &coupon) != token {
        let got = verify_coupon(&other, &token, &coupon.campaign_id, NOW_UNIX_S);
        assert_eq!(got, Err(CouponError::Forged));
    }
});
