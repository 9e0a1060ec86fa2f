//! The embedded adapter: fjall 3 on local disk, one writer thread, group commit.
//!
//! # How a grant or a claim becomes durable
//!
//! [`EmbeddedStore::grant`] and [`EmbeddedStore::claim`] put a command on a bounded queue
//! (`queue_max`; a full queue makes callers wait, which is the backpressure the API's admission
//! control sees) and await a oneshot answer. The writer thread (`writer.rs`) drains up to
//! `batch_max` commands, decides them in order against the committed state plus the batch's own
//! effects (two claims of one batch see each other), writes all their effects — grants, orders,
//! counters, queue entries, send-log rows, idempotency keys — as ONE fjall write batch across
//! keyspaces and makes it durable with one `fsync` (`durability(Some(PersistMode::SyncAll))`,
//! which writes the journal and syncs it under one journal lock), and only then answers the
//! batch. Delivery-queue commands (finish, retry, requeue, record delivered) ride in the same
//! batches.
//!
//! Answers that need no decision skip the writer: a channel whose committed counter reached the
//! request's budget, or a claim whose gift is sold out (committed counters are published in
//! atomics). A claim whose coupon already has an order is answered by the writer, which reads
//! the order anyway; the API looks the order up once before it verifies the role (an order is
//! visible to readers only after its batch's fsync), so a second read here would only repeat it.
//! Reads (orders, scans) use fjall's thread-safe handles directly; multi-key reads and scan
//! pages through one snapshot, which shows whole batches only (a plain read may see a batch half
//! applied to the memtables).
//!
//! Durability: every batch holding a grant, a claim, a requeue or a recorded delivery is fsynced
//! before any of its commands is answered. A batch of lease settlements only (finish, retry,
//! release — the delivery workers' bookkeeping) is written without an fsync of its own and made
//! durable by the next synced batch: a crash can lose such a batch whole, which puts its orders
//! back in the queue as they were before their lease, and the next delivery carries the same
//! serial, which the game answers as a duplicate. An order may thus show `delivered` and, after
//! a crash, `queued` again until its redelivery — never the other way round.
//!
//! # The delivery queue
//!
//! One keyspace holds every game's entries, keyed by game, due time and order id. Delivered
//! entries are deleted, and an LSM keeps their tombstones for a while; a per-game cursor in
//! memory (no leasable entry lies before it) lets lease scans start after them, and after the
//! entries in flight, instead of wading through every tombstone since the last compaction.
//! Leases, the cursor and the depth are memory-only and rebuilt from one scan of the queue at
//! open, so they can never drift from the keys. Leasing and the oldest-entry query run on the
//! writer thread (after the batch's commit), which owns the leases; they write nothing.
//!
//! # Caveat: a failed fsync
//!
//! If the journal write or fsync fails, the batch's callers get [`StoreError::Unavailable`] and
//! the store refuses all further writes (fjall poisons the database; restart to recover). The
//! batch's bytes may still reach the disk through the OS, so after the restart those grants and
//! claims can exist although their callers heard an error: a user may lose a slot and a budget
//! or stock may count up to `batch_max` units nobody was told about (the orders exist and are
//! delivered; the same claim again answers `Replayed`). Never the other way round: nothing
//! answered `Granted` or `Accepted` is lost, and no limit, budget or stock is exceeded.
//!
//! See `layout.rs` for the persisted layout (and its warning).

mod fjall_backend;
pub mod idle;
mod known;
mod layout;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, PersistMode, Readable};
use hongbao_clock::{SharedClock, SystemClock};
use hongbao_domain::{GameIndex, GiftIndex, Order, OrderId};
use tokio::sync::{mpsc, oneshot};

use crate::claim::{
    CampaignBinding, ClaimOutcome, ClaimRequest, HighValueUsage, ORDERS_OF_MAX, day_of, hour_of,
};
use crate::delivery::QueueBackend;
use crate::ledger::{self, SettleAction};
use crate::queue::{
    LedgerRepair, LedgerScan, QueueEntry, QueuedRef, RecordOutcome, RequeueOutcome, SCAN_PAGE_MAX,
    SentRecord, Settled,
};
use crate::{Channel, ClaimLedger, GrantLedger, GrantOutcome, GrantRequest, StoreError};
use fjall_backend::{FjallBackend, unavailable};
pub use idle::{CommitLinger, RuntimeIdle};
use known::Known;
use writer::{Command, Ledger, Reply, Shared, Space};

