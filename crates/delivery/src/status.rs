//! What operators see per game (the admin endpoint and the CLI serialize these as they are).

use serde::Serialize;

/// Every game's delivery status at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DispatcherStatus {
    /// Unix milliseconds when it was taken.
    pub at_ms: u64,
    pub games: Vec<GameStatus>,
}

/// One game's delivery status. Counters are since this dispatcher started; the queue's figures
/// are the queue's own (durable) ones.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GameStatus {
    pub game: String,
    pub index: u8,
    /// The game's worker is running (false after a stop, or after a bug killed it).
    pub running: bool,
    /// Paused by an operator: nothing is leased or sent.
    pub paused: bool,
    /// Sends stopped after consecutive failed calls (an outage); a single probe call follows.
    pub held: bool,
    pub consecutive_failures: u32,
    /// Orders not yet finished: ready, waiting for a retry, or leased.
    pub queue_depth: u64,
    /// Of those, leased now (sent, about to be sent, or held by a crashed worker).
    pub leased: u64,
    /// Of those, waiting for a retry (`None` when the queue does not count them).
    pub retrying: Option<u64>,
    /// Age of the earliest ready time in the queue; `None` when the queue is empty.
    pub oldest_queued_age_ms: Option<u64>,
    /// Why the queue's figures above are missing (zero), if they are.
    pub queue_error: Option<String>,
    /// The game's delivery capacity at the configured scale.
    pub capacity_per_s: f64,
    /// The pacer's highest rate: capacity times the headroom.
    pub ceiling_per_s: f64,
    /// The pacer's current rate (lowered on busy answers, recovering additively).
    pub rate_per_s: f64,
    pub in_flight: u64,
    pub in_flight_max: u64,
    pub delivered: u64,
    /// Of `delivered`, answered `duplicate` (applied by an earlier call whose answer was lost).
    pub duplicates: u64,
    pub busy: u64,
    /// Retries scheduled after a failed or timed-out call.
    pub retries: u64,
    pub dead: u64,
    pub expired: u64,
    /// Finishes refused because the lease had been lost (another holder delivers the order).
    pub lease_lost: u64,
    /// The most recent dead orders, newest last (bounded).
    pub recent_dead: Vec<DeadOrder>,
    /// The most recent expired order ids, newest last (bounded).
    pub recent_expired: Vec<String>,
}

/// A dead order and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadOrder {
    pub order_id: String,
    pub reason: String,
}
