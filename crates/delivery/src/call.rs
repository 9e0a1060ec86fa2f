//! One delivery call and what its answer means: the order's outcome in the queue (delivered,
//! released, retried with backoff, dead, expired) and the game's control (AIMD on busy, a hold
//! after consecutive failures).

use std::sync::Arc;

use hongbao_gateway::{DeliveryOutcome, DeliveryRequest, GatewayError};
use hongbao_queue::{DeliveryQueue, FinalState, Finish, Leased, QueueError, Retry};
use rand::Rng;
use rand::rngs::SmallRng;
use tokio::sync::OwnedSemaphorePermit;

use crate::game::{bump, locked};
use crate::game_client::GameClient;
use crate::slot::SentSlot;
use crate::worker::Worker;

/// What a call's answer means for the order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Applied now or before (`duplicate`).
    Delivered { duplicate: bool },
    /// Over capacity: the game did no work. Retry soon, slow down.
    Busy,
    /// Failed or unknown (timeout, outage, transient refusal): retry with backoff.
    Failed(String),
    /// No retry helps.
    Permanent(String),
}

pub(crate) fn verdict(
    answer: Result<Result<DeliveryOutcome, GatewayError>, tokio::time::error::Elapsed>,
) -> Verdict {
    match answer {
        Err(_) => Verdict::Failed("no answer within the call guard".to_string()),
        Ok(Ok(DeliveryOutcome::Applied)) => Verdict::Delivered { duplicate: false },
        Ok(Ok(DeliveryOutcome::Duplicate)) => Verdict::Delivered { duplicate: true },
        Ok(Ok(DeliveryOutcome::Busy)) => Verdict::Busy,
        Ok(Ok(DeliveryOutcome::Error { reason, permanent: true })) => Verdict::Permanent(reason),
        Ok(Ok(DeliveryOutcome::Error { reason, permanent: false })) => Verdict::Failed(reason),
        // A game outside the campaign: the order itself is wrong.
        Ok(Err(e @ GatewayError::UnknownGame(_))) => Verdict::Permanent(e.to_string()),
        // Timeouts and outages, and also protocol errors and refusals of the endpoint itself
        // (a misconfigured URL): the game, not the order, is at fault, so retry (bounded).
        Ok(Err(e)) => Verdict::Failed(e.to_string()),
    }
}

/// The delay before retry number `attempts` (≥ 1): full jitter over an exponential bound.
pub(crate) fn backoff_ms(rng: &mut SmallRng, attempts: u32, base_ms: u64, cap_ms: u64) -> u64 {
    let shift = attempts.saturating_sub(1).min(32);
    let bound = base_ms.saturating_mul(1u64 << shift).min(cap_ms);
    rng.random_range(0..=bound)
}

impl<Q: DeliveryQueue, G: GameClient> Worker<Q, G> {
    /// One delivery call and its record.
    pub(crate) async fn call(
        self: Arc<Self>,
        entry: Leased<Q::Lease>,
        slot: SentSlot,
        permit: OwnedSemaphorePermit,
    ) {
        let o = &entry.order;
        let request = DeliveryRequest {
            serial: o.order_id.clone(),
            user: o.user,
            game: o.game,
            zone_id: o.zone_id,
            role_id: o.role_id,
            items: o.items.clone(),
        };
        // The guard is on tokio's timer, not the injected clock: it bounds how long a real
        // network call can hold a permit whatever the HTTP client does, which is a matter of
        // the sockets' time. Nothing is decided by it but "no answer" (the call's end is read
        // from the injected clock below), and a fake game on virtual time answers before it.
        // The game side's latency for the dashboard: a figure that decides nothing, so on
        // `Instant` like the store's commit durations.
        let started = std::time::Instant::now();
        let answer =
            tokio::time::timeout(self.game.call_guard, self.client.deliver(&request)).await;
        self.game.metrics.call_duration.record(started.elapsed().as_secs_f64());
        slot.answered();
        drop(permit);
        let order_id = request.serial;
        self.settle(entry, verdict(answer)).await;
        locked(&self.game.in_flight_ids).remove(&order_id);
    }

