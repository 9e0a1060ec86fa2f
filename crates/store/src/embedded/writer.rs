//! The single writer: group commit of ledger commands.
//!
//! One std thread owns all mutable ledger state. It takes the first [`Command`] from the bounded
//! queue, drains up to `batch_max - 1` more without waiting, decides every command in arrival
//! order against *staged* state (committed state plus this batch's effects), writes the
//! batch's effects as one atomic, fsynced commit, and only then answers every command.
//! Decisions within a batch see earlier commands of the same batch, so the batch is equivalent
//! to running its commands one by one; one fsync pays for all of them.
//!
//! Leases (and the oldest-entry query) write nothing and are decided after the batch's commit,
//! against committed state. That is still a one-by-one order of the batch (all leases last): no
//! command of a batch can depend on a lease of the same batch, because its caller has not heard
//! of the lease yet.
//!
//! Failure: if the commit fails, every command of the batch gets `StoreError::Unavailable`, the
//! staged state is thrown away (committed counters never included it), and the writer stops
//! deciding: every later command gets the same error. fjall poisons a database whose journal
//! write or fsync failed, and the only safe recovery is a restart, which reloads the counters
//! from disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hongbao_domain::{GameIndex, GiftIndex, Order, OrderEvent, OrderId, OrderStatus};
use tokio::sync::{mpsc, oneshot};

use super::idle::CommitLinger;
use super::known::Known;
use super::layout::{self, GrantKey, grant_key};
use super::{SYNCED_COMMIT_BOUNDS_MS, SYNCED_COMMIT_BUCKETS};
use crate::claim::{
    self, CampaignBinding, ClaimOutcome, ClaimRequest, IDEMPOTENCY_TTL_MS, IdempotencyRecord,
    KeyCheck, Prepared, RecordedKind,
};
use crate::queue::{
    Finish, LEASE_BATCH_MAX, LEASES_MAX, LeaseId, QueueEntry, RecordOutcome, RequeueOutcome,
    Settled, recorded_delivered,
};
use crate::{CHANNELS, Channel, GrantOutcome, GrantRequest, StoreError, channel_index};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A request to the writer. Each variant carries its reply channel; the writer answers after the
/// batch holding it is durable (or failed).
#[derive(Debug)]
pub(crate) enum Command {
    Grant {
        req: GrantRequest,
        reply: Reply<GrantOutcome>,
    },
    Claim {
        claim: Box<(ClaimRequest, Prepared)>,
        reply: Reply<ClaimOutcome>,
    },
    Lease {
        game: GameIndex,
        max: usize,
        now_ms: u64,
        reply: Reply<Vec<QueueEntry>>,
    },
    Oldest {
        game: GameIndex,
        reply: Reply<Option<u64>>,
    },
    Settle {
        order_id: OrderId,
        lease: LeaseId,
        action: SettleAction,
        now_ms: u64,
        reply: Reply<Settled>,
    },
    Requeue {
        order_id: OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
        reply: Reply<RequeueOutcome>,
    },
    RecordDelivered {
        order_id: OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
        reply: Reply<RecordOutcome>,
    },
}

/// How a lease ends.
#[derive(Debug)]
pub(crate) enum SettleAction {
    Finish(Finish),
    Retry { ready_at_ms: u64, error: String },
    Release,
}

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

/// A queue entry's identity inside the writer (the game as an index; the key has its id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct QueueSlot {
    pub game: GameIndex,
    pub ready_at_ms: u64,
    pub id: OrderId,
}

/// Everything a batch writes, staged in memory until its single commit. Bounded by the batch:
/// a handful of entries per command.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The final count of every (user, channel) granted to in this batch: one row per key,
    /// however many of the batch's grants hit it.
    pub grants: HashMap<GrantKey, u32>,
    /// The new granted-so-far of every channel that granted in this batch.
    pub budgets: [Option<u64>; CHANNELS],
    /// Orders created or changed (their last state in the batch).
    pub orders: HashMap<OrderId, Order>,
    pub user_orders: Vec<(u64, OrderId)>,
    /// New claimed count per (user, gift).
    pub user_gifts: HashMap<(u64, GiftIndex), u32>,
    /// New taken count per gift.
    pub stock: HashMap<GiftIndex, u64>,
    /// Queue entries inserted (`true`) or removed (`false`); the last change of a key wins.
    pub queue: HashMap<QueueSlot, bool>,
    pub sent: Vec<(OrderId, u64)>,
    pub idempotency: HashMap<(u64, String), IdempotencyRecord>,
}

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
            && self.budgets.iter().all(Option::is_none)
            && self.orders.is_empty()
            && self.user_orders.is_empty()
            && self.user_gifts.is_empty()
            && self.stock.is_empty()
            && self.queue.is_empty()
            && self.sent.is_empty()
            && self.idempotency.is_empty()
    }

    fn clear(&mut self) {
        self.grants.clear();
        self.budgets = [None; CHANNELS];
        self.orders.clear();
        self.user_orders.clear();
        self.user_gifts.clear();
        self.stock.clear();
        self.queue.clear();
        self.sent.clear();
        self.idempotency.clear();
    }

    /// Writes the batch into `backend`'s open batch, encoded as `layout.rs` says.
    /// Every order id and (user, gift) count it writes goes into `known` first (see `known`).
    fn write_to<B: Backend>(&self, binding: &CampaignBinding, known: &Known, backend: &mut B) {
        for (key, count) in &self.grants {
            backend.put(Space::Grants, key, &layout::encode_count(*count));
        }
        for channel in Channel::ALL {
            if let Some(granted) = self.budgets[channel_index(channel)] {
                let key = layout::budget_key(channel);
                backend.put(Space::Counters, key.as_bytes(), &layout::encode_budget(granted));
            }
        }
        for (id, order) in &self.orders {
            known.insert_order(id);
            backend.put(Space::Orders, &layout::order_key(id), &layout::encode_order(order));
        }
        for (user, id) in &self.user_orders {
            backend.put(Space::UserOrders, &layout::user_order_key(*user, id), &[]);
        }
        for ((user, gift), count) in &self.user_gifts {
            known.insert_user_gift(*user, *gift);
            let (gift_id, _) = binding.gift(*gift).expect("staged gifts are bound");
            let key = layout::user_gift_key(*user, gift_id);
            backend.put(Space::UserGifts, &key, &layout::encode_count(*count));
        }
        for (gift, taken) in &self.stock {
            let (gift_id, _) = binding.gift(*gift).expect("staged gifts are bound");
            let key = layout::stock_key(gift_id);
            backend.put(Space::Counters, key.as_bytes(), &layout::encode_u64(*taken));
        }
        for (slot, insert) in &self.queue {
            let game_id = binding.game_id(slot.game).expect("staged games are bound");
            let key = layout::queue_key(game_id, slot.ready_at_ms, &slot.id);
            if *insert {
                backend.put(Space::Queue, &key, &[]);
            } else {
                backend.delete(Space::Queue, &key);
            }
        }
        for (id, at) in &self.sent {
            backend.put(Space::Sent, &layout::sent_key(id, *at), &[]);
        }
        for ((user, key), record) in &self.idempotency {
            let key = layout::idempotency_key(*user, key);
            backend.put(Space::Idempotency, &key, &layout::encode_idempotency(record));
        }
    }
}

