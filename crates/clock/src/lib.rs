//! The one clock every part that decides reads: wall time as Unix milliseconds, and a way to wait
//! until a given time.
//!
//! Production injects [`SystemClock`]. Tests and simulations inject [`ManualClock`], which moves
//! only when told to, so a pacer, a deadline or a lease expiry can be driven step by step on
//! virtual time instead of by sleeping. Nothing that decides reads `SystemTime` itself.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

/// A clock that moves only when told to: [`ManualClock::advance_ms`] or [`ManualClock::set_ms`].
/// Sleepers wake when the time they wait for is reached.
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

    #[tokio::test(start_paused = true)]
    async fn system_sleep_waits_for_the_wall_time() {
        let clock = SystemClock;
        let before = clock.now_ms();
        clock.sleep_until(before).await;
        assert!(clock.now_ms() >= before);
    }
}