    async fn settle(&self, entry: Leased<Q::Lease>, verdict: Verdict) {
        let now_ms = self.game.clock.now_ms();
        let now_us = self.game.clock.monotonic_us();
        let attempts = entry.order.attempts;
        let deliver_by_ms = entry.order.deliver_by_ms;
        // A retry after the deadline is due at the deadline, where it expires on time.
        let ready_at = |delay_ms: u64| now_ms.saturating_add(delay_ms).min(deliver_by_ms);
        match verdict {
            Verdict::Delivered { duplicate } => {
                self.answered();
                let state = FinalState::Delivered { duplicate };
                if self.finish(entry, Finish { state, at_ms: now_ms }).await {
                    bump(&self.game.counters.delivered);
                    if duplicate {
                        bump(&self.game.counters.duplicates);
                        self.game.metrics.duplicate.increment(1);
                    } else {
                        self.game.metrics.delivered.increment(1);
                    }
                }
            }
            Verdict::Busy => {
                bump(&self.game.counters.busy);
                self.game.metrics.busy.increment(1);
                self.answered();
                let lowered = {
                    let mut c = self.game.control();
                    c.pacer.on_busy(now_us).then(|| c.pacer.rate_per_s(now_us))
                };
                if let Some(rate) = lowered {
                    tracing::info!(game = %self.game.id, rate_per_s = rate, "game busy: rate lowered");
                }
                // No attempt made: back in its place, sent again at the lowered rate.
                self.release(entry).await;
            }
            Verdict::Permanent(reason) => {
                self.answered();
                self.dead(entry, reason, now_ms).await;
            }
            Verdict::Failed(reason) => {
                self.failed(now_us);
                let attempts = attempts + 1;
                if attempts >= self.config.attempts_max {
                    let reason = format!("{attempts} attempts failed, the last: {reason}");
                    self.dead(entry, reason, now_ms).await;
                    return;
                }
                let delay_ms = backoff_ms(
                    &mut locked(&self.rng),
                    attempts,
                    self.config.retry_base_ms,
                    self.config.retry_cap_ms,
                );
                tracing::debug!(game = %self.game.id, order = %entry.order.order_id, attempts, delay_ms, %reason, "delivery failed: retrying");
                let retry = Retry { ready_at_ms: ready_at(delay_ms), error: reason, at_ms: now_ms };
                if self.retry(entry, retry).await {
                    bump(&self.game.counters.retries);
                    self.game.metrics.retry.increment(1);
                }
            }
        }
    }

    /// The game answered: any hold ends, and the worker looks again at once.
    fn answered(&self) {
        let lifted = {
            let mut c = self.game.control();
            c.consecutive_failures = 0;
            c.hold_until_us.take().is_some()
        };
        if lifted {
            tracing::info!(game = %self.game.id, "game answers again: hold lifted");
            self.game.wake.notify_one();
        }
    }

    /// A failed call: after `hold_after_failures` in a row, hold sends for an exponentially
    /// growing while (one probe after each hold).
    fn failed(&self, now_us: u64) {
        let mut c = self.game.control();
        c.consecutive_failures = c.consecutive_failures.saturating_add(1);
        let over = c.consecutive_failures.checked_sub(self.config.hold_after_failures);
        if let Some(over) = over {
            let hold_ms = self
                .config
                .hold_base_ms
                .saturating_mul(1u64 << over.min(32))
                .min(self.config.hold_cap_ms);
            c.hold_until_us = Some(now_us.saturating_add(hold_ms.saturating_mul(1000)));
            if over == 0 {
                tracing::warn!(game = %self.game.id, hold_ms, "consecutive delivery failures: holding sends");
            }
        }
    }

