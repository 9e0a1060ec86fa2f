//! Coupons, raw: any text given to `verify_coupon` is refused with a typed error or verifies; a
//! coupon that verifies is exactly the one the key signs for its fields (one spelling).
#![no_main]

use hongbao_domain::coupon::MAX_COUPON_LEN;
use hongbao_domain::{sign_coupon, verify_coupon};
use hongbao_fuzz::{CAMPAIGN_ID, NOW_UNIX_S, coupon_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let key = coupon_key();
    match verify_coupon(&key, token, CAMPAIGN_ID, NOW_UNIX_S) {
        Ok(coupon) => {
            assert!(token.len() <= MAX_COUPON_LEN);
            assert_eq!(coupon.campaign_id, CAMPAIGN_ID);
            assert!(coupon.serial >= 1 && coupon.expires_at_unix_s > NOW_UNIX_S);
            assert_eq!(sign_coupon(&key, &coupon), token, "a verified coupon has one spelling");
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
});
