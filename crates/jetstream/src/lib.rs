//! NATS JetStream for the distributed mode (DESIGN.md §3): the durable buffer between accepted
//! claims and the delivery workers.
//!
//! - **One stream per campaign** ([`Names::stream`]), file storage, work-queue retention (a
//!   message is gone once acknowledged), one subject per game, and a deduplication window: every
//!   message carries `Nats-Msg-Id` = the order id, so publishing the same order again within
//!   the window (a retried claim, the sweeper after a crash) stores nothing new.
//! - **One durable pull consumer per game**, filtered on the game's subject: explicit ack, an
//!   ack wait after which an unacknowledged message (a crashed worker's) is delivered again,
//!   back-off on those redeliveries, and a maximum delivery count as the last guard.
//! - **Publishing** ([`DeliveryStream::publish_all`]) sends a whole batch before awaiting any
//!   acknowledgement, then awaits them together: one round trip per batch, not per message. The
//!   in-flight window is bounded by the batch size and the context's ack semaphore
//!   ([`config::ACKS_IN_FLIGHT_MAX`]).
//!
//! Dead letters are decided by the workers (attempts, permanent refusals), recorded as the
//! order's state in Redis, and the message is then terminated; JetStream's own delivery count
//! is a backstop the queue adapter checks before handing a message out (see
//! `hongbao-distributed`), so no message silently leaves the consumer with its order still
//! "queued". Advisories are not needed for that and are not subscribed to.

pub mod config;
mod names;
mod stream;

pub use async_nats::jetstream::consumer::pull::Config as ConsumerConfig;
pub use async_nats::jetstream::{AckKind, Message};
pub use config::JetStreamConfig;
pub use names::{NAME_MAX_LEN, Names};
pub use stream::{DeliveryStream, Outgoing, Published};

/// An operating error of JetStream: connecting, setting up, publishing, fetching or acking.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JetStreamError {
    /// Names or settings that cannot work; fix the configuration.
    #[error("invalid jetstream setting: {0}")]
    InvalidConfig(String),
    /// The server did not answer or refused; the operation may be tried again.
    #[error("jetstream unavailable: {0}")]
    Unavailable(String),
}

pub(crate) fn unavailable(what: &str, err: impl std::fmt::Display) -> JetStreamError {
    JetStreamError::Unavailable(format!("{what}: {err}"))
}
