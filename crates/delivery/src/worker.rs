//! One game's worker: its loop leases a small batch (what its pacer sends in `lease_ahead_ms`),
//! expires what is past its deadline, takes an in-flight permit, waits for the pacer's slot, and
//! spawns the call as a task it owns (the call and its outcome: `call.rs`).
//!
//! Every wait is on the injected clock or on an event (stop, pause, wake, an answer), so the
//! loop runs the same on wall time and on a test's manual clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hongbao_clock::{Clock, Sleep};
use hongbao_queue::{DeliveryQueue, Leased, QueueError, Retry};
use rand::rngs::SmallRng;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

use crate::config::DispatcherConfig;
use crate::game::{GameShared, RunningGuard, locked};
use crate::game_client::GameClient;
use crate::slot::ReservedSlot;

/// The next lease is asked for when the buffer holds less than this many milliseconds of sends.
const LEASE_LOW_WATER_MS: u64 = 30;

/// One game's worker.
pub(crate) struct Worker<Q: DeliveryQueue, G> {
    pub(crate) game: Arc<GameShared>,
    pub(crate) queue: Arc<Q>,
    pub(crate) client: Arc<G>,
    pub(crate) config: Arc<DispatcherConfig>,
    pub(crate) rng: Mutex<SmallRng>,
}

/// What one lease got.
type LeaseResult<L> = Result<Vec<Leased<L>>, QueueError>;

/// What the worker's loop holds between turns.
struct Turns<L> {
    stop: watch::Receiver<bool>,
    paused: watch::Receiver<bool>,
    /// Leased orders not sent yet, oldest first.
    buffer: VecDeque<Leased<L>>,
    /// The next lease, already asked for while the buffer still holds a few sends: a lease is
    /// a round trip to the store's writer, and waiting for it with an empty buffer would cost
    /// the pacer its slots. At most one task; a set so that it is aborted with the worker.
    leasing: JoinSet<LeaseResult<L>>,
    calls: JoinSet<()>,
}

/// Whether the loop goes on.
enum Flow {
    Next,
    Stop,
}

/// Why a send did not happen now.
enum Admit {
    Go,
    Wait,
}

impl<Q: DeliveryQueue, G: GameClient> Worker<Q, G> {
    fn clock(&self) -> &dyn Clock {
        &*self.game.clock
    }

    /// Runs until `stop` says stop, then hands unsent leases back and awaits the calls in
    /// flight (their outcomes recorded).
    pub(crate) async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let _running = RunningGuard(self.game.clone());
        let mut turns = Turns {
            stop,
            paused: self.game.paused.subscribe(),
            buffer: VecDeque::new(),
            leasing: JoinSet::new(),
            calls: JoinSet::new(),
        };
        while let Flow::Next = self.turn(&mut turns).await {}

