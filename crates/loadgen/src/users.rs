//! Which user sends each request, and what the generator remembers about a user between
//! iterations (the coupon it lists with, its roles per game).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hongbao_domain::Role;
use hongbao_domain::synth::FIRST_USER_ID;
use rand::Rng;

/// How users are drawn from `FIRST_USER_ID .. FIRST_USER_ID + users`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UserDist {
    /// Zipf-like skew with exponent `s` (> 0): the user of rank `r` (1 = `FIRST_USER_ID`) is
    /// drawn with probability roughly proportional to `r^-s`. Festival traffic has hot users.
    Zipf { s: f64 },
    /// Every user equally likely.
    Uniform,
    /// Users in order, wrapping around: distinct users until all have been used once (for
    /// benchmarks that need a fresh user and coupon per request).
    Sequential,
}

impl UserDist {
    pub fn describe(&self) -> String {
        match self {
            UserDist::Zipf { s } => format!("zipf(s={s})"),
            UserDist::Uniform => "uniform".into(),
            UserDist::Sequential => "sequential".into(),
        }
    }
}

/// Draws users. Deterministic for a seed: the same run offers the same users in the same order.
#[derive(Clone, Debug)]
pub struct UserSampler {
    dist: UserDist,
    users: u64,
    next_sequential: u64,
    /// Zipf: `(users + 1)^(1 - s)`, precomputed.
    top_pow: f64,
}

impl UserSampler {
    /// Panics if `users` is 0 or the range overflows (the caller validates).
    pub fn new(dist: UserDist, users: u64) -> UserSampler {
        assert!(users > 0, "at least one user");
        assert!(FIRST_USER_ID.checked_add(users).is_some(), "user range overflows u64");
        let top_pow = match dist {
            UserDist::Zipf { s } => {
                assert!(s.is_finite() && s > 0.0, "zipf exponent must be positive, got {s}");
                (users as f64 + 1.0).powf(1.0 - s)
            }
            _ => 0.0,
        };
        UserSampler { dist, users, next_sequential: 0, top_pow }
    }

    /// The next user id.
    pub fn next(&mut self, rng: &mut impl Rng) -> u64 {
        let index = match self.dist {
            UserDist::Sequential => {
                let i = self.next_sequential;
                self.next_sequential = (i + 1) % self.users;
                i
            }
            UserDist::Uniform => rng.random_range(0..self.users),
            UserDist::Zipf { s } => {
                // Inverse CDF of the continuous density ∝ x^-s on [1, users + 1), floored:
                // O(1) per draw and no table, whatever the number of users.
                let u: f64 = rng.random();
                let n1 = self.users as f64 + 1.0;
                let x = if (s - 1.0).abs() < 1e-9 {
                    n1.powf(u)
                } else {
                    (1.0 + u * (self.top_pow - 1.0)).powf(1.0 / (1.0 - s))
                };
                // x ≥ 1; the float may reach users + 1 at the very top.
                (x.floor() as u64).saturating_sub(1).min(self.users - 1)
            }
        };
        FIRST_USER_ID + index
    }
}

/// Most users the generator keeps state for. Past it a user simply has no remembered state (it
/// grabs again for a list, looks its roles up again), so memory stays bounded on long runs over
/// many users.
pub const USER_STATE_MAX: usize = 2_000_000;
const SHARDS: usize = 64;

#[derive(Default, Clone, Debug)]
struct UserState {
    /// The coupon the `list` scenario lists with (grabbed on the user's first use).
    list_coupon: Option<Arc<str>>,
    /// Known roles per game index.
    roles: Vec<(u8, Arc<[Role]>)>,
}

/// Per-user client state, sharded to keep lock hold times and contention small.
#[derive(Debug)]
pub struct UserStates {
    shards: Box<[Mutex<HashMap<u64, UserState>>]>,
    per_shard_max: usize,
}

impl Default for UserStates {
    fn default() -> Self {
        UserStates::new(USER_STATE_MAX)
    }
}

impl UserStates {
    pub fn new(max_users: usize) -> UserStates {
        UserStates {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard_max: max_users.div_ceil(SHARDS),
        }
    }

