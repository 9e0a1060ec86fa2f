//! When to close a group commit: as soon as the callers have nothing more to add.
//!
//! The writer commits what has queued up and, while it waits for the fsync, the next batch
//! queues. With the writer and the runtime on the same core that loop settles at small batches:
//! the writer, woken by the first command, preempts the runtime (it slept, so the scheduler owes
//! it time) and commits the few commands there are, and every batch pays an fsync and two
//! context switches. Profiles put those at about a quarter of a claim's CPU with 15–30 commands
//! per batch.
//!
//! So the writer may linger: after its first command it waits until a runtime worker is idle
//! (then no more commands are coming soon) or a short deadline passes, whichever is first. An
//! idle runtime means no wait at all, so a lone claim is committed at once; only a busy runtime
//! (a storm of claims) makes the writer wait, which is exactly when a larger batch is free.
//! The runtime reports its idleness through its park and unpark hooks ([`RuntimeIdle::parked`],
//! [`RuntimeIdle::unparked`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many of the runtime's workers are parked (idle), with a way to wait for one to park.
#[derive(Debug, Default)]
pub struct RuntimeIdle {
    parked: AtomicUsize,
    /// A writer is waiting: only then does a park take the lock to wake it.
    waiting: AtomicBool,
    lock: Mutex<()>,
    parked_now: Condvar,
}

impl RuntimeIdle {
    /// For the runtime's `on_thread_park` hook: a worker is about to go idle.
    pub fn parked(&self) {
        self.parked.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.parked_now.notify_all();
        }
    }

    /// For the runtime's `on_thread_unpark` hook: a worker runs tasks again.
    pub fn unparked(&self) {
        // Saturating: a hook installed while workers were already parked must not wrap.
        let _ = self.parked.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Waits until some worker is parked or `deadline` passes. Returns at once if one is.
    pub(crate) fn wait_until_idle(&self, deadline: Instant) {
        if self.parked.load(Ordering::SeqCst) > 0 {
            return;
        }
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // Set before the check below: a park after the check sees it and takes the lock,
        // which it gets only once this thread waits (no lost wake-up).
        self.waiting.store(true, Ordering::SeqCst);
        while self.parked.load(Ordering::SeqCst) == 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            guard = self
                .parked_now
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

/// The writer's linger (see the module doc).
#[derive(Clone, Debug)]
pub struct CommitLinger {
    /// Longest wait for an idle runtime after a batch's first command.
    pub max: Duration,
    /// The idleness of the runtime whose tasks send the commands.
    pub idle: Arc<RuntimeIdle>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_runtime_means_no_wait() {
        let idle = RuntimeIdle::default();
        idle.parked();
        // A deadline an hour away: returning proves it did not wait for it.
        idle.wait_until_idle(Instant::now() + Duration::from_secs(3600));
        idle.unparked();
        idle.unparked(); // more unparks than parks stay at zero
        assert_eq!(idle.parked.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_busy_runtime_is_waited_for_until_it_parks() {
        let idle = Arc::new(RuntimeIdle::default());
        let waiter = {
            let idle = idle.clone();
            std::thread::spawn(move || {
                idle.wait_until_idle(Instant::now() + Duration::from_secs(3600));
            })
        };
        // Whether the park comes before or after the wait begins, the waiter returns.
        idle.parked();
        waiter.join().expect("the waiter returns once a worker parks");
    }

    #[test]
    fn the_deadline_ends_the_wait_when_the_runtime_stays_busy() {
        let idle = RuntimeIdle::default();
        let deadline = Instant::now() + Duration::from_millis(5);
        idle.wait_until_idle(deadline);
        assert!(Instant::now() >= deadline);
    }
}
