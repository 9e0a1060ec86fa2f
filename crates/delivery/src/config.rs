//! The dispatcher's settings: every bound and interval is named here, with its default.

use serde::Serialize;

use crate::DispatchError;

/// Default share of a game's capacity the pacer uses. The pacer's window already bounds what the
/// game can see arrive in any second whatever the delays (see `pacer`); the slack covers a game
/// that counts differently from us (a coarser clock, a drifting one, a window closed at both
/// ends).
pub const PACING_HEADROOM_DEFAULT: f64 = 0.995;
/// Default bound on concurrent delivery calls to one game.
pub const IN_FLIGHT_PER_GAME_MAX_DEFAULT: usize = 64;
/// Default bound on orders leased in one call (and so held unsent by one worker).
pub const LEASE_BATCH_MAX_DEFAULT: usize = 256;
/// Default lease size in time: a worker leases what its pacer sends in this long.
pub const LEASE_AHEAD_MS_DEFAULT: u64 = 100;
/// Default wait before looking at an empty queue again (a [`crate::Dispatcher::wake`] cuts it).
pub const IDLE_POLL_MS_DEFAULT: u64 = 100;
/// Default bound on attempts (calls that reached the game and failed or timed out).
pub const ATTEMPTS_MAX_DEFAULT: u32 = 12;
/// Default first retry delay bound (full jitter: uniform in `0..=base·2^(n−1)`, capped).
pub const RETRY_BASE_MS_DEFAULT: u64 = 500;
/// Default cap on one retry delay.
pub const RETRY_CAP_MS_DEFAULT: u64 = 60_000;
/// Default AIMD multiplicative decrease on a busy answer.
pub const AIMD_DECREASE_FACTOR_DEFAULT: f64 = 0.7;
/// Default AIMD additive increase, as a share of the ceiling regained per second.
pub const AIMD_INCREASE_SHARE_PER_S_DEFAULT: f64 = 0.1;
/// Default minimum time between two multiplicative decreases.
pub const AIMD_DECREASE_HOLD_MS_DEFAULT: u64 = 1000;
/// Default lowest paced rate, deliveries per second.
pub const RATE_FLOOR_PER_S_DEFAULT: f64 = 1.0;
/// Default number of consecutive failed calls after which a game is held (no sends) for a
/// while: an outage must not burn every queued order's attempts.
pub const HOLD_AFTER_FAILURES_DEFAULT: u32 = 5;
/// Default first hold; doubles with every further failure, up to the cap.
pub const HOLD_BASE_MS_DEFAULT: u64 = 200;
/// Default longest hold (also the probe interval during a long outage).
pub const HOLD_CAP_MS_DEFAULT: u64 = 10_000;
/// Default slack on top of a game's `idip_timeout_ms` before a call is abandoned regardless of
/// the HTTP client (a belt-and-braces bound on every call).
pub const CALL_GUARD_SLACK_MS_DEFAULT: u64 = 1000;
/// Default wait before a new dispatcher's first send to a game: one capacity window, so the
/// sends of a previous instance (crashed or restarted a moment ago) have left the game's
/// one-second window before ours enter it.
pub const START_QUIET_MS_DEFAULT: u64 = 1000;
/// Default bound on the dead and expired order ids each game keeps for operators.
pub const RECENT_LIST_MAX_DEFAULT: usize = 32;

/// How the dispatcher paces, retries and bounds its work. `Default` is production.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DispatcherConfig {
    /// Multiplies every game's `delivery_capacity_per_s` (rounded, at least 1, as the game
    /// simulator rounds it), for tests and demos run at a fraction of the real capacity.
    pub capacity_scale: f64,
    /// Share of the (scaled) capacity the pacer uses, in `(0, 1]`.
    pub pacing_headroom: f64,
    pub in_flight_per_game_max: usize,
    pub lease_batch_max: usize,
    pub lease_ahead_ms: u64,
    pub idle_poll_ms: u64,
    pub attempts_max: u32,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub aimd_decrease_factor: f64,
    pub aimd_increase_share_per_s: f64,
    pub aimd_decrease_hold_ms: u64,
    pub rate_floor_per_s: f64,
    pub hold_after_failures: u32,
    pub hold_base_ms: u64,
    pub hold_cap_ms: u64,
    pub call_guard_slack_ms: u64,
    pub start_quiet_ms: u64,
    pub recent_list_max: usize,
}

