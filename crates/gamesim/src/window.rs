//! The per-game capacity limit: at most `capacity` applies in any sliding one-second window.
//!
//! A token bucket would allow a burst of `capacity` on top of a full second's refill; the real
//! game servers count deliveries per wall-clock window, and the stats promise "the most applies
//! in any one-second window", so the simulator keeps the instants themselves.

use std::collections::VecDeque;

use tokio::time::{Duration, Instant};

/// Length of the window the capacity applies to.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// The instants of the applies in the last second of one game. Never holds more than
/// `capacity_per_s` instants, so its memory is bounded by the game's capacity.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    capacity_per_s: usize,
    recent: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(crate) fn new(capacity_per_s: u32) -> SlidingWindow {
        assert!(capacity_per_s >= 1, "a game must accept at least one delivery per second");
        let capacity_per_s = usize::try_from(capacity_per_s).unwrap_or(usize::MAX);
        SlidingWindow { capacity_per_s, recent: VecDeque::with_capacity(capacity_per_s.min(4096)) }
    }

    /// Admits one apply at `now` if fewer than `capacity_per_s` happened in `(now - 1 s, now]`,
    /// returning how many the window holds with it; `None` means busy. `now` must not go
    /// backwards between calls (callers read the clock under the same lock).
    pub(crate) fn try_admit(&mut self, now: Instant) -> Option<usize> {
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= WINDOW {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.capacity_per_s {
            return None;
        }
        if let Some(&newest) = self.recent.back() {
            assert!(newest <= now, "the clock went backwards under the game lock");
        }
        self.recent.push_back(now);
        assert!(self.recent.len() <= self.capacity_per_s);
        Some(self.recent.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_capacity_per_window_and_frees_slots_exactly_one_second_later() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3);
        assert_eq!(w.try_admit(t0), Some(1));
        assert_eq!(w.try_admit(t0 + Duration::from_millis(400)), Some(2));
        assert_eq!(w.try_admit(t0 + Duration::from_millis(500)), Some(3));
        assert_eq!(w.try_admit(t0 + Duration::from_millis(999)), None);
        // The first apply leaves the window at t0 + 1 s: one slot frees, not three.
        assert_eq!(w.try_admit(t0 + Duration::from_millis(1000)), Some(3));
        assert_eq!(w.try_admit(t0 + Duration::from_millis(1001)), None);
        // Both t0+400 and t0+500 have left by t0+1500.
        assert_eq!(w.try_admit(t0 + Duration::from_millis(1500)), Some(2));
    }

    #[test]
    fn no_one_second_window_ever_holds_more_than_capacity() {
        // Applies attempted every 7 ms for 5 s at capacity 40: check every admitted instant
        // against all admitted instants less than a second before it.
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(40);
        let mut admitted = Vec::new();
        for i in 0..700u64 {
            let now = t0 + Duration::from_millis(7 * i);
            if w.try_admit(now).is_some() {
                admitted.push(now);
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[..=i].iter().filter(|&&s| t - s < WINDOW).count();
            assert!(in_window <= 40, "{in_window} applies within a second ending at index {i}");
        }
        // And it is not overly strict: about 40 per second over 5 s.
        assert!(admitted.len() >= 190, "{} admitted", admitted.len());
    }
}