/// The writer's narrow view of the disk, so the batching, decision and rollback logic is tested
/// with an in-memory fake (including failing commits) and runs unchanged on fjall.
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

/// Per-game queue state kept by the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GameState {
    /// Entries in the queue (leased ones included).
    pub depth: u64,
    /// No entry that is not leased has a `ready_at_ms` below this: lease scans start here
    /// instead of at the queue's first key, skipping the tombstones of delivered entries — and
    /// the entries in flight, so a lease that never ends (a stuck call) cannot pin the scans to
    /// its position. Lowered by every entry that becomes leasable (insert, retry, release);
    /// raised by lease scans. `u64::MAX`: nothing leasable.
    pub cursor_ms: u64,
}

/// What a restart recovers from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub granted: [u64; CHANNELS],
    /// Taken per bound gift.
    pub stock: Vec<u64>,
    /// Per bound game.
    pub games: Vec<GameState>,
    /// This opening's number (persisted before the store answers anything).
    pub incarnation: u64,
}

/// Reads the counters and scans the queue (exact by construction: the depth is the number of
/// keys, not a counter that could drift), and durably counts this opening.
pub(crate) fn recover<B: Backend>(
    backend: &mut B,
    binding: &CampaignBinding,
) -> Result<Recovered, StoreError> {
    let mut granted = [0u64; CHANNELS];
    for channel in Channel::ALL {
        let key = layout::budget_key(channel);
        if let Some(bytes) = backend.get(Space::Counters, key.as_bytes())? {
            granted[channel_index(channel)] = layout::decode_budget(channel, bytes.as_ref())?;
        }
    }
    let mut stock = Vec::with_capacity(binding.gifts());
    for gift_id in binding.gift_ids() {
        let key = layout::stock_key(gift_id);
        stock.push(match backend.get(Space::Counters, key.as_bytes())? {
            Some(bytes) => layout::decode_u64(&key, bytes.as_ref())?,
            None => 0,
        });
    }
    let mut games = vec![GameState { depth: 0, cursor_ms: u64::MAX }; binding.games()];
    let mut unbound = 0u64;
    let mut bad = None;
    backend.scan(
        Space::Queue,
        &[],
        &[0xff; 512],
        &mut |key| match layout::decode_queue_key(key) {
            Ok((game_id, ready_at_ms, _)) => {
                match binding.game_index(game_id) {
                    Some(game) => {
                        let state = &mut games[usize::from(game.0)];
                        state.depth += 1;
                        state.cursor_ms = state.cursor_ms.min(ready_at_ms);
                    }
                    None => unbound += 1,
                }
                true
            }
            Err(error) => {
                bad = Some(error);
                false
            }
        },
    )?;
    if let Some(error) = bad {
        return Err(error);
    }
    if unbound > 0 {
        tracing::warn!(unbound, "queue entries of games the campaign no longer has are ignored");
    }
    let incarnation = match backend.get(Space::Counters, layout::INCARNATION_KEY.as_bytes())? {
        Some(bytes) => layout::decode_u64(layout::INCARNATION_KEY, bytes.as_ref())? + 1,
        None => 1,
    };
    backend.put(
        Space::Counters,
        layout::INCARNATION_KEY.as_bytes(),
        &layout::encode_u64(incarnation),
    );
    backend.commit(Durability::Synced)?;
    Ok(Recovered { granted, stock, games, incarnation })
}