        self.hand_back(&mut turns).await;
        while let Some(joined) = turns.calls.join_next().await {
            resume_if_panicked(joined);
        }
    }

    /// One turn of the loop: at most one order sent, expired or put back.
    async fn turn(self: &Arc<Self>, turns: &mut Turns<Q::Lease>) -> Flow {
        reap(&mut turns.calls);
        if *turns.stop.borrow() {
            return Flow::Stop;
        }
        if *turns.paused.borrow() {
            self.hand_back(turns).await;
            return tokio::select! {
                _ = stopped(&mut turns.stop) => Flow::Stop,
                _ = turns.paused.wait_for(|p| !*p) => Flow::Next,
            };
        }
        if let Some(until_us) = self.game.held_until_us(self.clock().monotonic_us()) {
            // Possibly a long outage: do not sit on leases meanwhile.
            self.hand_back(turns).await;
            return self.nap(turns, self.clock().sleep_until_monotonic_us(until_us)).await;
        }
        let now_us = self.clock().monotonic_us();
        if let Some(wait_us) = self.game.send_window.wait_us(now_us) {
            // Another worker process holds the game, or we just took it over and wait out the
            // handover: hold no leases meanwhile.
            self.hand_back(turns).await;
            let until_us = now_us.saturating_add(wait_us);
            return self.nap(turns, self.clock().sleep_until_monotonic_us(until_us)).await;
        }
        if let Some(leased) = turns.leasing.try_join_next() {
            self.buffer_leased(turns, leased);
        }
        if turns.leasing.is_empty() && turns.buffer.len() <= self.low_water() {
            self.start_lease(&mut turns.leasing);
        }
        let Some(entry) = turns.buffer.pop_front() else {
            if self.settle_lease(turns).await {
                return Flow::Next;
            }
            return self.nap(turns, self.clock().sleep_ms(self.config.idle_poll_ms)).await;
        };

        let now_ms = self.clock().now_ms();
        if now_ms >= entry.order.deliver_by_ms {
            self.expire(entry, now_ms).await;
            return Flow::Next;
        }
        if locked(&self.game.in_flight_ids).contains(&entry.order.order_id) {
            // Our earlier lease of this order was lost while its call runs; that call settles
            // the order. Put this lease back for after the call's longest time.
            let ready_at_ms = now_ms + self.game.call_guard.as_millis() as u64;
            let error = "leased again while a call was in flight".to_string();
            self.retry(entry, Retry { ready_at_ms, error, at_ms: now_ms }).await;
            return Flow::Next;
        }
        self.send(turns, entry).await
    }

    /// Waits for a permit and the pacer's slot, checks again what may have changed meanwhile,
    /// and spawns the call. An order not sent goes back to the front of the buffer.
    async fn send(self: &Arc<Self>, turns: &mut Turns<Q::Lease>, entry: Leased<Q::Lease>) -> Flow {
        let Some(permit) = self.in_flight_permit(turns).await else {
            turns.buffer.push_front(entry);
            return Flow::Stop;
        };
        let Some(slot) = self.slot_when_due(turns).await else {
            turns.buffer.push_front(entry);
            return Flow::Stop;
        };
        // Paused, expired, held or the game's lease lost meanwhile: the order is not sent, and the slot, dropped
        // unsent, goes back to the pacer.
        if *turns.paused.borrow() {
            turns.buffer.push_front(entry);
            return Flow::Next;
        }
        let now_ms = self.clock().now_ms();
        if now_ms >= entry.order.deliver_by_ms {
            self.expire(entry, now_ms).await;
            return Flow::Next;
        }
        if self.game.send_window.wait_us(self.clock().monotonic_us()).is_some() {
            turns.buffer.push_front(entry);
            return Flow::Next;
        }
        if let Admit::Wait = self.admit(self.clock().monotonic_us()) {
            turns.buffer.push_front(entry);
            return Flow::Next;
        }
        locked(&self.game.in_flight_ids).insert(entry.order.order_id.clone());
        turns.calls.spawn(self.clone().call(entry, slot.send(), permit));
        Flow::Next
    }

    /// One of the game's in-flight permits, or `None` when told to stop first.
    async fn in_flight_permit(&self, turns: &mut Turns<Q::Lease>) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            biased;
            _ = stopped(&mut turns.stop) => None,
            permit = self.game.permits.clone().acquire_owned() => {
                Some(permit.expect("the permits semaphore is never closed"))
            }
        }
    }

    /// The pacer's next slot once its time has come, or `None` when told to stop first.
    async fn slot_when_due(&self, turns: &mut Turns<Q::Lease>) -> Option<ReservedSlot> {
        let slot = loop {
            if let Some(slot) = ReservedSlot::reserve(&self.game) {
                break slot;
            }
            tokio::select! {
                biased;
                _ = stopped(&mut turns.stop) => return None,
                _ = self.game.answer.notified() => {}
            }
        };
        // A slot already due is used after a plain yield (the calls and the other games run
        // first). Even a past deadline given to tokio's timer waits for the timer driver's next
        // turn (it compares with the time of its last turn, not the clock), and on a busy
        // runtime turns come about every millisecond: one sleep per send capped a 900/s game
        // near 850/s.
        if slot.at_us() <= self.clock().monotonic_us() {
            tokio::task::yield_now().await;
            return Some(slot);
        }
        tokio::select! {
            biased;
            _ = stopped(&mut turns.stop) => None,
            _ = self.clock().sleep_until_monotonic_us(slot.at_us()) => Some(slot),
        }
    }

    /// Waits for `sleep`, or less if told to stop, paused or resumed, or woken.
    async fn nap(&self, turns: &mut Turns<Q::Lease>, sleep: Sleep<'_>) -> Flow {
        tokio::select! {
            _ = stopped(&mut turns.stop) => Flow::Stop,
            _ = turns.paused.changed() => Flow::Next,
            _ = self.game.wake.notified() => Flow::Next,
            _ = sleep => Flow::Next,
        }
    }

    /// Lets a send through unless the game is held. After consecutive failures it lets one
    /// probe through and holds the rest until the probe's answer.
    fn admit(&self, now_us: u64) -> Admit {
        let mut c = self.game.control();
        if c.hold_until_us.is_some_and(|t| t > now_us) {
            return Admit::Wait;
        }
        if c.consecutive_failures >= self.config.hold_after_failures {
            let guard_us = self.game.call_guard.as_micros() as u64;
            c.hold_until_us = Some(now_us.saturating_add(guard_us));
        }
        Admit::Go
    }

    /// Asks for the next batch, sized to what the pacer sends in `lease_ahead_ms`, in its own
    /// task so the sends go on meanwhile.
    fn start_lease(&self, leasing: &mut JoinSet<LeaseResult<Q::Lease>>) {
        let rate_per_s = self.game.control().pacer.rate_per_s(self.clock().monotonic_us());
        let ahead = rate_per_s * self.config.lease_ahead_ms as f64 / 1000.0;
        let max = (ahead.ceil() as usize).clamp(1, self.config.lease_batch_max);
        let queue = self.queue.clone();
        let game = self.game.index;
        let now_ms = self.clock().now_ms();
        leasing.spawn(async move {
            let leased = queue.lease(game, max, now_ms).await;
            if let Ok(leased) = &leased {
                assert!(leased.len() <= max, "the queue leased more than asked");
            }
            leased
        });
    }

    /// Sends left in the buffer below which the next lease is asked for: what the pacer sends
    /// in `LEASE_LOW_WATER_MS`.
    fn low_water(&self) -> usize {
        let rate_per_s = self.game.control().pacer.rate_per_s(self.clock().monotonic_us());
        (rate_per_s * LEASE_LOW_WATER_MS as f64 / 1000.0).ceil() as usize
    }

    /// Waits for the lease asked for (if any) and adds what it got to the buffer. Returns
    /// whether the buffer now holds anything. Never drops a lease: every leased order is either
    /// sent or handed back.
    async fn settle_lease(&self, turns: &mut Turns<Q::Lease>) -> bool {
        if let Some(leased) = turns.leasing.join_next().await {
            self.buffer_leased(turns, leased);
        }
        !turns.buffer.is_empty()
    }

    /// Adds what a lease got to the buffer.
    fn buffer_leased(
        &self,
        turns: &mut Turns<Q::Lease>,
        leased: Result<LeaseResult<Q::Lease>, tokio::task::JoinError>,
    ) {
        match leased {
            Ok(Ok(leased)) => {
                for l in &leased {
                    assert_eq!(l.order.game, self.game.index, "the queue leased another game");
                }
                turns.buffer.extend(leased);
            }
            Ok(Err(e)) => tracing::warn!(game = %self.game.id, error = %e, "cannot lease orders"),
            Err(e) => resume_if_panicked(Err(e)),
        }
    }

    /// Releases every unsent lease, the one asked for included (pause, hold, stop).
    async fn hand_back(&self, turns: &mut Turns<Q::Lease>) {
        self.settle_lease(turns).await;
        while let Some(entry) = turns.buffer.pop_front() {
            self.release(entry).await;
        }
    }
}

/// Waits until `stop` says stop (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Collects finished calls; a call that panicked is a bug and takes the worker down with it.
fn reap(calls: &mut JoinSet<()>) {
    while let Some(joined) = calls.try_join_next() {
        resume_if_panicked(joined);
    }
}

pub(crate) fn resume_if_panicked(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}
