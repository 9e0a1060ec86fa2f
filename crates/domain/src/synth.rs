//! The synthetic user model: registrations, preference scores and roles, derived from a seed.
//!
//! `hongbao gen` writes this model to files and `hongbao game-sim` answers role queries from it;
//! both call the same pure functions with the same seed, so they agree by construction (a test
//! in the app checks the files against the simulator's answers).
//!
//! Users are `FIRST_USER_ID ..= FIRST_USER_ID + users - 1`; anyone else is registered nowhere on
//! both sides.

use crate::campaign::{GameIndex, MAX_GAMES};
use crate::profile::{GameSet, Profile};
use crate::role::{Role, RoleId, ZoneId};

/// First synthetic user id: QQ numbers start at five digits.
pub const FIRST_USER_ID: u64 = 10_000;
/// Zones (servers) per game; zone ids are `1..=ZONES_PER_GAME`.
pub const ZONES_PER_GAME: u16 = 8;
/// Regions, assigned to zones round-robin (see [`region_of_zone`]).
pub const REGIONS: [&str; 4] = ["cn-north", "cn-south", "cn-east", "cn-west"];
/// Highest role level the model produces.
pub const MAX_LEVEL: u32 = 60;
/// Most roles a user has in one game in the model.
pub const MAX_ROLES_PER_GAME: usize = 3;
/// Role ids stay below 2^53 so that JavaScript clients read them exactly.
pub const ROLE_ID_MASK: u64 = (1 << 53) - 1;

/// The region a zone belongs to; zones outside `1..=ZONES_PER_GAME` have none.
pub fn region_of_zone(zone_id: u16) -> Option<&'static str> {
    if zone_id == 0 || zone_id > ZONES_PER_GAME {
        return None;
    }
    Some(REGIONS[usize::from(zone_id - 1) % REGIONS.len()])
}

/// SplitMix64: tiny, fast, and the same on every platform, which is what determinism needs.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Mixes several words into one seed for an independent stream.
fn stream(words: &[u64]) -> SplitMix64 {
    let mut acc = 0x6A09_E667_F3BC_C908u64;
    for &w in words {
        acc = SplitMix64::new(acc ^ w).next_u64();
    }
    SplitMix64::new(acc)
}

/// The model for one seed, user count and game count.
#[derive(Clone, Debug)]
pub struct SynthModel {
    pub seed: u64,
    pub users: u64,
    pub games: usize,
}

impl SynthModel {
    pub fn new(seed: u64, users: u64, games: usize) -> SynthModel {
        assert!(games <= MAX_GAMES, "at most {MAX_GAMES} games");
        SynthModel { seed, users, games }
    }

    pub fn contains(&self, user: u64) -> bool {
        user >= FIRST_USER_ID && user - FIRST_USER_ID < self.users
    }

    /// Share of users registered in game `i`: popular games first, each less than the last.
    fn popularity(i: usize) -> f64 {
        0.55 * 0.8f64.powi(i32::try_from(i).unwrap_or(i32::MAX))
    }

    /// A user's registrations and preference scores. About a third of users are registered
    /// nowhere; the rest in at least one game, skewed towards the first games.
    pub fn profile(&self, user: u64) -> Profile {
        if !self.contains(user) {
            return Profile::NEW_USER;
        }
        let mut rng = stream(&[self.seed, user, 0x50524F46]);
        let mut mask = 0u16;
        if rng.next_f64() >= 1.0 / 3.0 {
            for i in 0..self.games {
                if rng.next_f64() < Self::popularity(i) {
                    mask |= 1 << i;
                }
            }
            if mask == 0 && self.games > 0 {
                let total: f64 = (0..self.games).map(Self::popularity).sum();
                let mut pick = rng.next_f64() * total;
                let mut chosen = self.games - 1;
                for i in 0..self.games {
                    pick -= Self::popularity(i);
                    if pick < 0.0 {
                        chosen = i;
                        break;
                    }
                }
                mask |= 1 << chosen;
            }
        }
        let mut preference = [0u8; MAX_GAMES];
        for (i, p) in preference.iter_mut().enumerate().take(self.games) {
            let a = (rng.next_u64() & 0xFF) as u8;
            // The recommender likes the games a user already plays a little more.
            *p = if mask & (1 << i) != 0 { a.max((rng.next_u64() & 0xFF) as u8) } else { a };
        }
        Profile { registered: GameSet(mask), preference }
    }

