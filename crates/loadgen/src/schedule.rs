//! When each request is meant to be sent: a piecewise-linear rate curve and its inverse.
//!
//! Open-loop load is defined by intended send times, not by how fast the server answers: the
//! k-th request (0-based) is due at the time `t` where the cumulative count `N(t) = ∫ rate`
//! reaches `k`. Latency is measured from that time, so a stalled server shows up as latency
//! instead of silently lowering the load (coordinated omission).

use std::time::Duration;

/// Fraction of the peak that a spike starts from and falls back to: the traffic before and after
/// midnight on festival eve.
pub const SPIKE_BASE_FRACTION: f64 = 0.1;
/// Longest ramp (and longest tail) of a spike; shorter runs use a quarter of their length.
pub const SPIKE_RAMP_MAX: Duration = Duration::from_secs(5);

/// How the rate evolves over the measured part of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The rate from start to end.
    Constant,
    /// Festival eve: from a tenth of the rate up to the rate within a few seconds, hold, then
    /// drop back to a tenth for the last few seconds.
    Spike,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Constant => "constant",
            Profile::Spike => "spike",
        }
    }

    /// The rate a warm-up runs at: the level the profile starts from.
    pub fn base_rate_per_s(self, rate_per_s: f64) -> f64 {
        match self {
            Profile::Constant => rate_per_s,
            Profile::Spike => rate_per_s * SPIKE_BASE_FRACTION,
        }
    }

    /// Segments of the measured part for a peak rate and a length.
    pub fn segments(self, rate_per_s: f64, duration: Duration) -> Vec<Segment> {
        match self {
            Profile::Constant => vec![Segment::constant(rate_per_s, duration)],
            Profile::Spike => {
                let edge = SPIKE_RAMP_MAX.min(duration / 4);
                let hold = duration.saturating_sub(edge * 2);
                let base = self.base_rate_per_s(rate_per_s);
                vec![
                    Segment { length: edge, from_rate_per_s: base, to_rate_per_s: rate_per_s },
                    Segment::constant(rate_per_s, hold),
                    Segment::constant(base, edge),
                ]
            }
        }
    }
}

/// A stretch of time over which the rate moves linearly from one value to another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub length: Duration,
    pub from_rate_per_s: f64,
    pub to_rate_per_s: f64,
}

impl Segment {
    pub fn constant(rate_per_s: f64, length: Duration) -> Segment {
        Segment { length, from_rate_per_s: rate_per_s, to_rate_per_s: rate_per_s }
    }

    fn count(&self) -> f64 {
        self.length.as_secs_f64() * (self.from_rate_per_s + self.to_rate_per_s) / 2.0
    }
}

#[derive(Clone, Debug)]
struct Placed {
    start_s: f64,
    length_s: f64,
    from_rate_per_s: f64,
    /// Rate change per second within the segment.
    slope_per_s2: f64,
    count_before: f64,
    count: f64,
}

/// A whole run's rate curve: warm-up, then the profile.
#[derive(Clone, Debug)]
pub struct Schedule {
    placed: Vec<Placed>,
    total_s: f64,
    total_count: f64,
}

impl Schedule {
    /// Panics on a negative or non-finite rate (the caller validates its input).
    pub fn new(segments: &[Segment]) -> Schedule {
        let mut placed = Vec::with_capacity(segments.len());
        let (mut start_s, mut count_before) = (0.0, 0.0);
        for s in segments {
            assert!(
                s.from_rate_per_s.is_finite()
                    && s.to_rate_per_s.is_finite()
                    && s.from_rate_per_s >= 0.0
                    && s.to_rate_per_s >= 0.0,
                "rates must be finite and non-negative: {s:?}"
            );
            let length_s = s.length.as_secs_f64();
            let count = s.count();
            if length_s > 0.0 {
                placed.push(Placed {
                    start_s,
                    length_s,
                    from_rate_per_s: s.from_rate_per_s,
                    slope_per_s2: (s.to_rate_per_s - s.from_rate_per_s) / length_s,
                    count_before,
                    count,
                });
            }
            start_s += length_s;
            count_before += count;
        }
        Schedule { placed, total_s: start_s, total_count: count_before }
    }

    /// Warm-up at the profile's base rate, then the profile.
    pub fn for_run(
        profile: Profile,
        rate_per_s: f64,
        warmup: Duration,
        duration: Duration,
    ) -> Self {
        let mut segments = vec![Segment::constant(profile.base_rate_per_s(rate_per_s), warmup)];
        segments.extend(profile.segments(rate_per_s, duration));
        Schedule::new(&segments)
    }

    /// How many requests the whole curve schedules (before rounding up to whole requests).
    pub fn expected_count(&self) -> f64 {
        self.total_count
    }

    /// How many requests [`Schedule::time_of`] gives a time for.
    pub fn count(&self) -> u64 {
        if self.total_count > 0.0 { self.total_count.ceil() as u64 } else { 0 }
    }

    pub fn total(&self) -> Duration {
        Duration::from_secs_f64(self.total_s)
    }

    /// Offset from the start at which request `k` (0-based) is due; `None` once the curve has
    /// scheduled all its requests.
    pub fn time_of(&self, k: u64) -> Option<Duration> {
        let m = k as f64;
        if m >= self.total_count {
            return None;
        }
        let seg = self.placed.iter().find(|p| m < p.count_before + p.count)?;
        let m = m - seg.count_before;
        // Solve r0·τ + a·τ²/2 = m for τ ≥ 0 in the form that is stable for any sign of a and
        // for r0 = 0: τ = 2m / (r0 + √(r0² + 2am)).
        let r0 = seg.from_rate_per_s;
        let disc = (r0 * r0 + 2.0 * seg.slope_per_s2 * m).max(0.0);
        let denom = r0 + disc.sqrt();
        let tau = if m == 0.0 || denom <= 0.0 { 0.0 } else { 2.0 * m / denom };
        Some(Duration::from_secs_f64(seg.start_s + tau.min(seg.length_s)))
    }

