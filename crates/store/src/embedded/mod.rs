//! The embedded adapter: fjall 3 on local disk, one writer thread, group commit.
//!
//! # How a grant becomes durable
//!
//! [`EmbeddedStore::grant`] puts a command on a bounded queue (`queue_max`; a full queue makes
//! callers wait, which is the backpressure the API's admission control sees) and awaits a
//! oneshot answer. The writer thread (`writer.rs`) drains up to `batch_max` commands, decides
//! them in order, writes their effects as ONE fjall write batch across keyspaces and makes it
//! durable with one `fsync` (`OwnedWriteBatch::durability(Some(PersistMode::SyncAll))`, which
//! writes the journal and syncs it under one journal lock), and only then answers the batch.
//! A channel whose committed counter reached the request's budget is answered without queueing.
//!
//! Reads that need no decision (metrics, later "my orders") do not go through the writer:
//! fjall handles are thread-safe, and committed counters are published in atomics.
//!
//! # Growing into the claim (issue 5)
//!
//! The claim is one more variant of the writer's `Command` enum, `Claim { req, reply }`, decided
//! by a `stage_claim` beside `stage_grant`: it reads the coupon's redemption row, the user's
//! count for the gift and the gift's stock through new `Backend` methods (each answered first
//! from the batch's `Staged` overlay, so two claims in one batch see each other), and stages the
//! redemption, the per-user-gift count, the stock counter, the order row and the delivery queue
//! entry into new `Staged` fields. The batch's single `Backend::commit` writes grants and claims
//! together, atomically, with the one fsync; a failed commit already fails every command of the
//! batch through `Pending::fail`. Nothing about queueing, batching, rollback or shutdown changes;
//! new keyspaces (`coupons`, `orders`, `queue/<game>`, stock under `counters`) are added to
//! `layout.rs` without touching the existing ones.
//!
//! # Caveat: a failed fsync
//!
//! If the journal write or fsync fails, the batch's callers get [`StoreError::Unavailable`] and
//! the store refuses all further writes (fjall poisons the database; restart to recover). The
//! batch's bytes may still reach the disk through the OS, so after the restart those grants can
//! exist although their callers heard an error: a user may lose a slot and the budget may count
//! up to `batch_max` coupons nobody holds. Never the other way round: nothing answered
//! `Granted` is lost, and no limit or budget is exceeded.
//!
//! See `layout.rs` for the persisted layout (and its warning).

mod layout;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::{mpsc, oneshot};

use crate::{
    CHANNELS, Channel, GrantLedger, GrantOutcome, GrantRequest, StoreError, channel_index,
};
use layout::{COUNTERS_KEYSPACE, GRANTS_KEYSPACE, GrantKey};
use writer::{Backend, Command, Ledger, Shared, Staged};

/// Default bound of the writer's queue: about a tenth of a second of the campaign's peak.
pub const QUEUE_MAX_DEFAULT: usize = 16_384;
/// Default largest group commit. One fsync per batch; a larger batch amortises more but makes
/// its first caller wait for all of it.
pub const BATCH_MAX_DEFAULT: usize = 1_024;
/// Largest accepted `queue_max`: each slot may hold a waiting request.
pub const QUEUE_MAX_LIMIT: usize = 1 << 20;
/// Largest accepted `batch_max`: the batch and its staged writes are held in memory.
pub const BATCH_MAX_LIMIT: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Commands waiting for the writer, at most.
    pub queue_max: usize,
    /// Commands per group commit (one atomic batch, one fsync), at most.
    pub batch_max: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { queue_max: QUEUE_MAX_DEFAULT, batch_max: BATCH_MAX_DEFAULT }
    }
}

/// What the writer has done since open; counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Commands decided (granted, rejected or failed).
    pub commands: u64,
    /// Batches run, including batches of rejections only (which write nothing).
    pub batches: u64,
    /// Commits attempted, each one atomic batch with one fsync.
    pub fsyncs: u64,
    /// Commits that failed; after the first the store refuses writes.
    pub commit_failures: u64,
    /// Largest batch so far.
    pub batch_len_max: u64,
}

