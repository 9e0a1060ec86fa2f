//! One game's send schedule: GCRA with a burst of one, at a rate that AIMD adjusts, under a
//! sliding one-second window like the game's own.
//!
//! Why not `governor`: its quota is fixed when a limiter is built, while AIMD changes the rate
//! on every busy answer and recovers it continuously; and with a burst above one a GCRA limiter
//! lets a full burst through on top of a second's worth of cells, which is exactly the window
//! overflow the game punishes. A burst of one is plain arithmetic on the next free slot, so the
//! pacer is that arithmetic.
//!
//! The guarantee: any half-open one-second window holds at most `ceil(rate)` slots (the window
//! of recent slots enforces it), and the rate never exceeds the ceiling, the game's capacity
//! times a headroom below one (default 0.985): `1 / headroom − 1` seconds (≈ 15 ms) of slack per
//! window for jitter between our clock and the game's (network, scheduling).
//!
//! The schedule stays anchored: slots that came due while the sending task waited (the timer
//! wheel wakes up to a millisecond late, a busy runtime or a flush on the same core later still)
//! are used as soon as it runs again, up to `CATCH_UP` (15 ms, the headroom's slack) behind.
//! The window is the hard bound on what we send in any second, whatever the catch-up; the
//! catch-up is still kept short because the game counts arrivals, and a longer one (100 ms was
//! tried) sent bursts whose arrivals bunched past its capacity (busy refusals, each costing an
//! AIMD decrease).

use tokio::time::{Duration, Instant};

/// How far behind its schedule the pacer may catch up (see [`Pacer::reserve`]): slots older
/// than this are lost, so an idle game starts again without a burst of saved-up credit.
pub(crate) const CATCH_UP: Duration = Duration::from_millis(15);

/// The length of the game's capacity window.
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PacerSettings {
    /// Highest rate: the game's capacity times the headroom.
    pub ceiling_per_s: f64,
    /// Lowest rate a decrease may reach.
    pub floor_per_s: f64,
    /// Multiplier applied on a busy answer (e.g. 0.5).
    pub decrease_factor: f64,
    /// Rate regained per second after a decrease (absolute, per second).
    pub increase_per_s: f64,
    /// At most one decrease per this interval: a burst of busy answers from calls already in
    /// flight is one congestion signal, not many.
    pub decrease_hold: Duration,
}

#[derive(Debug)]
pub(crate) struct Pacer {
    settings: PacerSettings,
    rate_per_s: f64,
    /// The earliest instant of the next send (GCRA's theoretical arrival time, burst one).
    next_slot: Instant,
    /// When the additive increase was last applied.
    recovered_at: Instant,
    last_decrease: Option<Instant>,
    /// The slots handed out in the last second, oldest first (at most `ceil(ceiling)`).
    recent: std::collections::VecDeque<Instant>,
}

