//! Staggered release: users are let in wave by wave, each user's wave and offset within it a
//! stable hash of the user id, so every API node agrees without coordination and a user who
//! retries is not moved to another wave.
//!
//! WARNING: changing the hash (or `RELEASE_SALT`) during a campaign moves users between waves:
//! someone who was already in would find themselves locked out again.

use crate::campaign::Campaign;
use crate::synth::SplitMix64;

/// Separates this hash from every other use of SplitMix64 on user ids.
const RELEASE_SALT: u64 = 0x5245_4C45_4153_4531; // "RELEASE1"

/// `x` scaled from [0, 2^64) to [0, n): multiply-high, uniform to within 2^-64 per bucket
/// (unlike `%`, which favours low buckets when `n` does not divide 2^64).
fn scale(x: u64, n: u64) -> u64 {
    ((u128::from(x) * u128::from(n)) >> 64) as u64
}

/// The two hash words of a user: the first picks the wave, the second the offset within it.
fn user_words(user: u64) -> (u64, u64) {
    let mut rng = SplitMix64::new(user ^ RELEASE_SALT);
    (rng.next_u64(), rng.next_u64())
}

/// The user's wave in `0..waves`. Panics if `waves` is 0 (a validated campaign has at least 1).
pub fn wave_of(user: u64, waves: u32) -> u32 {
    assert!(waves >= 1, "a release has at least one wave");
    // The result is below `waves`, so it fits.
    scale(user_words(user).0, u64::from(waves)) as u32
}

/// When the campaign opens for `user`: its start, plus the user's wave times the interval, plus
/// the user's offset in `[0, spread_s)`.
pub fn opens_at(campaign: &Campaign, user: u64) -> i64 {
    let release = &campaign.release;
    let (wave_word, offset_word) = user_words(user);
    let wave = scale(wave_word, u64::from(release.waves.max(1)));
    let offset_s = scale(offset_word, release.spread_s);
    let delay_s = wave.saturating_mul(release.wave_interval_s).saturating_add(offset_s);
    campaign.starts_at_unix_s.saturating_add(i64::try_from(delay_s).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Release;

    const EXAMPLE: &str = include_str!("../../../config/spring-festival.toml");

    fn campaign() -> Campaign {
        Campaign::parse(EXAMPLE, "x", &|_| None).unwrap()
    }

    #[test]
    fn waves_are_stable_in_range_and_about_uniform() {
        for waves in [1u32, 2, 3, 4, 7] {
            let mut counts = vec![0u32; waves as usize];
            let users = 70_000u64;
            for user in 10_000..10_000 + users {
                let w = wave_of(user, waves);
                assert_eq!(w, wave_of(user, waves));
                counts[w as usize] += 1;
            }
            let expected = users as f64 / f64::from(waves);
            for c in &counts {
                assert!((f64::from(*c) - expected).abs() < expected * 0.05, "{waves}: {counts:?}");
            }
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing these moves live users between waves; see the module docs.
        let waves: Vec<u32> = (10_000..10_008).map(|u| wave_of(u, 4)).collect();
        assert_eq!(waves, [2, 3, 1, 2, 0, 3, 2, 1]);
        let c = campaign();
        let delays_s: Vec<i64> =
            (10_000..10_008).map(|u| opens_at(&c, u) - c.starts_at_unix_s).collect();
        assert_eq!(delays_s, [256, 364, 134, 246, 6, 368, 240, 120]);
    }

    #[test]
    fn opens_at_lies_in_the_users_wave_and_spread() {
        let c = campaign();
        let Release { waves, wave_interval_s, spread_s } = c.release.clone();
        let mut offsets_seen = std::collections::HashSet::new();
        for user in 10_000..20_000u64 {
            let wave = i64::from(wave_of(user, waves));
            let start = c.starts_at_unix_s + wave * wave_interval_s as i64;
            let at = opens_at(&c, user);
            assert!((start..start + spread_s as i64).contains(&at), "{user}: {at}");
            offsets_seen.insert(at - start);
            assert!(at < c.ends_at_unix_s);
        }
        assert_eq!(offsets_seen.len(), spread_s as usize, "every offset second is used");
    }

    #[test]
    fn one_wave_without_spread_opens_at_the_start_for_everyone() {
        let mut c = campaign();
        c.release = Release { waves: 1, wave_interval_s: 0, spread_s: 0 };
        for user in [0, 1, 10_000, u64::MAX] {
            assert_eq!(wave_of(user, 1), 0);
            assert_eq!(opens_at(&c, user), c.starts_at_unix_s);
        }
    }
}
