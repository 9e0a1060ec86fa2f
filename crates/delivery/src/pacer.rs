//! One game's send schedule: GCRA with a burst of one, at a rate that AIMD adjusts, under a
//! sliding one-second window like the game's own.
//!
//! Why not `governor`: its quota is fixed when a limiter is built, while AIMD changes the rate
//! on every busy answer and recovers it continuously; and with a burst above one a GCRA limiter
//! lets a full burst through on top of a second's worth of cells, which is exactly the window
//! overflow the game punishes. A burst of one is plain arithmetic on the next free slot, so the
//! pacer is that arithmetic.
//!
//! The guarantee is stated in the game's terms: the game counts arrivals, at most its capacity in
//! any one-second window, and an arrival is somewhere between our send and its answer. So a send
//! occupies our window from its reservation until one second after its answer (or until it is
//! abandoned unsent): every send that can arrive in some one-second window of the game's was
//! occupying our window when the last of them was reserved, and the window never holds more than
//! `ceil(rate)`. Network jitter, a stall of ours between reservation and send, a stall of the
//! game's that bunches a backlog of arrivals — none of them can make the game see more than
//! `ceil(rate)` in a second. (Counting slots instead, as this pacer first did, let a 20 ms stall
//! of the game bunch 20 ms of arrivals into one window a second later: busy refusals in every
//! game at once, each costing an AIMD decrease.) The price is that each send holds its place in
//! the window for its round trip as well, about a millisecond here. The rate never exceeds the
//! ceiling, the game's capacity times a headroom below one (default 0.995), for the game's clock
//! drifting from ours.
//!
//! The schedule stays anchored: slots that came due while the sending task waited (the timer
//! wheel wakes up to a millisecond late, a busy runtime or a flush on the same core later still)
//! are used as soon as it runs again, up to `CATCH_UP_US` (15 ms) behind; older ones are lost, so
//! an idle game does not start again with a burst of saved-up credit.
//!
//! Times are microseconds of the injected clock's monotonic scale
//! ([`hongbao_clock::Clock::monotonic_us`]): the pacer itself never reads a clock, so tests give
//! it any instants they like.

use std::collections::VecDeque;

/// How far behind its schedule the pacer may catch up (see [`Pacer::reserve`]): slots older
/// than this are lost, so an idle game starts again without a burst of saved-up credit.
const CATCH_UP_US: u64 = 15_000;

/// The length of the game's capacity window.
const WINDOW_US: u64 = 1_000_000;

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
    pub decrease_hold_us: u64,
}

#[derive(Debug)]
pub(crate) struct Pacer {
    settings: PacerSettings,
    rate_per_s: f64,
    /// The earliest instant of the next send (GCRA's theoretical arrival time, burst one).
    next_slot_us: u64,
    /// When the additive increase was last applied.
    recovered_at_us: u64,
    last_decrease_us: Option<u64>,
    /// Reserved sends not answered yet (each occupies the window until its answer).
    in_flight: usize,
    /// Answer instants, oldest first; each leaves the window one second after it (dropped at
    /// the next call after that). Each was a reservation made while the window had room at its
    /// slot, so they number at most the reservations of about the last second.
    answered_us: VecDeque<u64>,
}

/// When the next send may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Reserved for this instant (now or later); the caller must report the send's end with
    /// [`Pacer::answered`], or [`Pacer::unused`] if it sends nothing after all (the worker holds
    /// it as a `slot::ReservedSlot`, which does either when dropped).
    AtUs(u64),
    /// The window is full of sends still waiting for their answers: nothing reserved; ask
    /// again after the next answer.
    AfterAnAnswer,
}

