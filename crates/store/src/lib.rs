//! Ports of hongbao's durable state and their adapters (DESIGN.md §3).
//!
//! The services depend on the narrow traits here, never on an engine: [`GrantLedger`] records
//! coupon grants (the grab, `POST /v1/coupons`). Two adapters implement it with identical
//! semantics, checked by one behavioural suite (`tests/grant_ledger.rs`):
//!
//! - [`MemoryStore`]: in-process, for tests of the other crates; forgets everything on drop.
//! - [`EmbeddedStore`]: fjall on local disk with group commit — one writer thread, one atomic
//!   batch and one fsync per group of requests, answered only after the fsync.
//!
//! The claim issue grows the embedded writer by one command (see [`embedded`]'s module doc).

pub mod embedded;
pub mod memory;

use std::future::Future;
use std::sync::Arc;

pub use embedded::{EmbeddedConfig, EmbeddedStats, EmbeddedStore};
pub use hongbao_domain::Channel;
pub use memory::MemoryStore;

/// One grab: may `user` have one more coupon from `channel`?
///
/// The limits travel with the request (from the campaign's `ChannelSpec`) rather than living in
/// the store, so the store needs no copy of the campaign and a reloaded campaign applies at once.
/// The counters they are checked against are the store's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantRequest {
    pub user: u64,
    pub channel: Channel,
    /// `ChannelSpec.coupons_per_user`.
    pub per_user_limit: u32,
    /// `ChannelSpec.budget`: coupons this channel may grant in the whole campaign.
    pub budget: u64,
}

/// The decision on a [`GrantRequest`]. Rejections are answers, not errors: they change no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Recorded durably. `serial` is the user's n-th coupon on this channel, 1-based; it is never
    /// handed out twice for the same (user, channel), also across restarts, so the coupon built
    /// from it (campaign, user, channel, serial) is unique.
    Granted { serial: u32 },
    /// The channel has granted `budget` coupons. Checked first: once a channel is out, every
    /// request hears so, and a store can answer it from its committed counter without queueing.
    BudgetExhausted,
    /// The user already holds `per_user_limit` coupons of this channel.
    UserLimitReached,
}

/// Operating errors of a store. Callers map them to 503; none of them means "no".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot answer now: the writer has stopped, the store is closed, or the disk
    /// failed. A grant that failed this way was not granted (see `EmbeddedStore` for the one
    /// caveat: a failed fsync).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data read from disk does not have the persisted layout.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// The store was opened with a configuration it cannot work with.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
}

/// Per-user-per-channel coupon limits and per-channel budgets, held exactly.
///
/// Implementations serialise grants per (user, channel) and per channel: under any concurrency,
/// a channel grants at most `budget` coupons (for the budget of the requests that granted them)
/// and a user's serials on a channel are exactly `1..=n` with `n <= per_user_limit`.
pub trait GrantLedger: Send + Sync + 'static {
    /// Decide and record one grant. `Ok(Granted)` is durable when it is returned (for a durable
    /// implementation). A future dropped before it resolves may or may not have granted.
    fn grant(
        &self,
        req: GrantRequest,
    ) -> impl Future<Output = Result<GrantOutcome, StoreError>> + Send;

    /// Coupons granted (durably) on `channel` so far: for metrics and tests.
    fn granted(&self, channel: Channel) -> u64;
}

impl<T: GrantLedger> GrantLedger for Arc<T> {
    fn grant(
        &self,
        req: GrantRequest,
    ) -> impl Future<Output = Result<GrantOutcome, StoreError>> + Send {
        T::grant(self, req)
    }

    fn granted(&self, channel: Channel) -> u64 {
        T::granted(self, channel)
    }
}

/// Number of channels; the per-channel counter arrays are indexed by [`channel_index`].
pub(crate) const CHANNELS: usize = 3;

/// Dense index of a channel for in-memory arrays. Not persisted (the layout has its own codes).
pub(crate) fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Swipe => 0,
        Channel::ArMap => 1,
        Channel::Scan => 2,
    }
}