impl Pacer {
    /// A pacer whose first slot is `first_slot` (see `start_quiet_ms`).
    pub(crate) fn new(settings: PacerSettings, first_slot: Instant) -> Pacer {
        assert!(settings.ceiling_per_s > 0.0 && settings.ceiling_per_s.is_finite());
        assert!(settings.floor_per_s > 0.0 && settings.floor_per_s <= settings.ceiling_per_s);
        assert!(settings.decrease_factor > 0.0 && settings.decrease_factor < 1.0);
        assert!(settings.increase_per_s >= 0.0 && settings.increase_per_s.is_finite());
        Pacer {
            settings,
            rate_per_s: settings.ceiling_per_s,
            next_slot: first_slot,
            recovered_at: first_slot,
            last_decrease: None,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Reserves the next send slot and returns its instant (`now` or later). A slot that is
    /// not used is simply lost: no credit builds up while the game is idle, held or paused.
    pub(crate) fn reserve(&mut self, now: Instant) -> Instant {
        self.recover(now);
        // Anchored schedule, caught up to `CATCH_UP` behind (see the module doc).
        let earliest = now.checked_sub(CATCH_UP).unwrap_or(now);
        let mut slot = self.next_slot.max(earliest).max(now);
        // Slots never go back in time (the window below relies on their order).
        if let Some(&last) = self.recent.back() {
            slot = slot.max(last);
        }
        // The window: at most `ceil(rate)` slots in any half-open second `(t − 1 s, t]`.
        let allowed = (self.rate_per_s.ceil() as usize).max(1);
        while self.recent.len() > allowed {
            self.recent.pop_front();
        }
        if self.recent.len() == allowed {
            // The oldest of the last `allowed` slots must have left the window.
            slot = slot.max(self.recent[0] + WINDOW);
            self.recent.pop_front();
        }
        self.recent.push_back(slot);
        self.next_slot = self.next_slot.max(earliest) + self.interval();
        slot
    }

    /// A busy answer: lowers the rate multiplicatively, at most once per `decrease_hold`.
    /// Returns whether it did.
    pub(crate) fn on_busy(&mut self, now: Instant) -> bool {
        self.recover(now);
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < self.settings.decrease_hold)
        {
            return false;
        }
        self.last_decrease = Some(now);
        self.rate_per_s =
            (self.rate_per_s * self.settings.decrease_factor).max(self.settings.floor_per_s);
        true
    }

    /// The current rate (after applying the recovery due by `now`).
    pub(crate) fn rate_per_s(&mut self, now: Instant) -> f64 {
        self.recover(now);
        self.rate_per_s
    }

    /// Rounded up to the nanosecond: `k` intervals never add up to less than `k / rate`.
    fn interval(&self) -> Duration {
        Duration::from_nanos((1e9 / self.rate_per_s).ceil() as u64)
    }

    fn recover(&mut self, now: Instant) {
        let elapsed_s = now.saturating_duration_since(self.recovered_at).as_secs_f64();
        self.recovered_at = self.recovered_at.max(now);
        self.rate_per_s = (self.rate_per_s + self.settings.increase_per_s * elapsed_s)
            .min(self.settings.ceiling_per_s);
        assert!(self.rate_per_s >= self.settings.floor_per_s.min(self.settings.ceiling_per_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PACING_HEADROOM_DEFAULT;

    fn settings(ceiling_per_s: f64) -> PacerSettings {
        PacerSettings {
            ceiling_per_s,
            floor_per_s: 1.0,
            decrease_factor: 0.5,
            increase_per_s: 10.0,
            decrease_hold: Duration::from_millis(1000),
        }
    }

    /// At most `ceil(ceiling)` slots in any half-open one-second window, however the caller
    /// asks (in bursts, late, with gaps).
    #[test]
    fn no_one_second_window_holds_more_than_the_ceiling() {
        let t0 = Instant::now();
        for ceiling in [1.0, 9.8, 19.6, 49.0, 88.2, 882.0] {
            let mut p = Pacer::new(settings(ceiling), t0);
            let mut slots = Vec::new();
            let mut now = t0;
            for i in 0..3000u64 {
                let slot = p.reserve(now);
                assert!(slot >= now);
                slots.push(slot);
                // Mostly eager callers, sometimes late ones (the timer fired late, a gap).
                if i % 97 == 0 {
                    now = slot + Duration::from_millis(300);
                } else if i % 13 == 0 {
                    now = slot + Duration::from_millis(3);
                } else {
                    now = slot;
                }
            }
            let limit = ceiling.ceil() as usize;
            // The bound the dispatcher relies on: below the capacity the ceiling was cut from.
            assert!(limit as f64 <= (ceiling / PACING_HEADROOM_DEFAULT).ceil());
            for (i, &s) in slots.iter().enumerate() {
                let in_window =
                    slots[i..].iter().take_while(|&&t| t - s < Duration::from_secs(1)).count();
                assert!(in_window <= limit, "ceiling {ceiling}: {in_window} slots in a second");
            }
        }
    }

    #[test]
    fn a_backlog_is_sent_at_the_ceiling() {
        let t0 = Instant::now();
        let mut p = Pacer::new(settings(50.0), t0);
        let mut last = t0;
        for _ in 0..500 {
            last = p.reserve(t0);
        }
        // 500 slots at 50/s span 499 intervals.
        let span = last - t0;
        assert!((span.as_secs_f64() - 9.98).abs() < 1e-6, "{span:?}");
    }

    #[test]
    fn busy_halves_once_per_hold_and_recovers_additively() {
        let t0 = Instant::now();
        let mut p = Pacer::new(settings(100.0), t0);
        assert!(p.on_busy(t0));
        assert_eq!(p.rate_per_s(t0), 50.0);
        // More busy answers from calls already in flight: one signal.
        assert!(!p.on_busy(t0 + Duration::from_millis(10)));
        let r = p.rate_per_s(t0 + Duration::from_millis(10));
        assert!((r - 50.1).abs() < 1e-9, "{r}");
        // 2 s later: +20.
        let r = p.rate_per_s(t0 + Duration::from_secs(2));
        assert!((r - 70.0).abs() < 1e-9, "{r}");
        assert!(p.on_busy(t0 + Duration::from_secs(2)));
        assert!((p.rate_per_s(t0 + Duration::from_secs(2)) - 35.0).abs() < 1e-9);
        // Recovery stops at the ceiling.
        assert_eq!(p.rate_per_s(t0 + Duration::from_secs(60)), 100.0);
    }

    #[test]
    fn the_first_slot_waits_for_the_quiet_start() {
        let t0 = Instant::now();
        let quiet = t0 + Duration::from_secs(1);
        let mut p = Pacer::new(settings(10.0), quiet);
        assert_eq!(p.reserve(t0), quiet);
        assert_eq!(p.reserve(t0), quiet + Duration::from_millis(100));
    }

    #[test]
    fn decreases_stop_at_the_floor() {
        let t0 = Instant::now();
        let mut s = settings(4.0);
        s.increase_per_s = 0.0;
        let mut p = Pacer::new(s, t0);
        for i in 0..10 {
            p.on_busy(t0 + Duration::from_secs(2 * i));
        }
        assert_eq!(p.rate_per_s(t0 + Duration::from_secs(30)), 1.0);
    }
}
