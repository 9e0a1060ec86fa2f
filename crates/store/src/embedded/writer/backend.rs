//! The writer's narrow view of the disk: the keyspaces of `layout.rs`, point reads, ordered key
//! scans, and one atomic commit of a batch's writes — so the batching, decision and rollback
//! logic is tested with an in-memory fake (including failing commits and crashes) and runs
//! unchanged on fjall.

use crate::StoreError;
use crate::embedded::layout;

/// The keyspaces of `layout.rs`, for the [`Backend`]'s raw reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Space {
    Grants,
    Counters,
    Orders,
    UserOrders,
    UserGifts,
    Queue,
    Sent,
    Idempotency,
}

impl Space {
    pub const ALL: [Space; 8] = [
        Space::Grants,
        Space::Counters,
        Space::Orders,
        Space::UserOrders,
        Space::UserGifts,
        Space::Queue,
        Space::Sent,
        Space::Idempotency,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Space::Grants => layout::GRANTS_KEYSPACE,
            Space::Counters => layout::COUNTERS_KEYSPACE,
            Space::Orders => layout::ORDERS_KEYSPACE,
            Space::UserOrders => layout::USER_ORDERS_KEYSPACE,
            Space::UserGifts => layout::USER_GIFTS_KEYSPACE,
            Space::Queue => layout::QUEUE_KEYSPACE,
            Space::Sent => layout::SENT_KEYSPACE,
            Space::Idempotency => layout::IDEMPOTENCY_KEYSPACE,
        }
    }
}

/// The disk as the writer uses it.
pub(crate) trait Backend {
    type Bytes: AsRef<[u8]>;
    /// The committed value of `key`.
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Self::Bytes>, StoreError>;
    /// Visits the committed keys in `[from, to)` in order until `visit` returns `false`.
    fn scan(
        &mut self,
        space: Space,
        from: &[u8],
        to: &[u8],
        visit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Adds a write to the open batch (opened by the first write after a commit).
    fn put(&mut self, space: Space, key: &[u8], value: &[u8]);
    fn delete(&mut self, space: Space, key: &[u8]);
    /// Writes the open batch atomically — all of it or, on `Err`, none of it that the writer
    /// will rely on — and, when `durability` is [`Durability::Synced`], durably (fsync) before
    /// returning. A [`Durability::Buffered`] batch becomes durable with the next synced one (the
    /// journal is one sequential file) or is lost whole by a crash, never in part.
    fn commit(&mut self, durability: Durability) -> Result<(), StoreError>;
}

/// Whether a batch must be on disk before its commands are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync before answering: grants, claims, requeues and recorded deliveries, whose callers
    /// act on the answer as a promise (a 201/202 to a user, a repair reported done).
    Synced,
    /// No fsync of its own: batches of lease settlements only (finish, retry, release). Losing
    /// one to a crash can only put its orders back in the queue as they were before the lease —
    /// a delivery then runs again with the same serial, which the game answers as a duplicate —
    /// so paying an fsync for each would buy nothing the serial does not already guarantee.
    Buffered,
}