    /// The rate at offset `t` (for progress displays and tests).
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        self.placed
            .iter()
            .find(|p| t >= p.start_s && t < p.start_s + p.length_s)
            .map_or(0.0, |p| p.from_rate_per_s + p.slope_per_s2 * (t - p.start_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_times(s: &Schedule) -> Vec<f64> {
        let times: Vec<f64> = (0..).map_while(|k| s.time_of(k)).map(|d| d.as_secs_f64()).collect();
        assert_eq!(s.count(), times.len() as u64, "count agrees with time_of");
        times
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::new(&[Segment::constant(100.0, Duration::from_secs(2))]);
        let times = all_times(&s);
        assert_eq!(times.len(), 200);
        for (k, t) in times.iter().enumerate() {
            assert!((t - k as f64 / 100.0).abs() < 1e-9, "request {k} at {t}");
        }
    }

    #[test]
    fn linear_ramp_from_zero_follows_the_square_root() {
        // N(t) = peak·t²/(2R): over R = 4 s up to 100/s that is 200 requests, the k-th at
        // √(2Rk/peak).
        let s = Schedule::new(&[Segment {
            length: Duration::from_secs(4),
            from_rate_per_s: 0.0,
            to_rate_per_s: 100.0,
        }]);
        let times = all_times(&s);
        assert_eq!(times.len(), 200);
        for (k, t) in times.iter().enumerate() {
            let want = (2.0 * 4.0 * k as f64 / 100.0).sqrt();
            assert!((t - want).abs() < 1e-9, "request {k} at {t}, want {want}");
        }
        // Denser at the end than at the start.
        assert!(times[1] - times[0] > times[199] - times[198]);
    }

    #[test]
    fn decreasing_ramp_is_monotone_and_counts_the_area() {
        let s = Schedule::new(&[Segment {
            length: Duration::from_secs(2),
            from_rate_per_s: 300.0,
            to_rate_per_s: 100.0,
        }]);
        let times = all_times(&s);
        assert_eq!(times.len(), 400);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(times.last().is_some_and(|&t| t < 2.0));
        // Sparser at the end than at the start.
        assert!(times[1] - times[0] < times[399] - times[398]);
    }

    #[test]
    fn spike_ramps_holds_and_drops() {
        let rate = 1000.0;
        let duration = Duration::from_secs(20);
        let s = Schedule::for_run(Profile::Spike, rate, Duration::ZERO, duration);
        // ramp 5 s from 100 to 1000/s, hold 10 s at 1000/s, tail 5 s at 100/s.
        let want = 5.0 * 550.0 + 10.0 * 1000.0 + 5.0 * 100.0;
        assert!((s.expected_count() - want).abs() < 1e-6);
        let times = all_times(&s);
        assert_eq!(times.len() as f64, want);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!((s.rate_at(Duration::ZERO) - 100.0).abs() < 1e-9);
        assert!((s.rate_at(Duration::from_millis(2500)) - 550.0).abs() < 1e-9);
        assert!((s.rate_at(Duration::from_secs(10)) - 1000.0).abs() < 1e-9);
        assert!((s.rate_at(Duration::from_secs(16)) - 100.0).abs() < 1e-9);
        assert_eq!(s.rate_at(Duration::from_secs(21)), 0.0);
        // Requests in the hold second 10..11 and in the tail second 16..17.
        let in_window = |a: f64, b: f64| times.iter().filter(|&&t| t >= a && t < b).count();
        assert_eq!(in_window(10.0, 11.0), 1000);
        assert_eq!(in_window(16.0, 17.0), 100);
    }

    #[test]
    fn short_spike_uses_quarters() {
        let segs = Profile::Spike.segments(100.0, Duration::from_secs(4));
        assert_eq!(segs[0].length, Duration::from_secs(1));
        assert_eq!(segs[1].length, Duration::from_secs(2));
        assert_eq!(segs[2].length, Duration::from_secs(1));
    }

    #[test]
    fn warmup_runs_at_the_base_rate_before_the_profile() {
        let s = Schedule::for_run(
            Profile::Constant,
            50.0,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        let times = all_times(&s);
        assert_eq!(times.len(), 150);
        assert_eq!(times.iter().filter(|&&t| t < 1.0).count(), 50);
        assert_eq!(s.total(), Duration::from_secs(3));
    }

    #[test]
    fn fractional_counts_round_up() {
        let s = Schedule::new(&[Segment::constant(3.3, Duration::from_secs(3))]);
        assert_eq!(all_times(&s).len(), 10);
        assert_eq!(Schedule::new(&[]).count(), 0);
    }

    #[test]
    fn zero_length_and_zero_rate_segments_schedule_nothing() {
        let s = Schedule::new(&[
            Segment::constant(100.0, Duration::ZERO),
            Segment::constant(0.0, Duration::from_secs(1)),
            Segment::constant(10.0, Duration::from_secs(1)),
        ]);
        let times = all_times(&s);
        assert_eq!(times.len(), 10);
        assert!(times.iter().all(|&t| (1.0..2.0).contains(&t)));
    }
}
