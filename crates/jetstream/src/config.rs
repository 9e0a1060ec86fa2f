//! The stream's and consumers' settings, with their defaults as named constants.

use std::time::Duration;

use crate::JetStreamError;

/// How long the stream remembers a message id: a publish of the same order within it is
/// answered `duplicate` and stores nothing. It must cover the sweeper's grace plus its pass
/// interval with room to spare (checked by `hongbao-distributed`'s sweeper config).
pub const DEDUP_WINDOW_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// How long a worker may hold a message without acknowledging it before JetStream delivers it
/// again (the worker sends in-progress acks while it holds one longer).
pub const ACK_WAIT_MS_DEFAULT: u64 = 30_000;
/// Deliveries of one message after which JetStream stops delivering it. Busy refusals and
/// pauses hand a message back without an attempt but count here, so it is far above the
/// workers' own attempt limit; the queue adapter ends a message that reaches
/// `deliveries_max - 1` as dead in Redis before JetStream would drop it silently.
pub const DELIVERIES_MAX_DEFAULT: i64 = 10_000;
/// Messages a game's consumer lets be delivered and not yet acknowledged at once.
pub const ACK_PENDING_MAX_DEFAULT: i64 = 10_000;
/// Publishes awaiting their acknowledgement at once, over the whole connection (the context's
/// ack semaphore: a publish beyond it waits for a permit).
pub const ACKS_IN_FLIGHT_MAX: usize = 8_192;
/// How long one JetStream request (publish ack, fetch, API call) may take.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Messages in one fetch (the consumer's `max_batch`).
pub const FETCH_BATCH_MAX: usize = 256;
/// Orders one stream may hold: a bound on the backlog (far above the largest campaign's
/// stock; a full stream refuses new publishes, and their claims are not answered 202).
pub const STREAM_MESSAGES_MAX: i64 = 50_000_000;

/// Settings of the stream and its consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    pub dedup_window_ms: u64,
    pub ack_wait_ms: u64,
    pub deliveries_max: i64,
    pub ack_pending_max: i64,
    /// Redeliveries after an ack wait ran out (a crashed worker) wait these in turn (the last
    /// one repeating); empty: each waits `ack_wait_ms`. When set, JetStream uses its first entry
    /// instead of `ack_wait_ms` for the first delivery.
    pub redelivery_backoff_ms: Vec<u64>,
    /// Stream replicas: 1 on a single development server, 3 in production (DEPLOYMENT.md).
    pub replicas: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            dedup_window_ms: DEDUP_WINDOW_MS_DEFAULT,
            ack_wait_ms: ACK_WAIT_MS_DEFAULT,
            deliveries_max: DELIVERIES_MAX_DEFAULT,
            ack_pending_max: ACK_PENDING_MAX_DEFAULT,
            redelivery_backoff_ms: Vec::new(),
            replicas: 1,
        }
    }
}

impl JetStreamConfig {
    pub fn validate(&self) -> Result<(), JetStreamError> {
        let bad = |field: &str, reason: &str| {
            Err(JetStreamError::InvalidConfig(format!("{field}: {reason}")))
        };
        if self.dedup_window_ms < 1_000 {
            return bad("dedup_window_ms", "at least 1000");
        }
        if self.ack_wait_ms < 1_000 {
            return bad("ack_wait_ms", "at least 1000 (in-progress acks are sent a third of it)");
        }
        if self.deliveries_max < 2 {
            return bad("deliveries_max", "at least 2");
        }
        if self.ack_pending_max < 1 {
            return bad("ack_pending_max", "at least 1");
        }
        if self.redelivery_backoff_ms.len() as i64 >= self.deliveries_max {
            return bad("redelivery_backoff_ms", "fewer entries than deliveries_max");
        }
        if self.redelivery_backoff_ms.iter().any(|&ms| ms < 1_000) {
            return bad("redelivery_backoff_ms", "each at least 1000");
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return bad("replicas", "1, 3 or 5");
        }
        Ok(())
    }

    /// How long a worker may hold a message before it must tell JetStream it still works on
    /// it: the shortest redelivery wait.
    pub fn hold_without_progress(&self) -> Duration {
        let first = self.redelivery_backoff_ms.first().copied().unwrap_or(self.ack_wait_ms);
        Duration::from_millis(first.min(self.ack_wait_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_nonsense_is_refused() {
        assert_eq!(JetStreamConfig::default().validate(), Ok(()));
        let bad = [
            JetStreamConfig { ack_wait_ms: 10, ..Default::default() },
            JetStreamConfig { deliveries_max: 1, ..Default::default() },
            JetStreamConfig { replicas: 2, ..Default::default() },
            JetStreamConfig { redelivery_backoff_ms: vec![10], ..Default::default() },
            JetStreamConfig {
                deliveries_max: 2,
                redelivery_backoff_ms: vec![1_000, 2_000],
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        let backoff =
            JetStreamConfig { redelivery_backoff_ms: vec![2_000, 60_000], ..Default::default() };
        assert_eq!(backoff.hold_without_progress(), Duration::from_secs(2));
    }
}
