//! What the fuzz targets share: fixed keys and a fixed "now", and byte-level edits for the
//! structured targets that sign something valid and then change it.

use arbitrary::Arbitrary;
use hongbao_domain::campaign::TicketKey;

/// The fixed "now" of every target (2027-02-11, inside the example campaign).
pub const NOW_UNIX_S: i64 = 1_802_188_800;

/// The example campaign's id (config/spring-festival.toml): the raw seeds' coupons carry it.
pub const CAMPAIGN_ID: &str = "spring-2027";

/// The ticket keys every ticket target verifies against: the example campaign's published key
/// first (the seeds are signed with it), then a second active key.
pub fn ticket_keys() -> Vec<TicketKey> {
    vec![
        TicketKey { id: "dev-1".into(), secret: b"dev-only-change-me-0123456789abcdef".to_vec() },
        TicketKey { id: "k-old".into(), secret: b"old-secret-0123456789abcdef".to_vec() },
    ]
}

/// The coupon key derived from the first ticket key, as the demo derives it.
pub fn coupon_key() -> hongbao_domain::CouponKey {
    hongbao_domain::derive_coupon_key(b"dev-only-change-me-0123456789abcdef")
}

/// One change to a token's bytes; positions wrap around the token's length.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Truncate { at: u16 },
    Append { byte: u8 },
    Swap { a: u16, b: u16 },
}

/// `text` with `edits` applied in order (as bytes; the result read back as lossy UTF-8, so a
/// change is still a change).
pub fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len();
        let at = |i: u16| if len == 0 { 0 } else { usize::from(i) % len };
        match *edit {
            Edit::Set { at: i, byte } if len > 0 => {
                let i = at(i);
                bytes[i] = byte;
            }
            Edit::Insert { at: i, byte } => {
                let i = if len == 0 { 0 } else { usize::from(i) % (len + 1) };
                bytes.insert(i, byte);
            }
            Edit::Remove { at: i } if len > 0 => {
                bytes.remove(at(i));
            }
            Edit::Truncate { at: i } => bytes.truncate(at(i)),
            Edit::Append { byte } => bytes.push(byte),
            Edit::Swap { a, b } if len > 0 => bytes.swap(at(a), at(b)),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub mod campaign;