/// Default bound of the writer's queue: about a tenth of a second of the campaign's peak.
pub const QUEUE_MAX_DEFAULT: usize = 16_384;
/// Default largest group commit. One fsync per batch; a larger batch amortises more but makes
/// its first caller wait for all of it.
pub const BATCH_MAX_DEFAULT: usize = 1_024;
/// Largest accepted `queue_max`: each slot may hold a waiting request.
pub const QUEUE_MAX_LIMIT: usize = 1 << 20;
/// Largest accepted `batch_max`: the batch and its staged writes are held in memory.
pub const BATCH_MAX_LIMIT: usize = 1 << 16;

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Commands waiting for the writer, at most.
    pub queue_max: usize,
    /// Commands per group commit (one atomic batch, one fsync), at most.
    pub batch_max: usize,
    /// Whether the writer waits for a busy runtime to go idle before it commits (see
    /// [`idle`]); `None` commits whatever has queued as soon as the writer runs.
    pub linger: Option<CommitLinger>,
    /// The wall clock by which idempotency keys expire when their tables are compacted (the
    /// decisions themselves take their time from the requests).
    pub clock: SharedClock,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            queue_max: QUEUE_MAX_DEFAULT,
            batch_max: BATCH_MAX_DEFAULT,
            linger: None,
            clock: SystemClock::shared(),
        }
    }
}

/// Upper bounds, in milliseconds, of the synced-commit duration buckets in [`EmbeddedStats`]; one
/// more bucket counts the commits longer than the last bound.
pub const SYNCED_COMMIT_BOUNDS_MS: [u64; 6] = [1, 2, 5, 10, 20, 50];
/// Buckets of [`EmbeddedStats::synced_commits_by_ms`].
pub const SYNCED_COMMIT_BUCKETS: usize = SYNCED_COMMIT_BOUNDS_MS.len() + 1;

/// What the writer has done since open; counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Commands decided (granted, claimed, rejected, leased or failed).
    pub commands: u64,
    /// Batches run, including batches of rejections and leases only (which write nothing).
    pub batches: u64,
    /// Commits attempted, each one atomic batch with one fsync.
    pub fsyncs: u64,
    /// Commits that failed; after the first the store refuses writes.
    pub commit_failures: u64,
    /// Largest batch so far.
    pub batch_len_max: u64,
    /// Synced commits (the ones callers wait for) by duration — journal write, memtable inserts
    /// and fsync: entry `i` counts those that took at most [`SYNCED_COMMIT_BOUNDS_MS`]`[i]` ms and
    /// more than the bound before it; the last entry, those over 50 ms. Sums to `fsyncs`.
    pub synced_commits_by_ms: [u64; SYNCED_COMMIT_BUCKETS],
    /// The longest synced commit so far, in microseconds.
    pub synced_commit_max_us: u64,
}