/// Durable [`GrantLedger`] on fjall. Dropping it (or [`EmbeddedStore::close`]) stops taking new
/// commands, lets the writer answer every queued one and joins it; that blocks the calling
/// thread for at most one queue's worth of batches.
pub struct EmbeddedStore {
    queue: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, loads the budget counters and starts the writer.
    /// Fails with `Unavailable` if another process has the directory open.
    pub fn open(dir: &Path, config: EmbeddedConfig) -> Result<Self, StoreError> {
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
        let (backend, granted) = FjallBackend::open(dir)?;
        let shared = Arc::new(Shared::with_granted(granted));
        let ledger = Ledger::new(backend, granted, Arc::clone(&shared));
        let (queue, receiver) = mpsc::channel(config.queue_max);
        let batch_max = config.batch_max;
        let writer = std::thread::Builder::new()
            .name("hongbao-store-writer".into())
            .spawn(move || writer::run(ledger, receiver, batch_max))
            .map_err(|e| StoreError::Unavailable(format!("start the store writer: {e}")))?;
        Ok(Self { queue: Some(queue), writer: Some(writer), shared })
    }

    pub fn stats(&self) -> EmbeddedStats {
        let s = &self.shared;
        EmbeddedStats {
            commands: s.commands.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            commit_failures: s.commit_failures.load(Ordering::Relaxed),
            batch_len_max: s.batch_len_max.load(Ordering::Relaxed),
        }
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
        let queue =
            self.queue.as_ref().ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(Command::Grant { req, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the store writer stopped before answering".into())
        })?
    }

    fn granted(&self, channel: Channel) -> u64 {
        self.shared.granted(channel)
    }
}

/// The writer's fjall handles. Owned by the writer thread; dropped (closing the database) when
/// it ends.
struct FjallBackend {
    db: Database,
    grants: Keyspace,
    counters: Keyspace,
}

impl FjallBackend {
    fn open(dir: &Path) -> Result<(Self, [u64; CHANNELS]), StoreError> {
        let db = Database::builder(dir).open().map_err(|e| match e {
            fjall::Error::Locked => {
                StoreError::Unavailable(format!("{} is open in another process", dir.display()))
            }
            e => StoreError::Unavailable(format!("open {}: {e}", dir.display())),
        })?;
        let grants = db
            .keyspace(GRANTS_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(|e| unavailable("open keyspace grants", &e))?;
        let counters = db
            .keyspace(COUNTERS_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(|e| unavailable("open keyspace counters", &e))?;
        let mut granted = [0u64; CHANNELS];
        for channel in Channel::ALL {
            let key = layout::budget_key(channel);
            if let Some(bytes) =
                counters.get(&key).map_err(|e| unavailable("read a budget counter", &e))?
            {
                granted[channel_index(channel)] = layout::decode_budget(channel, &bytes)?;
            }
        }
        Ok((Self { db, grants, counters }, granted))
    }
}

impl Backend for FjallBackend {
    fn user_count(&mut self, key: &GrantKey) -> Result<u32, StoreError> {
        match self.grants.get(key).map_err(|e| unavailable("read a grant count", &e))? {
            Some(bytes) => layout::decode_count(key, &bytes),
            None => Ok(0),
        }
    }

    fn commit(&mut self, staged: &Staged) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (key, count) in &staged.grants {
            batch.insert(&self.grants, *key, layout::encode_count(*count));
        }
        for channel in Channel::ALL {
            if let Some(granted) = staged.budgets[channel_index(channel)] {
                batch.insert(
                    &self.counters,
                    layout::budget_key(channel),
                    layout::encode_budget(granted),
                );
            }
        }
        batch.commit().map_err(|e| unavailable("commit and fsync a ledger batch", &e))
    }
}

fn unavailable(what: &str, error: &fjall::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}
