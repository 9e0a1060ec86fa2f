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
//! are used as soon as it runs again, up to `CATCH_UP` (15 ms) behind; older ones are lost, so
//! an idle game does not start again with a burst of saved-up credit.

use std::collections::VecDeque;

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
    /// Reserved sends not answered yet (each occupies the window until its answer).
    in_flight: usize,
    /// Answer instants, oldest first; each leaves the window one second after it (dropped at
    /// the next call after that). Each was a reservation made while the window had room at its
    /// slot, so they number at most the reservations of about the last second.
    answered: VecDeque<Instant>,
}

/// When the next send may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Reserved for this instant (now or later); the caller must report the send's end with
    /// [`Pacer::answered`], or [`Pacer::unused`] if it sends nothing after all.
    At(Instant),
    /// The window is full of sends still waiting for their answers: nothing reserved; ask
    /// again after the next answer.
    AfterAnAnswer,
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
            in_flight: 0,
            answered: VecDeque::new(),
        }
    }

    /// Reserves the next send slot (see [`Slot`]). A slot that is not used is simply lost: no
    /// credit builds up while the game is idle, held or paused.
    pub(crate) fn reserve(&mut self, now: Instant) -> Slot {
        self.recover(now);
        self.forget_answers_left(now);
        // The window: at most `ceil(rate)` sends occupying it at the slot (see the module doc).
        let allowed = (self.rate_per_s.ceil() as usize).max(1);
        let occupied = self.in_flight + self.answered.len();
        let mut slot = now;
        if occupied >= allowed {
            // The oldest answers must leave first, and only answered sends ever leave.
            let must_leave = occupied + 1 - allowed;
            match self.answered.get(must_leave - 1) {
                Some(&t) => slot = slot.max(t + WINDOW),
                None => return Slot::AfterAnAnswer,
            }
        }
        // Anchored schedule, caught up to `CATCH_UP` behind (see the module doc).
        let earliest = now.checked_sub(CATCH_UP).unwrap_or(now);
        slot = slot.max(self.next_slot.max(earliest));
        self.next_slot = self.next_slot.max(earliest) + self.interval();
        self.in_flight += 1;
        Slot::At(slot)
    }

    /// A reserved send got its answer (or was given up waiting for) at `now`: it leaves the
    /// window one second later.
    pub(crate) fn answered(&mut self, now: Instant) {
        assert!(self.in_flight > 0, "an answer without a reservation");
        self.in_flight -= 1;
        self.forget_answers_left(now);
        // Kept in order: the window pops from the front.
        let at = self.answered.back().map_or(now, |&last| last.max(now));
        self.answered.push_back(at);
    }

    /// Drops the answers that have left the window by `now`.
    fn forget_answers_left(&mut self, now: Instant) {
        while self.answered.front().is_some_and(|&t| t + WINDOW <= now) {
            self.answered.pop_front();
        }
    }

    /// A reserved slot was not used: nothing was sent, so nothing can arrive.
    pub(crate) fn unused(&mut self) {
        assert!(self.in_flight > 0, "an unused slot without a reservation");
        self.in_flight -= 1;
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

    /// Reserves the next slot, which must be granted (the window has room).
    fn at(p: &mut Pacer, now: Instant) -> Instant {
        match p.reserve(now) {
            Slot::At(slot) => {
                assert!(slot >= now);
                slot
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
        let ms = Duration::from_millis;
        for (seed, ceiling) in [(1u64, 1.0), (2, 9.8), (3, 19.6), (4, 88.2), (5, 882.0), (6, 49.0)]
        {
            let mut rng = SmallRng::seed_from_u64(seed);
            let t0 = Instant::now();
            let mut p = Pacer::new(settings(ceiling), t0);
            let mut answers: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
            let mut arrivals = Vec::new();
            // The game stalls for up to 200 ms now and then: arrivals meanwhile wait for its end.
            let mut stall_start = t0 + ms(rng.random_range(0..1500));
            let mut stall_end = stall_start + ms(rng.random_range(0..200));
            let mut now = t0;
            let end = t0 + Duration::from_secs(20);
            while now < end {
                while let Some(&Reverse(at)) = answers.peek().filter(|a| a.0 <= now) {
                    answers.pop();
                    p.answered(at);
                }
                let slot = match p.reserve(now) {
                    Slot::At(slot) => slot,
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
                let mut arrived = sent + Duration::from_micros(rng.random_range(50..3000));
                if arrived >= stall_start && arrived < stall_end {
                    arrived = stall_end + Duration::from_micros(rng.random_range(0..500));
                }
                if arrived >= stall_end {
                    stall_start = arrived + ms(rng.random_range(300..2000));
                    stall_end = stall_start + ms(rng.random_range(0..200));
                }
                arrivals.push(arrived);
                answers.push(Reverse(arrived + Duration::from_micros(rng.random_range(50..2000))));
                // Mostly an eager caller, about every other second a late one.
                let late = rng.random_bool((0.5 / ceiling).min(1.0));
                now = if late { slot + ms(300) } else { slot };
            }
            arrivals.sort();
            let limit = ceiling.ceil() as usize;
            // The bound the dispatcher relies on: below the capacity the ceiling was cut from.
            assert!(limit as f64 <= (ceiling / PACING_HEADROOM_DEFAULT).ceil());
            for (i, &a) in arrivals.iter().enumerate() {
                let in_window =
                    arrivals[i..].iter().take_while(|&&t| t - a < Duration::from_secs(1)).count();
                assert!(in_window <= limit, "ceiling {ceiling}: {in_window} arrivals in a second");
            }
            // Not overly strict: stalls and late callers cost their time, little more.
            let sent_per_s = arrivals.len() as f64 / 20.0;
            assert!(sent_per_s >= 0.75 * ceiling, "ceiling {ceiling}: {sent_per_s}/s");
        }
    }

    #[test]
    fn a_backlog_is_sent_at_the_ceiling() {
        let t0 = Instant::now();
        let mut p = Pacer::new(settings(50.0), t0);
        let mut last = t0;
        for _ in 0..500 {
            last = at(&mut p, last);
            // Answered at once: only the schedule spaces the sends.
            p.answered(last);
        }
        // 500 slots at 50/s span 499 intervals.
        let span = last - t0;
        assert!((span.as_secs_f64() - 9.98).abs() < 1e-6, "{span:?}");
    }

    #[test]
    fn sends_wait_for_answers_when_they_fill_the_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(settings(3.0), t0);
        let slots: Vec<Instant> = (0..3).map(|_| at(&mut p, t0)).collect();
        // Three in flight fill a window of three: no slot until one is answered.
        assert_eq!(p.reserve(slots[2]), Slot::AfterAnAnswer);
        let answered_at = slots[2] + Duration::from_millis(5);
        p.answered(answered_at);
        // The answered send leaves the window a second after its answer, not after its slot.
        assert_eq!(p.reserve(answered_at), Slot::At(answered_at + Duration::from_secs(1)));
        // An unused slot frees its place at once.
        p.unused();
        assert!(matches!(p.reserve(answered_at), Slot::At(_)));
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
        assert_eq!(at(&mut p, t0), quiet);
        assert_eq!(at(&mut p, t0), quiet + Duration::from_millis(100));
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
