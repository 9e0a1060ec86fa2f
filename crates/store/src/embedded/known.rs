//! What the store may hold, in memory: a Bloom filter over its order ids and its (user, gift)
//! counts, so that the reads a new claim makes find "absent" without a lookup.
//!
//! A new claim asks three times whether something exists: the API asks for the order (a
//! replay is answered before anything else), the writer asks again when it decides the claim,
//! and the writer reads the user's count of that gift. For a new claim all three are absent, and a
//! miss still walks the memtable's skip list of every tree it may be in: profiles put those
//! look-ups at about a fifth of a claim's CPU. The filter answers "certainly absent" for ~97 %
//! of them; "maybe" falls through to the real read, so a false positive costs only the read
//! that would have happened anyway.
//!
//! Soundness rests on one rule: every order id and (user, gift) count is inserted before the
//! batch that writes it commits (in `Staged::write_to`, the only way rows reach the backend),
//! and at open every existing one is inserted before the writer starts. A failed commit leaves
//! extra entries: false positives, harmless. Memory is fixed at open, sized by the campaign's
//! stock (every order takes one unit, so orders and counts never outnumber it); a store past
//! that size only sees more false positives, never a wrong "absent".

use fastbloom::AtomicBloomFilter;
use hongbao_domain::{GiftIndex, OrderId};

/// Bits per expected item.
const BITS_PER_ITEM: usize = 10;
/// Bits set per item. The filter is far larger than the caches, so every bit looked at is a
/// cache miss: two bits (a false positive rate of ~3.3 % at 10 bits per item) instead of the
/// seven that minimise it (~0.8 %) cost the rare extra read, not a miss per bit on every insert.
/// A profile put the seven-bit filter at 8 % of a claim's CPU.
const HASHES: u32 = 2;
/// Fewest items sized for (a campaign without stock, a test).
const ITEMS_MIN: usize = 1 << 12;
/// Most items sized for: 2^26 items take 80 MiB; a larger campaign gets more false positives.
const ITEMS_MAX: usize = 1 << 26;

pub(crate) struct Known {
    filter: AtomicBloomFilter,
}

/// Keys of the two kinds never collide: each is tagged.
#[derive(Hash)]
enum Key<'a> {
    Order(&'a [u8; 16]),
    UserGift(u64, u16),
}

impl Known {
    /// Sized for `items` order ids and as many (user, gift) counts.
    pub(crate) fn with_capacity(items: u64) -> Known {
        let items = usize::try_from(items.saturating_mul(2)).unwrap_or(usize::MAX);
        let items = items.clamp(ITEMS_MIN, ITEMS_MAX);
        Known { filter: AtomicBloomFilter::with_num_bits(items * BITS_PER_ITEM).hashes(HASHES) }
    }

    pub(crate) fn insert_order(&self, id: &OrderId) {
        self.filter.insert(&Key::Order(&id.to_bytes()));
    }

    /// `false` means the store certainly holds no such order.
    pub(crate) fn may_hold_order(&self, id: &OrderId) -> bool {
        self.filter.contains(&Key::Order(&id.to_bytes()))
    }

    pub(crate) fn insert_user_gift(&self, user: u64, gift: GiftIndex) {
        self.filter.insert(&Key::UserGift(user, gift.0));
    }

    /// `false` means the user certainly has no order of that gift.
    pub(crate) fn may_hold_user_gift(&self, user: u64, gift: GiftIndex) -> bool {
        self.filter.contains(&Key::UserGift(user, gift.0))
    }
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> OrderId {
        OrderId::derive("spring", n, &format!("c{n}"))
    }

    #[test]
    fn what_was_inserted_is_never_reported_absent() {
        let known = Known::with_capacity(10_000);
        for n in 0..10_000 {
            known.insert_order(&id(n));
            known.insert_user_gift(n, GiftIndex((n % 7) as u16));
        }
        for n in 0..10_000 {
            assert!(known.may_hold_order(&id(n)));
            assert!(known.may_hold_user_gift(n, GiftIndex((n % 7) as u16)));
        }
    }

    #[test]
    fn most_of_what_was_not_inserted_is_reported_absent() {
        let known = Known::with_capacity(10_000);
        for n in 0..10_000 {
            known.insert_order(&id(n));
            known.insert_user_gift(n, GiftIndex(0));
        }
        let orders = (10_000..20_000).filter(|&n| known.may_hold_order(&id(n))).count();
        // The other kind of key with the same numbers is a different key.
        let gifts = (0..10_000).filter(|&n| known.may_hold_user_gift(n, GiftIndex(1))).count();
        // ~3.3 % expected at capacity; 6 % leaves room for chance.
        assert!(orders < 600 && gifts < 600, "{orders} and {gifts} false positives in 10,000");
    }
}