    fn shard(&self, user: u64) -> MutexGuard<'_, HashMap<u64, UserState>> {
        let shard = &self.shards[(user % SHARDS as u64) as usize];
        // A panic while holding the lock leaves plain data behind; keep going.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, user: u64, f: impl FnOnce(&mut UserState)) {
        let mut shard = self.shard(user);
        let full = shard.len() >= self.per_shard_max;
        match shard.get_mut(&user) {
            Some(state) => f(state),
            None if !full => f(shard.entry(user).or_default()),
            None => {}
        }
    }

    pub fn list_coupon(&self, user: u64) -> Option<Arc<str>> {
        self.shard(user).get(&user).and_then(|s| s.list_coupon.clone())
    }

    pub fn set_list_coupon(&self, user: u64, coupon: Arc<str>) {
        self.update(user, |s| s.list_coupon = Some(coupon));
    }

    pub fn roles(&self, user: u64, game: u8) -> Option<Arc<[Role]>> {
        let shard = self.shard(user);
        let state = shard.get(&user)?;
        state.roles.iter().find(|(g, _)| *g == game).map(|(_, r)| r.clone())
    }

    pub fn set_roles(&self, user: u64, game: u8, roles: Arc<[Role]>) {
        self.update(user, |s| match s.roles.iter_mut().find(|(g, _)| *g == game) {
            Some(slot) => slot.1 = roles,
            None => s.roles.push((game, roles)),
        });
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn draw(dist: UserDist, users: u64, n: usize) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut sampler = UserSampler::new(dist, users);
        (0..n).map(|_| sampler.next(&mut rng)).collect()
    }

    #[test]
    fn every_distribution_stays_in_range() {
        for dist in [
            UserDist::Zipf { s: 1.0 },
            UserDist::Zipf { s: 0.8 },
            UserDist::Zipf { s: 1.3 },
            UserDist::Uniform,
            UserDist::Sequential,
        ] {
            for users in [1, 2, 1000] {
                let ids = draw(dist, users, 5000);
                assert!(
                    ids.iter().all(|&u| (FIRST_USER_ID..FIRST_USER_ID + users).contains(&u)),
                    "{dist:?} over {users}"
                );
            }
        }
    }

    #[test]
    fn zipf_is_skewed_towards_the_first_users() {
        let ids = draw(UserDist::Zipf { s: 1.0 }, 10_000, 20_000);
        let hot = ids.iter().filter(|&&u| u < FIRST_USER_ID + 100).count();
        let cold = ids.iter().filter(|&&u| u >= FIRST_USER_ID + 9_900).count();
        // 1% of the users take about half the draws at s = 1; the last 1% almost none.
        assert!(hot > 5 * cold.max(1), "hot {hot}, cold {cold}");
        assert!(hot > 20_000 / 4, "hot {hot}");
    }

    #[test]
    fn sampling_is_deterministic_for_a_seed() {
        assert_eq!(
            draw(UserDist::Zipf { s: 0.8 }, 1_000_000, 100),
            draw(UserDist::Zipf { s: 0.8 }, 1_000_000, 100)
        );
    }

    #[test]
    fn sequential_visits_every_user_before_repeating() {
        let ids = draw(UserDist::Sequential, 5, 12);
        let want: Vec<u64> = (0..12).map(|i| FIRST_USER_ID + i % 5).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn user_state_is_bounded() {
        let states = UserStates::new(SHARDS); // one user per shard
        states.set_list_coupon(FIRST_USER_ID, "a".into());
        states.set_list_coupon(FIRST_USER_ID + SHARDS as u64, "b".into()); // same shard, full
        assert_eq!(states.list_coupon(FIRST_USER_ID).as_deref(), Some("a"));
        assert_eq!(states.list_coupon(FIRST_USER_ID + SHARDS as u64), None);
        // A user already held is still updated.
        states.set_roles(FIRST_USER_ID, 3, Arc::from(Vec::new()));
        assert!(states.roles(FIRST_USER_ID, 3).is_some());
        assert!(states.roles(FIRST_USER_ID, 4).is_none());
    }
}