/// Durable store of every port on fjall. Dropping it (or [`EmbeddedStore::close`]) stops taking
/// new commands, lets the writer answer every queued one and joins it; that blocks the calling
/// thread for at most one queue's worth of batches.
pub struct EmbeddedStore {
    queue: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    binding: Arc<CampaignBinding>,
    reader: Reader,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` for grants only (no campaign bound: claims are
    /// refused with `InvalidConfig`). See [`EmbeddedStore::open_with`].
    pub fn open(dir: &Path, config: EmbeddedConfig) -> Result<Self, StoreError> {
        Self::open_with(dir, config, CampaignBinding::none())
    }

    /// Opens (or creates) the store in `dir` for `binding`'s campaign: loads the counters,
    /// rebuilds the queues' in-memory state from one scan of the queue keyspace, and starts the
    /// writer. Fails with `Unavailable` if another process has the directory open.
    pub fn open_with(
        dir: &Path,
        config: EmbeddedConfig,
        binding: CampaignBinding,
    ) -> Result<Self, StoreError> {
        if !(1..=QUEUE_MAX_LIMIT).contains(&config.queue_max) {
            return Err(StoreError::InvalidConfig(format!(
                "queue_max {} is outside 1..={QUEUE_MAX_LIMIT}",
                config.queue_max
            )));
        }
        if !(1..=BATCH_MAX_LIMIT).contains(&config.batch_max) {
            return Err(StoreError::InvalidConfig(format!(
                "batch_max {} is outside 1..={BATCH_MAX_LIMIT}",
                config.batch_max
            )));
        }
        let binding = Arc::new(binding);
        let mut backend = FjallBackend::open(dir, config.clock)?;
        let recovered = writer::recover(&mut backend, &binding)?;
        let known = Arc::new(writer::known(&mut backend, &binding, &recovered)?);
        let shared = Arc::new(Shared::new(&recovered));
        let reader = backend.reader(Arc::clone(&known));
        let ledger =
            Ledger::new(backend, Arc::clone(&binding), recovered, Arc::clone(&shared), known);
        let (queue, receiver) = mpsc::channel(config.queue_max);
        let batch_max = config.batch_max;
        let linger = config.linger;
        let writer = std::thread::Builder::new()
            .name("hongbao-store-writer".into())
            .spawn(move || writer::run(ledger, receiver, batch_max, linger))
            .map_err(|e| StoreError::Unavailable(format!("start the store writer: {e}")))?;
        Ok(Self { queue: Some(queue), writer: Some(writer), shared, binding, reader })
    }

    pub fn stats(&self) -> EmbeddedStats {
        let s = &self.shared;
        EmbeddedStats {
            commands: s.commands.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            commit_failures: s.commit_failures.load(Ordering::Relaxed),
            batch_len_max: s.batch_len_max.load(Ordering::Relaxed),
            synced_commits_by_ms: std::array::from_fn(|i| {
                s.synced_commits_by_ms[i].load(Ordering::Relaxed)
            }),
            synced_commit_max_us: s.synced_commit_max_us.load(Ordering::Relaxed),
        }
    }

    pub fn binding(&self) -> &CampaignBinding {
        &self.binding
    }

    /// Stops taking commands, answers the queued ones, joins the writer and closes the database
    /// (releasing its directory lock). Blocks; from async code call it in `spawn_blocking`.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        // Dropping the only sender ends the writer's loop once the queue is empty.
        drop(self.queue.take());
        match self.writer.take() {
            Some(writer) => writer
                .join()
                .map_err(|_| StoreError::Unavailable("the store writer panicked".into())),
            None => Ok(()),
        }
    }

    /// Maintenance: flushes and compacts the idempotency keyspace now, which drops the keys
    /// expired by the configured clock (the compaction filter does so anyway whenever fjall
    /// compacts it). Returns the keys left. Heavy on a big keyspace; meant for operators and tests.
    pub fn compact_idempotency_keys(&self) -> Result<u64, StoreError> {
        let keys = &self.reader.idempotency;
        keys.rotate_memtable_and_wait().map_err(|e| unavailable("flush idempotency keys", &e))?;
        keys.major_compact().map_err(|e| unavailable("compact idempotency keys", &e))?;
        let mut left = 0;
        for guard in keys.iter() {
            guard.key().map_err(|e| unavailable("count idempotency keys", &e))?;
            left += 1;
        }
        Ok(left)
    }

    /// Fault injection for tests: deletes `order`'s queue entry from the CLOSED store in `dir`,
    /// as an operator's mistake would (the store's lock keeps this from running beside a live
    /// store). Returns whether there was one. Never used by services.
    #[doc(hidden)]
    pub fn remove_queue_entry_by_hand(dir: &Path, order: &Order) -> Result<bool, StoreError> {
        let (Some(ready_at_ms), 1..=255) = (order.ready_at_ms, order.game_id.len()) else {
            return Ok(false);
        };
        // Only the queue keyspace is touched, and nothing is compacted on purpose: the clock
        // the idempotency keys' filter reads does not matter here.
        let backend = FjallBackend::open(dir, SystemClock::shared())?;
        let queue = backend.keyspace(Space::Queue);
        let key = layout::queue_key(&order.game_id, ready_at_ms, &order.id);
        let present = queue.get(&key).map_err(|e| unavailable("read a queue entry", &e))?;
        if present.is_some() {
            queue.remove(key).map_err(|e| unavailable("remove a queue entry", &e))?;
            backend.db.persist(PersistMode::SyncAll).map_err(|e| unavailable("fsync", &e))?;
        }
        Ok(present.is_some())
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let queue =
            self.queue.as_ref().ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the store writer stopped before answering".into())
        })?
    }

    fn game_id(&self, game: GameIndex) -> Result<&str, StoreError> {
        self.binding
            .game_id(game)
            .ok_or_else(|| StoreError::InvalidConfig(format!("game index {} is not bound", game.0)))
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "closing the embedded store");
        }
    }
}

impl GrantLedger for EmbeddedStore {
    async fn grant(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        // Counters only grow and are published after their commit: exhausted stays exhausted.
        if self.shared.granted(req.channel) >= req.budget {
            return Ok(GrantOutcome::BudgetExhausted);
        }
        self.call(|reply| Command::Grant { req, reply }).await
    }

    fn granted(&self, channel: Channel) -> u64 {
        self.shared.granted(channel)
    }
}

impl ClaimLedger for EmbeddedStore {
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let prepared = ledger::claim::prepare(&self.binding, &req)?;
        // Sold out needs no decision (see the module doc). With an idempotency key the writer
        // must look at the key first: its replay answers even a sold-out gift.
        if req.idempotency.is_none() && self.shared.stock_taken(req.gift) >= req.stock {
            return Ok(ClaimOutcome::OutOfStock);
        }
        self.call(|reply| Command::Claim { claim: Box::new((req, prepared)), reply }).await
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.reader.order(id)
    }

    async fn orders_of(&self, user: u64, limit: usize) -> Result<Vec<Order>, StoreError> {
        let snapshot = self.reader.db.snapshot();
        let mut orders = Vec::new();
        let prefix = user.to_be_bytes();
        for guard in
            snapshot.prefix(&self.reader.user_orders, prefix).take(limit.min(ORDERS_OF_MAX))
        {
            let key = guard.key().map_err(|e| unavailable("read a user's orders", &e))?;
            let id = layout::decode_order_id(key.get(8..).unwrap_or_default())?;
            let bytes = snapshot
                .get(&self.reader.orders, layout::order_key(&id))
                .map_err(|e| unavailable("read an order", &e))?
                .ok_or_else(|| StoreError::Corrupt(format!("indexed order {id} is missing")))?;
            orders.push(layout::decode_order(id, &bytes)?);
        }
        orders.sort_by_key(|o| (o.created_at_ms, o.id));
        Ok(orders)
    }

    fn stock_taken(&self, gift: GiftIndex) -> u64 {
        self.shared.stock_taken(gift)
    }

    async fn high_value_usage(&self, user: u64, now_ms: u64) -> Result<HighValueUsage, StoreError> {
        self.reader.high_value_usage(user, now_ms)
    }
}

impl QueueBackend for EmbeddedStore {
    fn binding(&self) -> &CampaignBinding {
        &self.binding
    }

    async fn lease_entries(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        self.game_id(game)?;
        self.call(|reply| Command::Lease { game, max, now_ms, reply }).await
    }

    async fn settle(
        &self,
        entry: &QueueEntry,
        action: SettleAction,
        now_ms: u64,
    ) -> Result<Settled, StoreError> {
        let (order_id, lease) = (entry.order.id, entry.lease);
        self.call(move |reply| Command::Settle { order_id, lease, action, now_ms, reply }).await
    }

    async fn oldest_ready_ms(&self, game: GameIndex) -> Result<Option<u64>, StoreError> {
        self.game_id(game)?;
        self.call(|reply| Command::Oldest { game, reply }).await
    }
}

impl LedgerRepair for EmbeddedStore {
    async fn requeue(
        &self,
        order_id: &OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> Result<RequeueOutcome, StoreError> {
        let order_id = *order_id;
        self.call(|reply| Command::Requeue { order_id, now_ms, deliver_by_ms, reply }).await
    }

    async fn record_delivered(
        &self,
        order_id: &OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> Result<RecordOutcome, StoreError> {
        let order_id = *order_id;
        self.call(|reply| Command::RecordDelivered { order_id, delivered_at_ms, now_ms, reply })
            .await
    }
}

/// The smallest key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl LedgerScan for EmbeddedStore {
    async fn scan_orders(
        &self,
        after_id: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let from = after_id.map_or_else(Vec::new, |id| after(&layout::order_key(&id)));
        let mut page = Vec::new();
        let snapshot = self.reader.db.snapshot();
        for guard in snapshot.range(&self.reader.orders, from..).take(limit.min(SCAN_PAGE_MAX)) {
            let (key, value) = guard.into_inner().map_err(|e| unavailable("scan orders", &e))?;
            page.push(layout::decode_order(layout::decode_order_id(&key)?, &value)?);
        }
        Ok(page)
    }

    async fn scan_sent(
        &self,
        after_row: Option<SentRecord>,
        limit: usize,
    ) -> Result<Vec<SentRecord>, StoreError> {
        let from = after_row.map_or_else(Vec::new, |row| {
            after(&layout::sent_key(&row.order_id, row.delivered_at_ms))
        });
        let mut page = Vec::new();
        let snapshot = self.reader.db.snapshot();
        for guard in snapshot.range(&self.reader.sent, from..).take(limit.min(SCAN_PAGE_MAX)) {
            let key = guard.key().map_err(|e| unavailable("scan the send log", &e))?;
            let (order_id, delivered_at_ms) = layout::decode_sent_key(&key)?;
            page.push(SentRecord { order_id, delivered_at_ms });
        }
        Ok(page)
    }

    async fn scan_queue(
        &self,
        game: GameIndex,
        after_ref: Option<QueuedRef>,
        limit: usize,
    ) -> Result<Vec<QueuedRef>, StoreError> {
        let game_id = self.game_id(game)?;
        let from = match after_ref {
            Some(r) => after(&layout::queue_key(game_id, r.ready_at_ms, &r.order_id)),
            None => layout::queue_prefix(game_id),
        };
        let mut page = Vec::new();
        let snapshot = self.reader.db.snapshot();
        let range = snapshot.range(&self.reader.queue, from..layout::queue_end(game_id));
        for guard in range.take(limit.min(SCAN_PAGE_MAX)) {
            let key = guard.key().map_err(|e| unavailable("scan a queue", &e))?;
            let (_, ready_at_ms, order_id) = layout::decode_queue_key(&key)?;
            page.push(QueuedRef { ready_at_ms, order_id });
        }
        Ok(page)
    }

    async fn in_queue(&self, order: &Order) -> Result<bool, StoreError> {
        let (Some(ready_at_ms), 1..=255) = (order.ready_at_ms, order.game_id.len()) else {
            return Ok(false);
        };
        let key = layout::queue_key(&order.game_id, ready_at_ms, &order.id);
        let found = self.reader.queue.get(key).map_err(|e| unavailable("read the queue", &e))?;
        Ok(found.is_some())
    }

    fn queue_depth(&self, game: GameIndex) -> u64 {
        self.shared.games.get(usize::from(game.0)).map_or(0, |g| g.depth.load(Ordering::Acquire))
    }

    fn leased(&self, game: GameIndex) -> u64 {
        self.shared.games.get(usize::from(game.0)).map_or(0, |g| g.leased.load(Ordering::Acquire))
    }
}

/// Read handles for the store handle's direct reads (fjall handles are thread-safe).
struct Reader {
    db: Database,
    /// What the store may hold: an order it certainly lacks is not looked up.
    known: Arc<Known>,
    orders: Keyspace,
    user_orders: Keyspace,
    /// For the high-value counters (`hv_user/`, `hv_hour/`) the gift list reads.
    counters: Keyspace,
    queue: Keyspace,
    sent: Keyspace,
    idempotency: Keyspace,
}

impl Reader {
    /// The committed high-value counters of `user`'s day and everyone's hour at `now_ms`.
    fn high_value_usage(&self, user: u64, now_ms: u64) -> Result<HighValueUsage, StoreError> {
        let read = |key: &[u8]| {
            self.counters.get(key).map_err(|e| unavailable("read a high-value counter", &e))
        };
        let claimed_today = match read(&layout::high_value_user_key(user, day_of(now_ms)))? {
            Some(bytes) => layout::decode_u32("a hv_user counter", &bytes)?,
            None => 0,
        };
        let spent_this_hour_cents = match read(&layout::high_value_hour_key(hour_of(now_ms)))? {
            Some(bytes) => layout::decode_u64("a hv_hour counter", &bytes)?,
            None => 0,
        };
        Ok(HighValueUsage { claimed_today, spent_this_hour_cents })
    }

    fn order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        if !self.known.may_hold_order(id) {
            // The filter's promise, checked wherever assertions are on (every test run).
            #[cfg(debug_assertions)]
            assert!(
                self.orders.get(layout::order_key(id)).ok().flatten().is_none(),
                "the filter called order {id} absent, and it is there"
            );
            return Ok(None);
        }
        match self
            .orders
            .get(layout::order_key(id))
            .map_err(|e| unavailable("read an order", &e))?
        {
            Some(bytes) => layout::decode_order(*id, &bytes).map(Some),
            None => Ok(None),
        }
    }
}