impl Pacer {
    /// A pacer whose first slot is `first_slot_us` (see `start_quiet_ms`).
    pub(crate) fn new(settings: PacerSettings, first_slot_us: u64) -> Pacer {
        assert!(settings.ceiling_per_s > 0.0 && settings.ceiling_per_s.is_finite());
        assert!(settings.floor_per_s > 0.0 && settings.floor_per_s <= settings.ceiling_per_s);
        assert!(settings.decrease_factor > 0.0 && settings.decrease_factor < 1.0);
        assert!(settings.increase_per_s >= 0.0 && settings.increase_per_s.is_finite());
        Pacer {
            settings,
            rate_per_s: settings.ceiling_per_s,
            next_slot_us: first_slot_us,
            recovered_at_us: first_slot_us,
            last_decrease_us: None,
            in_flight: 0,
            answered_us: VecDeque::new(),
        }
    }

    /// Reserves the next send slot (see [`Slot`]). A slot that is not used is simply lost: no
    /// credit builds up while the game is idle, held or paused.
    pub(crate) fn reserve(&mut self, now_us: u64) -> Slot {
        self.recover(now_us);
        self.forget_answers_left(now_us);
        // The window: at most `ceil(rate)` sends occupying it at the slot (see the module doc).
        let allowed = (self.rate_per_s.ceil() as usize).max(1);
        let occupied = self.in_flight + self.answered_us.len();
        let mut slot_us = now_us;
        if occupied >= allowed {
            // The oldest answers must leave first, and only answered sends ever leave.
            let must_leave = occupied + 1 - allowed;
            match self.answered_us.get(must_leave - 1) {
                Some(&t) => slot_us = slot_us.max(t + WINDOW_US),
                None => return Slot::AfterAnAnswer,
            }
        }
        // Anchored schedule, caught up to `CATCH_UP_US` behind (see the module doc).
        let earliest_us = now_us.checked_sub(CATCH_UP_US).unwrap_or(now_us);
        slot_us = slot_us.max(self.next_slot_us.max(earliest_us));
        self.next_slot_us = self.next_slot_us.max(earliest_us) + self.interval_us();
        self.in_flight += 1;
        Slot::AtUs(slot_us)
    }

    /// A reserved send got its answer (or was given up waiting for) at `now_us`: it leaves the
    /// window one second later.
    pub(crate) fn answered(&mut self, now_us: u64) {
        assert!(self.in_flight > 0, "an answer without a reservation");
        self.in_flight -= 1;
        self.forget_answers_left(now_us);
        // Kept in order: the window pops from the front.
        let at_us = self.answered_us.back().map_or(now_us, |&last| last.max(now_us));
        self.answered_us.push_back(at_us);
    }

    /// Drops the answers that have left the window by `now_us`.
    fn forget_answers_left(&mut self, now_us: u64) {
        while self.answered_us.front().is_some_and(|&t| t + WINDOW_US <= now_us) {
            self.answered_us.pop_front();
        }
    }

    /// A reserved slot was not used: nothing was sent, so nothing can arrive.
    pub(crate) fn unused(&mut self) {
        assert!(self.in_flight > 0, "an unused slot without a reservation");
        self.in_flight -= 1;
    }

    /// A busy answer: lowers the rate multiplicatively, at most once per `decrease_hold_us`.
    /// Returns whether it did.
    pub(crate) fn on_busy(&mut self, now_us: u64) -> bool {
        self.recover(now_us);
        if self
            .last_decrease_us
            .is_some_and(|t| now_us.saturating_sub(t) < self.settings.decrease_hold_us)
        {
            return false;
        }
        self.last_decrease_us = Some(now_us);
        self.rate_per_s =
            (self.rate_per_s * self.settings.decrease_factor).max(self.settings.floor_per_s);
        true
    }

    /// The current rate (after applying the recovery due by `now_us`).
    pub(crate) fn rate_per_s(&mut self, now_us: u64) -> f64 {
        self.recover(now_us);
        self.rate_per_s
    }

    /// Rounded up to the microsecond: `k` intervals never add up to less than `k / rate`.
    fn interval_us(&self) -> u64 {
        (1e6 / self.rate_per_s).ceil() as u64
    }

