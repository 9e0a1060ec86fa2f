//! Login tickets, raw: any text given to `verify_ticket` is refused with a typed error or
//! verifies; and a ticket that verifies is exactly the one its key signs for those fields (no
//! second spelling of a valid ticket: no padding, no stray bits, no case change).
#![no_main]

use hongbao_domain::ticket::MAX_TICKET_LEN;
use hongbao_domain::{sign_ticket, verify_ticket};
use hongbao_fuzz::{NOW_UNIX_S, ticket_keys};
use libfuzzer_sys::fuzz_target;

const MAX_AGE_S: u64 = 86_400 * 365;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let keys = ticket_keys();
    match verify_ticket(&keys, token, NOW_UNIX_S, MAX_AGE_S) {
        Ok(t) => {
            assert!(token.len() <= MAX_TICKET_LEN);
            let key = keys.iter().find(|k| k.id == t.key_id).expect("the signing key is active");
            let ttl_s = t.expires_at_unix_s.abs_diff(t.issued_at_unix_s);
            let again = sign_ticket(key, t.user, t.issued_at_unix_s, ttl_s);
            assert_eq!(again, token, "a verified ticket has one spelling");
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
});