    pub(crate) async fn expire(&self, entry: Leased<Q::Lease>, now_ms: u64) {
        let order_id = entry.order.order_id.clone();
        let attempts = entry.order.attempts;
        let finish = Finish { state: FinalState::Expired, at_ms: now_ms };
        if self.finish(entry, finish).await {
            bump(&self.game.counters.expired);
            self.game.metrics.expired.increment(1);
            tracing::warn!(game = %self.game.id, order = %order_id, attempts, "order expired undelivered");
            self.game.record_expired(order_id);
        }
    }

    async fn dead(&self, entry: Leased<Q::Lease>, reason: String, now_ms: u64) {
        let order_id = entry.order.order_id.clone();
        let attempts = entry.order.attempts;
        let state = FinalState::Dead { reason: reason.clone() };
        if self.finish(entry, Finish { state, at_ms: now_ms }).await {
            bump(&self.game.counters.dead);
            self.game.metrics.dead.increment(1);
            tracing::warn!(game = %self.game.id, order = %order_id, attempts, %reason, "order dead");
            self.game.record_dead(order_id, reason);
        }
    }

    /// Returns whether the queue recorded it. A failure leaves the entry leased: it comes back
    /// when the lease is lost, and a redelivery is answered `duplicate`.
    async fn finish(&self, entry: Leased<Q::Lease>, finish: Finish) -> bool {
        let order_id = entry.order.order_id.clone();
        let result = self.queue.finish(entry, finish).await;
        self.recorded(&order_id, result)
    }

    pub(crate) async fn retry(&self, entry: Leased<Q::Lease>, retry: Retry) -> bool {
        let order_id = entry.order.order_id.clone();
        let result = self.queue.retry(entry, retry).await;
        self.recorded(&order_id, result)
    }

    pub(crate) async fn release(&self, entry: Leased<Q::Lease>) -> bool {
        let order_id = entry.order.order_id.clone();
        let result = self.queue.release(entry).await;
        self.recorded(&order_id, result)
    }

    /// Whether the queue recorded the end of a lease; why not, counted and logged.
    fn recorded(&self, order_id: &str, result: Result<(), QueueError>) -> bool {
        match result {
            Ok(()) => true,
            Err(QueueError::LeaseLost(_)) => {
                bump(&self.game.counters.lease_lost);
                tracing::debug!(game = %self.game.id, order = %order_id, "lease lost");
                false
            }
            Err(e @ QueueError::Unavailable(_)) => {
                tracing::warn!(game = %self.game.id, order = %order_id, error = %e, "cannot record the outcome");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hongbao_domain::GameIndex;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_cap() {
        let mut rng = SmallRng::seed_from_u64(1);
        for attempts in 1..=40u32 {
            let bound = (100u64 << (attempts - 1).min(32)).min(5_000);
            for _ in 0..200 {
                assert!(backoff_ms(&mut rng, attempts, 100, 5_000) <= bound);
            }
        }
        let draws: Vec<u64> = (0..1000).map(|_| backoff_ms(&mut rng, 10, 100, 5_000)).collect();
        assert!(draws.iter().any(|&d| d < 1000) && draws.iter().any(|&d| d > 4000));
    }

    #[test]
    fn answers_map_to_verdicts() {
        use DeliveryOutcome as O;
        let v = |o| verdict(Ok(Ok(o)));
        assert_eq!(v(O::Applied), Verdict::Delivered { duplicate: false });
        assert_eq!(v(O::Duplicate), Verdict::Delivered { duplicate: true });
        assert_eq!(v(O::Busy), Verdict::Busy);
        let e = |permanent| O::Error { reason: "r".into(), permanent };
        assert_eq!(v(e(true)), Verdict::Permanent("r".into()));
        assert_eq!(v(e(false)), Verdict::Failed("r".into()));
        let timeout = GatewayError::Timeout { game: "g".into(), timeout_ms: 5 };
        assert!(matches!(verdict(Ok(Err(timeout))), Verdict::Failed(_)));
        let unknown = GatewayError::UnknownGame(GameIndex(9));
        assert!(matches!(verdict(Ok(Err(unknown))), Verdict::Permanent(_)));
    }
}