/// Fills the filter of what the store holds from its order and (user, gift) keys: before the
/// writer starts, so that its "certainly absent" is true from the first command on. Sized for
/// the campaign's stock, or for the orders already held if that is more (a campaign file whose
/// stock was lowered; every order took one unit, so the stock counters count them).
pub(crate) fn known<B: Backend>(
    backend: &mut B,
    binding: &CampaignBinding,
    recovered: &Recovered,
) -> Result<Known, StoreError> {
    let held = recovered.stock.iter().fold(0u64, |sum, taken| sum.saturating_add(*taken));
    let mut bad = None;
    let known = Known::with_capacity(binding.stock_total().max(held));
    backend.scan(
        Space::Orders,
        &[],
        &[0xff; 17],
        &mut |key| match layout::decode_order_id(key) {
            Ok(id) => {
                known.insert_order(&id);
                true
            }
            Err(error) => {
                bad = Some(error);
                false
            }
        },
    )?;
    let end = [0xff; 8 + crate::claim::ID_MAX_LEN + 1];
    backend.scan(Space::UserGifts, &[], &end, &mut |key| {
        let Some((user, gift_id)) = key.split_first_chunk::<8>() else {
            bad = Some(StoreError::Corrupt(format!("a user_gifts key of {} bytes", key.len())));
            return false;
        };
        // A gift the campaign no longer has is never claimed again: nothing to look up.
        if let Some(gift) = std::str::from_utf8(gift_id).ok().and_then(|id| binding.gift_index(id))
        {
            known.insert_user_gift(u64::from_be_bytes(*user), gift);
        }
        true
    })?;
    match bad {
        Some(error) => Err(error),
        None => Ok(known),
    }
}

/// Per-game values published to the store handle.
#[derive(Debug, Default)]
pub(crate) struct GameShared {
    pub depth: AtomicU64,
    pub leased: AtomicU64,
}

/// Counters shared with the store handle: what has been committed, and how.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Committed (durable) grants per channel, published after each successful commit.
    pub granted: [AtomicU64; CHANNELS],
    /// Committed units taken per bound gift.
    pub stock: Box<[AtomicU64]>,
    pub games: Box<[GameShared]>,
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub commit_failures: AtomicU64,
    pub batch_len_max: AtomicU64,
    /// Synced commits by how long they took, bucketed by [`SYNCED_COMMIT_BOUNDS_MS`].
    pub synced_commits_by_ms: [AtomicU64; SYNCED_COMMIT_BUCKETS],
    pub synced_commit_max_us: AtomicU64,
}

impl Shared {
    pub fn new(recovered: &Recovered) -> Self {
        let shared = Self {
            stock: recovered.stock.iter().map(|v| AtomicU64::new(*v)).collect(),
            games: recovered
                .games
                .iter()
                .map(|g| GameShared { depth: AtomicU64::new(g.depth), leased: AtomicU64::new(0) })
                .collect(),
            ..Self::default()
        };
        for (slot, value) in shared.granted.iter().zip(recovered.granted) {
            slot.store(value, Ordering::Relaxed);
        }
        shared
    }

    /// Counts one synced commit that took `elapsed`.
    fn record_synced_commit(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = SYNCED_COMMIT_BOUNDS_MS
            .iter()
            .position(|bound_ms| us <= bound_ms * 1000)
            .unwrap_or(SYNCED_COMMIT_BOUNDS_MS.len());
        self.synced_commits_by_ms[bucket].fetch_add(1, Ordering::Relaxed);
        self.synced_commit_max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn granted(&self, channel: Channel) -> u64 {
        self.granted[channel_index(channel)].load(Ordering::Acquire)
    }

    pub fn stock_taken(&self, gift: GiftIndex) -> u64 {
        self.stock.get(usize::from(gift.0)).map_or(0, |v| v.load(Ordering::Acquire))
    }
}

/// An answer decided but not yet sent: it goes out after the batch's commit.
enum Pending {
    Grant { reply: Reply<GrantOutcome>, result: Result<GrantOutcome, StoreError> },
    Claim { reply: Reply<ClaimOutcome>, result: Result<ClaimOutcome, StoreError> },
    Settle { reply: Reply<Settled>, result: Result<Settled, StoreError> },
    Requeue { reply: Reply<RequeueOutcome>, result: Result<RequeueOutcome, StoreError> },
    Record { reply: Reply<RecordOutcome>, result: Result<RecordOutcome, StoreError> },
}

impl Pending {
    fn fail(&mut self, error: &StoreError) {
        match self {
            Pending::Grant { result, .. } => *result = Err(error.clone()),
            Pending::Claim { result, .. } => *result = Err(error.clone()),
            Pending::Settle { result, .. } => *result = Err(error.clone()),
            Pending::Requeue { result, .. } => *result = Err(error.clone()),
            Pending::Record { result, .. } => *result = Err(error.clone()),
        }
    }