impl Default for DispatcherConfig {
    fn default() -> DispatcherConfig {
        DispatcherConfig {
            capacity_scale: 1.0,
            pacing_headroom: PACING_HEADROOM_DEFAULT,
            in_flight_per_game_max: IN_FLIGHT_PER_GAME_MAX_DEFAULT,
            lease_batch_max: LEASE_BATCH_MAX_DEFAULT,
            lease_ahead_ms: LEASE_AHEAD_MS_DEFAULT,
            idle_poll_ms: IDLE_POLL_MS_DEFAULT,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            retry_base_ms: RETRY_BASE_MS_DEFAULT,
            retry_cap_ms: RETRY_CAP_MS_DEFAULT,
            aimd_decrease_factor: AIMD_DECREASE_FACTOR_DEFAULT,
            aimd_increase_share_per_s: AIMD_INCREASE_SHARE_PER_S_DEFAULT,
            aimd_decrease_hold_ms: AIMD_DECREASE_HOLD_MS_DEFAULT,
            rate_floor_per_s: RATE_FLOOR_PER_S_DEFAULT,
            hold_after_failures: HOLD_AFTER_FAILURES_DEFAULT,
            hold_base_ms: HOLD_BASE_MS_DEFAULT,
            hold_cap_ms: HOLD_CAP_MS_DEFAULT,
            call_guard_slack_ms: CALL_GUARD_SLACK_MS_DEFAULT,
            start_quiet_ms: START_QUIET_MS_DEFAULT,
            recent_list_max: RECENT_LIST_MAX_DEFAULT,
        }
    }
}

impl DispatcherConfig {
    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), DispatchError> {
        let bad = |field: &str, reason: String| {
            Err(DispatchError::InvalidConfig { field: field.to_string(), reason })
        };
        let s = self.capacity_scale;
        if !(s.is_finite() && s > 0.0) {
            return bad("capacity_scale", format!("{s} must be a positive number"));
        }
        let h = self.pacing_headroom;
        if !(h > 0.0 && h <= 1.0) {
            return bad("pacing_headroom", format!("{h} must be in (0, 1]"));
        }
        let f = self.aimd_decrease_factor;
        if !(f > 0.0 && f < 1.0) {
            return bad("aimd_decrease_factor", format!("{f} must be in (0, 1)"));
        }
        let i = self.aimd_increase_share_per_s;
        if !(i.is_finite() && i >= 0.0) {
            return bad("aimd_increase_share_per_s", format!("{i} must be non-negative"));
        }
        let r = self.rate_floor_per_s;
        if !(r.is_finite() && r > 0.0) {
            return bad("rate_floor_per_s", format!("{r} must be a positive number"));
        }
        let positive = [
            ("in_flight_per_game_max", self.in_flight_per_game_max as u64),
            ("lease_batch_max", self.lease_batch_max as u64),
            ("idle_poll_ms", self.idle_poll_ms),
            ("attempts_max", u64::from(self.attempts_max)),
            ("retry_base_ms", self.retry_base_ms),
            ("hold_after_failures", u64::from(self.hold_after_failures)),
            ("hold_base_ms", self.hold_base_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return bad(field, "must be positive".to_string());
            }
        }
        if self.retry_cap_ms < self.retry_base_ms {
            return bad("retry_cap_ms", "must not be below retry_base_ms".to_string());
        }
        if self.hold_cap_ms < self.hold_base_ms {
            return bad("hold_cap_ms", "must not be below hold_base_ms".to_string());
        }
        Ok(())
    }

    /// A game's capacity at this scale, rounded as the game simulator rounds it.
    pub fn scaled_capacity_per_s(&self, capacity_per_s: u32) -> f64 {
        (f64::from(capacity_per_s) * self.capacity_scale).round().max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_settings_are_named() {
        DispatcherConfig::default().validate().unwrap();
        type Change = fn(&mut DispatcherConfig);
        let cases: [(&str, Change); 5] = [
            ("capacity_scale", |c| c.capacity_scale = 0.0),
            ("pacing_headroom", |c| c.pacing_headroom = 1.5),
            ("aimd_decrease_factor", |c| c.aimd_decrease_factor = 1.0),
            ("in_flight_per_game_max", |c| c.in_flight_per_game_max = 0),
            ("retry_cap_ms", |c| c.retry_cap_ms = 1),
        ];
        for (field, change) in cases {
            let mut c = DispatcherConfig::default();
            change(&mut c);
            match c.validate() {
                Err(DispatchError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn scaled_capacity_rounds_like_the_simulator() {
        let c = DispatcherConfig { capacity_scale: 0.5, ..DispatcherConfig::default() };
        assert_eq!(c.scaled_capacity_per_s(900), 450.0);
        assert_eq!(c.scaled_capacity_per_s(27), 14.0); // 13.5 rounds away from zero
        let c = DispatcherConfig { capacity_scale: 0.01, ..DispatcherConfig::default() };
        assert_eq!(c.scaled_capacity_per_s(20), 1.0); // never below one
    }
}
