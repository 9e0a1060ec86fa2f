//! Login tickets, structured: a ticket signed for arbitrary fields verifies exactly when its
//! times say so, and after any change to its bytes it never verifies; one signed under a known
//! key id with another secret is forged.
#![no_main]

use arbitrary::Arbitrary;
use hongbao_domain::campaign::TicketKey;
use hongbao_domain::{TicketError, sign_ticket, verify_ticket};
use hongbao_fuzz::{Edit, NOW_UNIX_S, apply_edits, ticket_keys};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    second_key: bool,
    user: u64,
    /// Issue time relative to now; wide enough to reach both time rules and the i64 edges.
    issued_offset_s: i64,
    ttl_s: u64,
    max_age_s: u64,
    edits: Vec<Edit>,
    impostor_secret: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let keys = ticket_keys();
    let key = &keys[usize::from(input.second_key)];
    let issued_at = NOW_UNIX_S.saturating_add(input.issued_offset_s);
    let token = sign_ticket(key, input.user, issued_at, input.ttl_s);

    match verify_ticket(&keys, &token, NOW_UNIX_S, input.max_age_s) {
        Ok(t) => {
            assert_eq!(t.user, input.user);
            assert_eq!(t.issued_at_unix_s, issued_at);
            assert_eq!(t.key_id, key.id);
        }
        Err(TicketError::Expired { .. } | TicketError::NotYetValid { .. }) => {}
        Err(e) => panic!("a freshly signed ticket refused for its form: {e:?}"),
    }

    let tampered = apply_edits(&token, &input.edits);
    if tampered != token {
        let got = verify_ticket(&keys, &tampered, NOW_UNIX_S, input.max_age_s);
        assert!(got.is_err(), "a changed ticket verified: {tampered:?} from {token:?}");
    }

    if input.impostor_secret != key.secret {
        let impostor = TicketKey { id: key.id.clone(), secret: input.impostor_secret };
        let forged = sign_ticket(&impostor, input.user, issued_at, input.ttl_s);
        let got = verify_ticket(&keys, &forged, NOW_UNIX_S, input.max_age_s);
        assert_eq!(got, Err(TicketError::Forged));
    }
});