    fn send(self) {
        // The caller may have gone away (its future dropped); what was decided stands.
        match self {
            Pending::Grant { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Claim { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Settle { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Requeue { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Record { reply, result } => {
                let _ = reply.send(result);
            }
        }
    }
}

/// A read-only queue command, decided after the batch's commit.
enum Deferred {
    Lease { game: GameIndex, max: usize, now_ms: u64, reply: Reply<Vec<QueueEntry>> },
    Oldest { game: GameIndex, reply: Reply<Option<u64>> },
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    id: LeaseId,
    game: GameIndex,
    ready_at_ms: u64,
}

/// Bits of a lease id below the incarnation.
const LEASE_COUNTER_BITS: u32 = 40;

/// Entries one lease scan reads ahead per game. A scan's cost is mostly its set-up (a merge over
/// every memtable and segment of the queue keyspace), so reading a thousand entries once instead
/// of a pacer's hundred-millisecond share each time cut the draining worker's lease CPU several
/// times; 1,024 entries × 10 games is ~250 KiB. The unit tests use 3, so that their queues (and
/// the differential property test's) cross many look-ahead boundaries.
const LOOK_AHEAD_MAX: usize = if cfg!(test) { 3 } else { 1_024 };

/// Leasable entries of one game read by the last scan and not yet handed out: a cache of the
/// queue keyspace between the game's cursor and `covered_to_ms`. Any change that may put a
/// leasable entry inside that range clears it (clearing is always safe: the cursor never passes
/// an entry still in here, so the next scan finds them all again).
#[derive(Debug, Default)]
struct LookAhead {
    /// Sorted by key (due time, then id); every one leasable when read.
    entries: std::collections::VecDeque<(u64, OrderId)>,
    /// The scan saw every leasable entry due before this (exclusive) and, when it stopped at its
    /// limit, some due at `covered_to_ms - 1`.
    covered_to_ms: u64,
    /// The scan stopped at its limit (more entries may be due at the last one's time).
    truncated: bool,
}

impl LookAhead {
    /// Forgets the entries if one due at `ready_at_ms` may belong among them.
    fn invalidate_from(&mut self, ready_at_ms: u64) {
        if !self.entries.is_empty() && ready_at_ms < self.covered_to_ms {
            self.entries.clear();
        }
    }
}

/// The ledger state owned by the writer thread.
pub(crate) struct Ledger<B> {
    backend: B,
    binding: Arc<CampaignBinding>,
    /// Committed granted-so-far per channel: equal to the `counters` rows on disk.
    granted: [u64; CHANNELS],
    /// Committed taken per bound gift.
    stock: Vec<u64>,
    /// Committed per bound game.
    games: Vec<GameState>,
    /// This batch's view of `games`.
    tentative_games: Vec<GameState>,
    leases: HashMap<OrderId, Lease>,
    leased: Vec<u64>,
    /// Per bound game.
    look_ahead: Vec<LookAhead>,
    incarnation: u64,
    next_lease: u64,
    shared: Arc<Shared>,
    /// The order ids and (user, gift) counts the store may hold (see `known`).
    known: Arc<Known>,
    /// Set by the first failed commit; from then on every command fails with it.
    failed: Option<StoreError>,
    staged: Staged,
    pending: Vec<Pending>,
    deferred: Vec<Deferred>,
}

impl<B: Backend> Ledger<B> {
    pub fn new(
        backend: B,
        binding: Arc<CampaignBinding>,
        recovered: Recovered,
        shared: Arc<Shared>,
        known: Arc<Known>,
    ) -> Self {
        assert_eq!(recovered.stock.len(), binding.gifts());
        assert_eq!(recovered.games.len(), binding.games());
        assert!(recovered.incarnation < 1 << (64 - LEASE_COUNTER_BITS), "incarnations fit");
        Self {
            backend,
            leased: vec![0; binding.games()],
            look_ahead: (0..binding.games()).map(|_| LookAhead::default()).collect(),
            binding,
            granted: recovered.granted,
            stock: recovered.stock,
            tentative_games: recovered.games.clone(),
            games: recovered.games,
            leases: HashMap::new(),
            incarnation: recovered.incarnation,
            next_lease: 0,
            shared,
            known,
            failed: None,
            staged: Staged::default(),
            pending: Vec::new(),
            deferred: Vec::new(),
        }
    }

    /// Decide, commit once, answer all. See the module doc.
    pub fn run_batch(&mut self, commands: impl IntoIterator<Item = Command>) {
        self.staged.clear();
        self.pending.clear();
        self.tentative_games.clone_from(&self.games);
        let mut tentative = self.granted;
        let mut batch_len = 0u64;
        let mut durability = Durability::Buffered;
        for command in commands {
            batch_len += 1;
            // Leases and the oldest-entry query write nothing; settlements need no fsync of
            // their own (see `Durability`). Everything else is a promise to its caller.
            if !matches!(
                command,
                Command::Settle { .. } | Command::Lease { .. } | Command::Oldest { .. }
            ) {
                durability = Durability::Synced;
            }
            match command {
                Command::Lease { game, max, now_ms, reply } => {
                    self.deferred.push(Deferred::Lease { game, max, now_ms, reply });
                    continue;
                }
                Command::Oldest { game, reply } => {
                    self.deferred.push(Deferred::Oldest { game, reply });
                    continue;
                }
                _ => {}
            }
            let failed = self.failed.clone();
            let pending = match command {
                Command::Grant { req, reply } => Pending::Grant {
                    reply,
                    result: failed.map_or_else(
                        || stage_grant(&mut self.backend, &mut self.staged, &mut tentative, req),
                        Err,
                    ),
                },
                Command::Claim { claim, reply } => Pending::Claim {
                    reply,
                    result: failed.map_or_else(|| self.stage_claim(&claim.0, &claim.1), Err),
                },
                Command::Settle { order_id, lease, action, now_ms, reply } => Pending::Settle {
                    reply,
                    result: failed
                        .map_or_else(|| self.stage_settle(order_id, lease, action, now_ms), Err),
                },
                Command::Requeue { order_id, now_ms, deliver_by_ms, reply } => Pending::Requeue {
                    reply,
                    result: failed
                        .map_or_else(|| self.stage_requeue(order_id, now_ms, deliver_by_ms), Err),
                },
                Command::RecordDelivered { order_id, delivered_at_ms, now_ms, reply } => {
                    Pending::Record {
                        reply,
                        result: failed.map_or_else(
                            || self.stage_record_delivered(order_id, delivered_at_ms, now_ms),
                            Err,
                        ),
                    }
                }
                Command::Lease { .. } | Command::Oldest { .. } => unreachable!("taken above"),
            };
            self.pending.push(pending);
        }

        self.shared.commands.fetch_add(batch_len, Ordering::Relaxed);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.batch_len_max.fetch_max(batch_len, Ordering::Relaxed);

        // A batch of rejections and reads only writes nothing: its answers rest on committed
        // state (its releases still lower cursors).
        if self.staged.is_empty() {
            if self.failed.is_none() {
                self.publish(tentative);
            }
        } else {
            if durability == Durability::Synced {
                self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            let started = Instant::now();
            self.staged.write_to(&self.binding, &self.known, &mut self.backend);
            let committed = self.backend.commit(durability);
            if durability == Durability::Synced {
                // What this batch's callers waited for, past their batch's turn: observability
                // only (`/admin/v1/store`), never a decision.
                self.shared.record_synced_commit(started.elapsed());
            }
            match committed {
                Ok(()) => self.publish(tentative),
                Err(error) => {
                    tracing::error!(
                        %error,
                        batch_len,
                        "ledger commit failed; the store refuses writes until restarted"
                    );
                    self.shared.commit_failures.fetch_add(1, Ordering::Relaxed);
                    for pending in &mut self.pending {
                        pending.fail(&error);
                    }
                    self.failed = Some(error);
                }
            }
        }

        for deferred in std::mem::take(&mut self.deferred) {
            let failed = self.failed.clone();
            match deferred {
                Deferred::Lease { game, max, now_ms, reply } => {
                    let result = failed.map_or_else(|| self.lease(game, max, now_ms), Err);
                    let _ = reply.send(result);
                }
                Deferred::Oldest { game, reply } => {
                    let _ = reply.send(failed.map_or_else(|| self.oldest(game), Err));
                }
            }
        }
        for pending in self.pending.drain(..) {
            pending.send();
        }
    }

    /// After a successful commit: the staged counters become the committed ones.
    fn publish(&mut self, tentative: [u64; CHANNELS]) {
        for (index, value) in tentative.iter().enumerate() {
            assert!(*value >= self.granted[index], "budget counters only grow");
            self.shared.granted[index].store(*value, Ordering::Release);
        }
        self.granted = tentative;
        for (gift, taken) in &self.staged.stock {
            let slot = usize::from(gift.0);
            assert!(*taken > self.stock[slot], "stock taken only grows");
            self.stock[slot] = *taken;
            self.shared.stock[slot].store(*taken, Ordering::Release);
        }
        self.games.clone_from(&self.tentative_games);
        for (state, shared) in self.games.iter().zip(self.shared.games.iter()) {
            shared.depth.store(state.depth, Ordering::Release);
        }
    }

    // --- reads through the batch's overlay -------------------------------------------------

    fn read_order(&mut self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        if let Some(order) = self.staged.orders.get(id) {
            return Ok(Some(order.clone()));
        }
        if !self.known.may_hold_order(id) {
            // The filter's promise, checked wherever assertions are on (every test run).
            #[cfg(debug_assertions)]
            assert!(
                self.backend.get(Space::Orders, &layout::order_key(id))?.is_none(),
                "the filter called order {id} absent, and it is there"
            );
            return Ok(None);
        }
        match self.backend.get(Space::Orders, &layout::order_key(id))? {
            Some(bytes) => layout::decode_order(*id, bytes.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    fn user_gift_count(
        &mut self,
        user: u64,
        gift: GiftIndex,
        gift_id: &str,
    ) -> Result<u32, StoreError> {
        if let Some(count) = self.staged.user_gifts.get(&(user, gift)) {
            return Ok(*count);
        }
        if !self.known.may_hold_user_gift(user, gift) {
            // The filter's promise, checked wherever assertions are on (every test run).
            #[cfg(debug_assertions)]
            assert!(
                self.backend
                    .get(Space::UserGifts, &layout::user_gift_key(user, gift_id))?
                    .is_none(),
                "the filter called user {user}'s count of {gift_id} absent, and it is there"
            );
            return Ok(0);
        }
        let key = layout::user_gift_key(user, gift_id);
        match self.backend.get(Space::UserGifts, &key)? {
            Some(bytes) => layout::decode_u32("a user_gifts row", bytes.as_ref()),
            None => Ok(0),
        }
    }

    fn idempotency_record(
        &mut self,
        user: u64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        if let Some(record) = self.staged.idempotency.get(&(user, key.to_string())) {
            return Ok(Some(record.clone()));
        }
        match self.backend.get(Space::Idempotency, &layout::idempotency_key(user, key))? {
            Some(bytes) => layout::decode_idempotency(bytes.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    fn queue_has(&mut self, slot: QueueSlot) -> Result<bool, StoreError> {
        if let Some(present) = self.staged.queue.get(&slot) {
            return Ok(*present);
        }
        let game_id = self.binding.game_id(slot.game).expect("slots name bound games");
        let key = layout::queue_key(game_id, slot.ready_at_ms, &slot.id);
        Ok(self.backend.get(Space::Queue, &key)?.is_some())
    }

    // --- staging ----------------------------------------------------------------------------

    fn stage_enqueue(&mut self, slot: QueueSlot) {
        self.look_ahead[usize::from(slot.game.0)].invalidate_from(slot.ready_at_ms);
        self.staged.queue.insert(slot, true);
        let state = &mut self.tentative_games[usize::from(slot.game.0)];
        state.depth += 1;
        state.cursor_ms = state.cursor_ms.min(slot.ready_at_ms);
    }

    fn stage_dequeue(&mut self, slot: QueueSlot) {
        self.staged.queue.insert(slot, false);
        let state = &mut self.tentative_games[usize::from(slot.game.0)];
        assert!(state.depth > 0, "the depth counts the entries");
        state.depth -= 1;
    }

    /// Decide one claim against staged state and stage its effects. Every read happens before
    /// anything is staged, so a read error fails this claim only, having staged nothing.
    fn stage_claim(
        &mut self,
        req: &ClaimRequest,
        p: &Prepared,
    ) -> Result<ClaimOutcome, StoreError> {
        let user = req.user();
        if let Some(key) = &req.idempotency {
            let record = self.idempotency_record(user, key.key())?;
            match claim::check_key(record.as_ref(), key, req.now_ms) {
                KeyCheck::Fresh => {}
                KeyCheck::Conflict => return Ok(ClaimOutcome::IdempotencyConflict),
                KeyCheck::Replay(kind, id) => {
                    let order = self.read_order(&id)?.ok_or_else(|| {
                        StoreError::Corrupt(format!("idempotency key names missing order {id}"))
                    })?;
                    return Ok(kind.outcome(order));
                }
            }
        }
        let outcome = if let Some(order) = self.read_order(&p.order_id)? {
            claim::replay(order, &p.gift_id)
        } else {
            let gift = usize::from(req.gift.0);
            let taken = self.staged.stock.get(&req.gift).copied().unwrap_or(self.stock[gift]);
            if taken >= req.stock {
                return Ok(ClaimOutcome::OutOfStock);
            }
            let claimed = self.user_gift_count(user, req.gift, &p.gift_id)?;
            if claimed >= req.per_user_limit {
                return Ok(ClaimOutcome::LimitReached);
            }
            let order = claim::new_order(req, p);
            assert!(taken < req.stock && claimed < req.per_user_limit);
            self.staged.stock.insert(req.gift, taken + 1);
            self.staged.user_gifts.insert((user, req.gift), claimed + 1);
            self.staged.user_orders.push((user, p.order_id));
            self.stage_enqueue(QueueSlot { game: p.game, ready_at_ms: req.now_ms, id: p.order_id });
            self.staged.orders.insert(p.order_id, order.clone());
            ClaimOutcome::Accepted(Box::new(order))
        };
        if let (Some(key), Some(kind)) = (&req.idempotency, RecordedKind::of(&outcome)) {
            let record = IdempotencyRecord {
                expires_at_ms: req.now_ms.saturating_add(IDEMPOTENCY_TTL_MS),
                fingerprint: *key.fingerprint(),
                kind,
                order_id: p.order_id,
            };
            self.staged.idempotency.insert((user, key.key().to_string()), record);
        }
        Ok(outcome)
    }

    fn stage_settle(
        &mut self,
        order_id: OrderId,
        lease_id: LeaseId,
        action: SettleAction,
        now_ms: u64,
    ) -> Result<Settled, StoreError> {
        let lease = match self.leases.get(&order_id) {
            Some(lease) if lease.id == lease_id => *lease,
            _ => return Ok(Settled::NotLeased),
        };
        let stored = self.read_order(&order_id)?;
        let Some(stored) =
            stored.filter(|o| o.status.is_in_queue() && o.ready_at_ms == Some(lease.ready_at_ms))
        else {
            // Checked when leased and unchangeable while leased: the disk changed under us.
            self.end_lease(order_id);
            return Err(StoreError::Corrupt(format!("leased order {order_id} changed on disk")));
        };
        let delivering =
            stored.apply(&OrderEvent::StartDelivery, now_ms).expect("queued orders can start");
        let (event, sent) = match action {
            SettleAction::Finish(Finish::Delivered) => (OrderEvent::Delivered, true),
            SettleAction::Finish(Finish::Dead { reason }) => (OrderEvent::Fail { reason }, false),
            SettleAction::Finish(Finish::Expired) => (OrderEvent::Expire, false),
            SettleAction::Retry { ready_at_ms, error } => {
                (OrderEvent::Retry { ready_at_ms, error }, false)
            }
            SettleAction::Release => {
                self.end_lease(order_id);
                // Leasable again at its old position: scans must start there again.
                self.look_ahead[usize::from(lease.game.0)].invalidate_from(lease.ready_at_ms);
                let state = &mut self.tentative_games[usize::from(lease.game.0)];
                state.cursor_ms = state.cursor_ms.min(lease.ready_at_ms);
                return Ok(Settled::Applied(Box::new(stored)));
            }
        };
        let next = delivering.apply(&event, now_ms).expect("legal from delivering");
        self.end_lease(order_id);
        let slot = QueueSlot { game: lease.game, ready_at_ms: lease.ready_at_ms, id: order_id };
        self.stage_dequeue(slot);
        if let Some(ready_at_ms) = next.ready_at_ms {
            self.stage_enqueue(QueueSlot { ready_at_ms, ..slot });
        }
        if sent {
            self.staged.sent.push((order_id, now_ms));
        }
        self.staged.orders.insert(order_id, next.clone());
        Ok(Settled::Applied(Box::new(next)))
    }

    fn stage_requeue(
        &mut self,
        order_id: OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
    ) -> Result<RequeueOutcome, StoreError> {
        let Some(order) = self.read_order(&order_id)? else {
            return Ok(RequeueOutcome::NotFound);
        };
        let game = self.binding.game_index(&order.game_id).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game `{}` is not bound", order.game_id))
        })?;
        if order.status.is_in_queue() {
            let ready_at_ms = order.ready_at_ms.expect("consistent orders in the queue have one");
            let slot = QueueSlot { game, ready_at_ms, id: order_id };
            if self.queue_has(slot)? {
                return Ok(RequeueOutcome::Unchanged(Box::new(order)));
            }
            self.stage_enqueue(slot);
            return Ok(RequeueOutcome::Repaired(Box::new(order)));
        }
        if order.status == OrderStatus::Held {
            return Ok(RequeueOutcome::Unchanged(Box::new(order)));
        }
        let event = OrderEvent::Resend { ready_at_ms: now_ms, deliver_by_ms };
        let next = order.apply(&event, now_ms).expect("final orders can be resent");
        self.stage_enqueue(QueueSlot { game, ready_at_ms: now_ms, id: order_id });
        self.staged.orders.insert(order_id, next.clone());
        Ok(RequeueOutcome::Requeued(Box::new(next)))
    }

    fn stage_record_delivered(
        &mut self,
        order_id: OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
    ) -> Result<RecordOutcome, StoreError> {
        let Some(order) = self.read_order(&order_id)? else {
            return Ok(RecordOutcome::NotFound);
        };
        if self.leases.contains_key(&order_id) {
            return Ok(RecordOutcome::InFlight(Box::new(order)));
        }
        let Some(next) = recorded_delivered(&order, delivered_at_ms, now_ms) else {
            return Ok(RecordOutcome::Unchanged(Box::new(order)));
        };
        if let Some(ready_at_ms) = order.ready_at_ms {
            let game = self.binding.game_index(&order.game_id).ok_or_else(|| {
                StoreError::InvalidConfig(format!("game `{}` is not bound", order.game_id))
            })?;
            let slot = QueueSlot { game, ready_at_ms, id: order_id };
            // Missing when deleted by hand; then there is nothing to remove. Not leased, so it
            // may be read ahead: forget those.
            if self.queue_has(slot)? {
                self.look_ahead[usize::from(game.0)].invalidate_from(ready_at_ms);
                self.stage_dequeue(slot);
            }
        }
        self.staged.sent.push((order_id, delivered_at_ms));
        self.staged.orders.insert(order_id, next.clone());
        Ok(RecordOutcome::Recorded(Box::new(next)))
    }

    fn end_lease(&mut self, order_id: OrderId) {
        if let Some(lease) = self.leases.remove(&order_id) {
            let slot = usize::from(lease.game.0);
            self.leased[slot] -= 1;
            self.shared.games[slot].leased.store(self.leased[slot], Ordering::Release);
        }
    }

    /// The due time of `game`'s oldest entry that is not in flight (after the batch's commit).
    fn oldest(&mut self, game: GameIndex) -> Result<Option<u64>, StoreError> {
        let binding = Arc::clone(&self.binding);
        let game_id = binding.game_id(game).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game index {} is not bound", game.0))
        })?;
        let cursor_ms = self.games[usize::from(game.0)].cursor_ms;
        if cursor_ms == u64::MAX {
            return Ok(None);
        }
        let from = layout::queue_bound(game_id, cursor_ms);
        let (mut oldest, mut bad) = (None, None);
        let leases = &self.leases;
        self.backend.scan(Space::Queue, &from, &layout::queue_end(game_id), &mut |key| {
            match layout::decode_queue_key(key) {
                Ok((_, ready_at_ms, id)) if !leases.contains_key(&id) => {
                    oldest = Some(ready_at_ms);
                    false
                }
                Ok(_) => true,
                Err(error) => {
                    bad = Some(error);
                    false
                }
            }
        })?;
        bad.map_or(Ok(oldest), Err)
    }

    /// Leases due entries of `game` against committed state (after the batch's commit).
    /// Reads up to [`LOOK_AHEAD_MAX`] leasable entries of the game in `slot` due from
    /// `cursor_ms` to `now_ms` into its look-ahead (which is empty), leaving out `taken`.
    fn read_ahead(
        &mut self,
        slot: usize,
        game_id: &str,
        cursor_ms: u64,
        now_ms: u64,
        taken: &[OrderId],
    ) -> Result<(), StoreError> {
        let from = layout::queue_bound(game_id, cursor_ms);
        let to = match now_ms.checked_add(1) {
            Some(end) => layout::queue_bound(game_id, end),
            None => layout::queue_end(game_id),
        };
        let ahead = &mut self.look_ahead[slot];
        debug_assert!(ahead.entries.is_empty());
        let mut bad = None;
        let leases = &self.leases;
        let entries = &mut ahead.entries;
        self.backend.scan(
            Space::Queue,
            &from,
            &to,
            &mut |key| match layout::decode_queue_key(key) {
                Ok((_, ready_at_ms, id)) => {
                    if !leases.contains_key(&id) && !taken.contains(&id) {
                        entries.push_back((ready_at_ms, id));
                    }
                    entries.len() < LOOK_AHEAD_MAX
                }
                Err(error) => {
                    bad = Some(error);
                    false
                }
            },
        )?;
        if let Some(error) = bad {
            entries.clear();
            return Err(error);
        }
        ahead.truncated = ahead.entries.len() == LOOK_AHEAD_MAX;
        ahead.covered_to_ms = match ahead.entries.back() {
            Some((ready_at_ms, _)) if ahead.truncated => ready_at_ms.saturating_add(1),
            _ => now_ms.saturating_add(1),
        };
        Ok(())
    }

    fn lease(
        &mut self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let slot = usize::from(game.0);
        let binding = Arc::clone(&self.binding);
        let game_id = binding.game_id(game).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game index {} is not bound", game.0))
        })?;
        let max = max.min(LEASE_BATCH_MAX).min(LEASES_MAX.saturating_sub(self.leases.len()));
        let cursor_ms = self.games[slot].cursor_ms;
        if max == 0 || cursor_ms > now_ms {
            return Ok(Vec::new());
        }
        let mut due: Vec<(u64, OrderId)> = Vec::new();
        let mut scan_from_ms = cursor_ms;
        loop {
            if self.look_ahead[slot].entries.is_empty() {
                // Entries taken by this call are not in `leases` yet: a scan resuming at the
                // due time they share must not read them again.
                let taken: Vec<OrderId> = due
                    .iter()
                    .rev()
                    .take_while(|(ready_at_ms, _)| *ready_at_ms == scan_from_ms)
                    .map(|(_, id)| *id)
                    .collect();
                self.read_ahead(slot, game_id, scan_from_ms, now_ms, &taken)?;
            }
            let ahead = &mut self.look_ahead[slot];
            while due.len() < max
                && let Some(&(ready_at_ms, id)) = ahead.entries.front()
                && ready_at_ms <= now_ms
            {
                ahead.entries.pop_front();
                due.push((ready_at_ms, id));
            }
            // Every leasable entry before the first one still read ahead is taken now (an entry
            // skipped below as damaged too: reconciliation reports it, scans need not revisit
            // it). With none left: a scan that stopped at its limit resumes at its last due
            // time; one that ran out of range took everything leasable before `covered_to_ms`.
            let resume_ms = match ahead.entries.front() {
                Some((ready_at_ms, _)) => *ready_at_ms,
                None if ahead.truncated => ahead.covered_to_ms - 1,
                None => ahead.covered_to_ms,
            };
            self.games[slot].cursor_ms = resume_ms;
            // Read on while this call wants more, none is left read ahead, and more may be due:
            // the last scan stopped at its limit or ended before `now_ms` (it ran at an earlier
            // lease).
            let more_may_be_due = ahead.truncated || ahead.covered_to_ms <= now_ms;
            if due.len() >= max || !ahead.entries.is_empty() || !more_may_be_due {
                break;
            }
            scan_from_ms = resume_ms;
        }

        let mut entries = Vec::with_capacity(due.len());
        for (ready_at_ms, id) in due {
            let order = match self.read_order(&id) {
                Ok(Some(order))
                    if order.status.is_in_queue()
                        && order.ready_at_ms == Some(ready_at_ms)
                        && order.game_id == game_id =>
                {
                    order
                }
                other => {
                    // Only a damaged disk gets here; reconciliation reports such entries.
                    tracing::error!(order = %id, game = game_id, ?other, "queue entry without a matching queued order; skipped");
                    continue;
                }
            };
            let order = order.apply(&OrderEvent::StartDelivery, now_ms).expect("queued");
            let lease = LeaseId((self.incarnation << LEASE_COUNTER_BITS) | self.next_lease);
            self.next_lease += 1;
            assert!(self.next_lease < 1 << LEASE_COUNTER_BITS, "lease counter overflow");
            self.leases.insert(id, Lease { id: lease, game, ready_at_ms });
            self.leased[slot] += 1;
            entries.push(QueueEntry { order, game, lease });
        }
        self.shared.games[slot].leased.store(self.leased[slot], Ordering::Release);
        Ok(entries)
    }
}

/// Decide one grant against staged state and stage its effects. A read error fails this
/// request only; it staged nothing.
fn stage_grant<B: Backend>(
    backend: &mut B,
    staged: &mut Staged,
    tentative: &mut [u64; CHANNELS],
    req: GrantRequest,
) -> Result<GrantOutcome, StoreError> {
    let index = channel_index(req.channel);
    if tentative[index] >= req.budget {
        return Ok(GrantOutcome::BudgetExhausted);
    }
    let key = grant_key(req.user, req.channel);
    let count = match staged.grants.get(&key) {
        Some(count) => *count,
        None => match backend.get(Space::Grants, &key)? {
            Some(bytes) => layout::decode_count(&key, bytes.as_ref())?,
            None => 0,
        },
    };
    if count >= req.per_user_limit {
        return Ok(GrantOutcome::UserLimitReached);
    }
    let serial = count + 1;
    tentative[index] += 1;
    assert!(serial <= req.per_user_limit && tentative[index] <= req.budget);
    staged.grants.insert(key, serial);
    staged.budgets[index] = Some(tentative[index]);
    Ok(GrantOutcome::Granted { serial })
}

/// The writer thread's body: runs until every sender is gone and the queue is drained, so the
/// commands accepted before shutdown are all answered.
pub(crate) fn run<B: Backend>(
    mut ledger: Ledger<B>,
    mut queue: mpsc::Receiver<Command>,
    batch_max: usize,
    linger: Option<CommitLinger>,
) {
    let take_queued = |queue: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>| {
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
    };
    let mut batch = Vec::with_capacity(batch_max);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        take_queued(&mut queue, &mut batch);
        if let Some(linger) = &linger
            && batch.len() < batch_max
        {
            linger.idle.wait_until_idle(Instant::now() + linger.max);
            take_queued(&mut queue, &mut batch);
        }
        ledger.run_batch(batch.drain(..));
    }
}

#[cfg(test)]
mod tests;