    /// The user's roles in one game (empty where not registered), at most [`MAX_ROLES_PER_GAME`].
    pub fn roles(&self, user: u64, game: GameIndex) -> Vec<Role> {
        self.roles_given(user, game, self.profile(user).registered)
    }

    /// [`SynthModel::roles`] for a caller that already holds the user's registrations (the
    /// generator), saving a second derivation of the profile.
    pub fn roles_given(&self, user: u64, game: GameIndex, registered: GameSet) -> Vec<Role> {
        if usize::from(game.0) >= self.games || !registered.contains(game) {
            return Vec::new();
        }
        let mut rng = stream(&[self.seed, user, u64::from(game.0), 0x524F4C45]);
        let draw = rng.next_f64();
        let count = if draw < 0.70 {
            1
        } else if draw < 0.95 {
            2
        } else {
            MAX_ROLES_PER_GAME
        };
        (0..count)
            .map(|_| {
                let zone_id = 1 + (rng.next_u64() % u64::from(ZONES_PER_GAME)) as u16;
                let u = rng.next_f64();
                // Many low levels, a long tail of veterans: about 30 % reach level 30.
                let level = 1 + (f64::from(MAX_LEVEL - 1) * u * u) as u32;
                Role {
                    zone_id: ZoneId(zone_id),
                    region: region_of_zone(zone_id).unwrap_or(REGIONS[0]).to_string(),
                    role_id: RoleId(rng.next_u64() & ROLE_ID_MASK),
                    level,
                }
            })
            .collect()
    }

    /// Role id of the `n`th role a user creates in a zone (the simulator's role creation);
    /// disjoint in practice from generated ids because the stream differs.
    pub fn created_role_id(&self, user: u64, game: GameIndex, zone_id: u16, n: u64) -> u64 {
        stream(&[self.seed, user, u64::from(game.0), u64::from(zone_id), n, 0x4E4557]).next_u64()
            & ROLE_ID_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_model_other_seed_other_model() {
        let a = SynthModel::new(7, 10_000, 10);
        let b = SynthModel::new(7, 10_000, 10);
        let c = SynthModel::new(8, 10_000, 10);
        let ids = FIRST_USER_ID..FIRST_USER_ID + 1000;
        assert!(ids.clone().all(|u| a.profile(u) == b.profile(u)));
        assert!(ids.clone().any(|u| a.profile(u) != c.profile(u)));
        for u in ids {
            for g in 0..10 {
                assert_eq!(a.roles(u, GameIndex(g)), b.roles(u, GameIndex(g)));
            }
        }
    }

    #[test]
    fn about_a_third_registered_nowhere_and_popularity_is_skewed() {
        let m = SynthModel::new(1, 100_000, 10);
        let mut nowhere = 0;
        let mut per_game = [0u32; 10];
        for u in FIRST_USER_ID..FIRST_USER_ID + 100_000 {
            let p = m.profile(u);
            if p.registered.is_empty() {
                nowhere += 1;
            }
            for (g, count) in per_game.iter_mut().enumerate() {
                if p.registered.contains(GameIndex(g as u8)) {
                    *count += 1;
                }
            }
        }
        let share = f64::from(nowhere) / 100_000.0;
        assert!((0.31..0.36).contains(&share), "share registered nowhere {share}");
        assert!(per_game[0] > per_game[4] && per_game[4] > per_game[9], "{per_game:?}");
    }

    #[test]
    fn roles_exist_exactly_where_registered_and_are_well_formed() {
        let m = SynthModel::new(3, 5_000, 10);
        for u in FIRST_USER_ID..FIRST_USER_ID + 5_000 {
            let p = m.profile(u);
            for g in 0..10u8 {
                let roles = m.roles(u, GameIndex(g));
                assert_eq!(!roles.is_empty(), p.registered.contains(GameIndex(g)));
                for r in roles {
                    assert!((1..=ZONES_PER_GAME).contains(&r.zone_id.0));
                    assert_eq!(Some(r.region.as_str()), region_of_zone(r.zone_id.0));
                    assert!((1..=MAX_LEVEL).contains(&r.level));
                    assert!(r.role_id.0 <= ROLE_ID_MASK);
                }
            }
        }
    }

    #[test]
    fn users_outside_the_range_are_registered_nowhere() {
        let m = SynthModel::new(3, 10, 10);
        assert!(m.profile(FIRST_USER_ID + 10).registered.is_empty());
        assert!(m.profile(1).registered.is_empty());
        assert!(m.roles(FIRST_USER_ID + 10, GameIndex(0)).is_empty());
    }
}
