//! The one clock every part that decides reads: wall time as Unix milliseconds, a monotonic
//! reading in microseconds for pacing and intervals, and a way to wait until a given time on
//! either.
//!
//! Production injects [`SystemClock`]. Tests and simulations inject [`ManualClock`], which moves
//! only when told to, so a pacer, a deadline or a lease expiry can be driven step by step on
//! virtual time instead of by sleeping. Nothing that decides reads `SystemTime` or `Instant`
//! itself.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A boxed sleep: clocks are used as `Arc<dyn Clock>`, and waits are rare next to reads.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Wall time, injected.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Unix milliseconds now.
    fn now_ms(&self) -> u64;

    /// Resolves once [`Clock::now_ms`] is at least `at_ms` (at once if it already is).
    fn sleep_until(&self, at_ms: u64) -> Sleep<'_>;

    /// Unix seconds now (tickets, coupons and campaign windows are in seconds).
    fn now_unix_s(&self) -> i64 {
        i64::try_from(self.now_ms() / 1000).unwrap_or(i64::MAX)
    }

    /// Resolves `ms` milliseconds from now.
    fn sleep_ms(&self, ms: u64) -> Sleep<'_> {
        self.sleep_until(self.now_ms().saturating_add(ms))
    }

    /// Microseconds on a scale that never goes backwards, from an origin of the clock's own
    /// choosing: for rates and intervals (a pacer's schedule, a hold), which a wall clock
    /// stepped by NTP must not squeeze or stretch. Finer than milliseconds because a pacer at
    /// ~900 sends/s spaces them ~1.1 ms apart.
    ///
    /// The default is the wall clock's reading, which is right for a clock whose wall time
    /// never goes backwards (a manual one).
    fn monotonic_us(&self) -> u64 {
        self.now_ms().saturating_mul(1000)
    }

    /// Resolves once [`Clock::monotonic_us`] is at least `at_us` (at once if it already is).
    fn sleep_until_monotonic_us(&self, at_us: u64) -> Sleep<'_> {
        self.sleep_until(at_us.div_ceil(1000))
    }
}

/// A shared clock, as the services hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock. Sleeps use tokio's timer, so they need a tokio runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // Before 1970 only on a broken machine: 0 then, which every window treats as "not yet".
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep_until(&self, at_ms: u64) -> Sleep<'_> {
        let wait_ms = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait_ms)))
    }

    fn monotonic_us(&self) -> u64 {
        u64::try_from(monotonic_origin().elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn sleep_until_monotonic_us(&self, at_us: u64) -> Sleep<'_> {
        let wait_us = at_us.saturating_sub(self.monotonic_us());
        Box::pin(tokio::time::sleep(Duration::from_micros(wait_us)))
    }
}

/// The origin of [`SystemClock::monotonic_us`]: the first reading in the process, so every
/// system clock shares one scale.
fn monotonic_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// A clock that moves only when told to: [`ManualClock::advance_ms`] or [`ManualClock::set_ms`].
/// Sleepers wake when the time they wait for is reached. [`ManualClock::set_ms`] may also move
/// it back (a test that puts a campaign before its start); a pacer under test is only advanced.
///
/// Its monotonic reading is its wall time in microseconds, so it moves in whole milliseconds.
/// A test that moves it and then asserts needs to know when every task has done all it can at
/// the new time: run it on a paused tokio runtime (`#[tokio::test(start_paused = true)]`),
/// whose own clock moves only when every task is parked, and await a short tokio sleep after
/// each move (as `crates/delivery/tests/virtual_time.rs` does).
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
    moved: watch::Sender<u64>,
}

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock { now_ms: AtomicU64::new(now_ms), moved: watch::Sender::new(now_ms) })
    }

    /// Moves the clock forward by `ms` and wakes the sleepers now due.
    pub fn advance_ms(&self, ms: u64) {
        let now = self.now_ms.fetch_add(ms, Ordering::AcqRel).saturating_add(ms);
        self.moved.send_replace(now);
    }

    /// Sets the clock to `at_ms`, also backwards: a test may put the campaign before its start
    /// and then after its end. Sleepers wake once the time they wait for is reached.
    pub fn set_ms(&self, at_ms: u64) {
        self.now_ms.store(at_ms, Ordering::Release);
        self.moved.send_replace(at_ms);
    }

    /// Sleepers waiting now (for tests that advance once everyone waits).
    pub fn sleepers(&self) -> usize {
        self.moved.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Acquire)
    }

    fn sleep_until(&self, at_ms: u64) -> Sleep<'_> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which outlives this future.
            let _ = moved.wait_for(|now| *now >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_their_time_comes_and_not_before() {
        let clock = ManualClock::new(1_000);
        let late = clock.sleep_until(3_000);
        let now = clock.sleep_until(1_000);
        now.await;
        let early = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { clock.sleep_until(1_500).await }
        });
        drop(late);
        tokio::task::yield_now().await;
        assert!(!early.is_finished());
        clock.advance_ms(499);
        tokio::task::yield_now().await;
        assert!(!early.is_finished());
        clock.advance_ms(1);
        early.await.expect("the sleeper wakes");
        assert_eq!(clock.now_ms(), 1_500);
        assert_eq!(clock.now_unix_s(), 1);
    }

    #[tokio::test]
    async fn manual_monotonic_time_is_the_wall_time_in_microseconds() {
        let clock = ManualClock::new(2_000);
        assert_eq!(clock.monotonic_us(), 2_000_000);
        // A sleep to a fraction of a millisecond wakes at the next whole one.
        let sleeper = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { clock.sleep_until_monotonic_us(2_000_001).await }
        });
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_ms(1);
        sleeper.await.expect("the sleeper wakes");
        assert_eq!(clock.monotonic_us(), 2_001_000);
    }

    #[tokio::test(start_paused = true)]
    async fn system_sleeps_wait_for_the_wall_and_the_monotonic_time() {
        let clock = SystemClock;
        let (before_ms, before_us) = (clock.now_ms(), clock.monotonic_us());
        clock.sleep_until(before_ms).await;
        clock.sleep_until_monotonic_us(before_us).await;
        assert!(clock.now_ms() >= before_ms);
        assert!(clock.monotonic_us() >= before_us);
    }
}