    fn recover(&mut self, now_us: u64) {
        let elapsed_s = now_us.saturating_sub(self.recovered_at_us) as f64 / 1e6;
        self.recovered_at_us = self.recovered_at_us.max(now_us);
        self.rate_per_s = (self.rate_per_s + self.settings.increase_per_s * elapsed_s)
            .min(self.settings.ceiling_per_s);
        assert!(self.rate_per_s >= self.settings.floor_per_s.min(self.settings.ceiling_per_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PACING_HEADROOM_DEFAULT;

    /// Any origin will do: the pacer only compares and adds.
    const T0_US: u64 = 5_000_000;
    const MS_US: u64 = 1_000;
    const S_US: u64 = 1_000_000;

    fn settings(ceiling_per_s: f64) -> PacerSettings {
        PacerSettings {
            ceiling_per_s,
            floor_per_s: 1.0,
            decrease_factor: 0.5,
            increase_per_s: 10.0,
            decrease_hold_us: S_US,
        }
    }

    /// Reserves the next slot, which must be granted (the window has room).
    fn at(p: &mut Pacer, now_us: u64) -> u64 {
        match p.reserve(now_us) {
            Slot::AtUs(slot_us) => {
                assert!(slot_us >= now_us);
                slot_us
            }
            Slot::AfterAnAnswer => panic!("no slot although every send was answered"),
        }
    }

    /// The guarantee, checked where it matters: on the game's side. Sends whose arrival is
    /// delayed by us (a stall between reservation and send), by the network, or by the game
    /// itself (a stall that bunches a backlog of arrivals) never put more than `ceil(rate)`
    /// arrivals in any one-second window of the game's, and the window is not overly strict:
    /// with short delays a backlog goes out near the ceiling.
    #[test]
    fn no_one_second_window_of_the_game_sees_more_than_allowed() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        use std::{cmp::Reverse, collections::BinaryHeap};
        let ms = |n: u64| n * MS_US;
        for (seed, ceiling) in [(1u64, 1.0), (2, 9.8), (3, 19.6), (4, 88.2), (5, 882.0), (6, 49.0)]
        {
            let mut rng = SmallRng::seed_from_u64(seed);
            let t0 = T0_US;
            let mut p = Pacer::new(settings(ceiling), t0);
            let mut answers: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
            let mut arrivals = Vec::new();
            // The game stalls for up to 200 ms now and then: arrivals meanwhile wait for its end.
            let mut stall_start = t0 + ms(rng.random_range(0..1500));
            let mut stall_end = stall_start + ms(rng.random_range(0..200));
            let mut now = t0;
            let end = t0 + 20 * S_US;
            while now < end {
                while let Some(&Reverse(at)) = answers.peek().filter(|a| a.0 <= now) {
                    answers.pop();
                    p.answered(at);
                }
                let slot = match p.reserve(now) {
                    Slot::AtUs(slot) => slot,
                    Slot::AfterAnAnswer => {
                        now = answers.peek().expect("sends in flight fill the window").0;
                        continue;
                    }
                };
                assert!(slot >= now);
                if rng.random_ratio(1, 50) {
                    // Paused or expired after all: nothing sent.
                    p.unused();
                    now = slot;
                    continue;
                }
                // Our side: usually prompt, sometimes late (a stall between slot and send).
                let sent = slot
                    + if rng.random_ratio(1, 100) { ms(30) } else { ms(rng.random_range(0..2)) };
                let mut arrived = sent + rng.random_range(50..3000);
                if arrived >= stall_start && arrived < stall_end {
                    arrived = stall_end + rng.random_range(0..500);
                }
                if arrived >= stall_end {
                    stall_start = arrived + ms(rng.random_range(300..2000));
                    stall_end = stall_start + ms(rng.random_range(0..200));
                }
                arrivals.push(arrived);
                answers.push(Reverse(arrived + rng.random_range(50..2000)));
                // Mostly an eager caller, about every other second a late one.
                let late = rng.random_bool((0.5 / ceiling).min(1.0));
                now = if late { slot + ms(300) } else { slot };
            }
            arrivals.sort();
            let limit = ceiling.ceil() as usize;
            // The bound the dispatcher relies on: below the capacity the ceiling was cut from.
            assert!(limit as f64 <= (ceiling / PACING_HEADROOM_DEFAULT).ceil());
            for (i, &a) in arrivals.iter().enumerate() {
                let in_window = arrivals[i..].iter().take_while(|&&t| t - a < S_US).count();
                assert!(in_window <= limit, "ceiling {ceiling}: {in_window} arrivals in a second");
            }
            // Not overly strict: stalls and late callers cost their time, little more.
            let sent_per_s = arrivals.len() as f64 / 20.0;
            assert!(sent_per_s >= 0.75 * ceiling, "ceiling {ceiling}: {sent_per_s}/s");
        }
    }

    #[test]
    fn a_backlog_is_sent_at_the_ceiling() {
        let mut p = Pacer::new(settings(50.0), T0_US);
        let mut last = T0_US;
        for _ in 0..500 {
            last = at(&mut p, last);
            // Answered at once: only the schedule spaces the sends.
            p.answered(last);
        }
        // 500 slots at 50/s span 499 intervals of 20 ms.
        assert_eq!(last - T0_US, 499 * 20 * MS_US);
    }

    #[test]
    fn sends_wait_for_answers_when_they_fill_the_window() {
        let mut p = Pacer::new(settings(3.0), T0_US);
        let slots: Vec<u64> = (0..3).map(|_| at(&mut p, T0_US)).collect();
        // Three in flight fill a window of three: no slot until one is answered.
        assert_eq!(p.reserve(slots[2]), Slot::AfterAnAnswer);
        let answered_at = slots[2] + 5 * MS_US;
        p.answered(answered_at);
        // The answered send leaves the window a second after its answer, not after its slot.
        assert_eq!(p.reserve(answered_at), Slot::AtUs(answered_at + S_US));
        // An unused slot frees its place at once.
        p.unused();
        assert!(matches!(p.reserve(answered_at), Slot::AtUs(_)));
    }

    #[test]
    fn busy_halves_once_per_hold_and_recovers_additively() {
        let t0 = T0_US;
        let mut p = Pacer::new(settings(100.0), t0);
        assert!(p.on_busy(t0));
        assert_eq!(p.rate_per_s(t0), 50.0);
        // More busy answers from calls already in flight: one signal.
        assert!(!p.on_busy(t0 + 10 * MS_US));
        let r = p.rate_per_s(t0 + 10 * MS_US);
        assert!((r - 50.1).abs() < 1e-9, "{r}");
        // 2 s later: +20.
        let r = p.rate_per_s(t0 + 2 * S_US);
        assert!((r - 70.0).abs() < 1e-9, "{r}");
        assert!(p.on_busy(t0 + 2 * S_US));
        assert!((p.rate_per_s(t0 + 2 * S_US) - 35.0).abs() < 1e-9);
        // Recovery stops at the ceiling.
        assert_eq!(p.rate_per_s(t0 + 60 * S_US), 100.0);
    }

    #[test]
    fn the_first_slot_waits_for_the_quiet_start() {
        let quiet = T0_US + S_US;
        let mut p = Pacer::new(settings(10.0), quiet);
        assert_eq!(at(&mut p, T0_US), quiet);
        assert_eq!(at(&mut p, T0_US), quiet + 100 * MS_US);
    }

    #[test]
    fn decreases_stop_at_the_floor() {
        let mut s = settings(4.0);
        s.increase_per_s = 0.0;
        let mut p = Pacer::new(s, T0_US);
        for i in 0..10 {
            p.on_busy(T0_US + 2 * i * S_US);
        }
        assert_eq!(p.rate_per_s(T0_US + 30 * S_US), 1.0);
    }
}
