//! The writer's [`Backend`] on fjall: the database, its keyspaces, one write batch per commit
//! (fsynced or buffered), and the compaction filter that drops expired idempotency keys by the
//! injected clock.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use hongbao_clock::SharedClock;

use super::Reader;
use super::known::Known;
use super::layout;
use super::writer::{Backend, Durability, Space};
use crate::StoreError;

/// The writer's fjall handles. Owned by the writer thread; dropped (closing the database, once
/// the store handle's read handles are gone too) when it ends.
pub(super) struct FjallBackend {
    pub(super) db: Database,
    /// Indexed by `Space as usize`.
    spaces: Vec<Keyspace>,
    batch: Option<OwnedWriteBatch>,
}

impl FjallBackend {
    /// Opens (or creates) the database in `dir`; `clock` tells its compaction filter which
    /// idempotency keys have expired.
    pub(super) fn open(dir: &Path, clock: SharedClock) -> Result<Self, StoreError> {
        let expired_keys: Arc<dyn Factory> =
            Arc::new(ExpiredKeys { clock: AssertUnwindSafe(clock) });
        let db = Database::builder(dir)
            .with_compaction_filter_factories(Arc::new(move |keyspace| {
                (keyspace == layout::IDEMPOTENCY_KEYSPACE).then(|| Arc::clone(&expired_keys))
            }))
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => {
                    StoreError::Unavailable(format!("{} is open in another process", dir.display()))
                }
                e => StoreError::Unavailable(format!("open {}: {e}", dir.display())),
            })?;
        let mut spaces = Vec::with_capacity(Space::ALL.len());
        for (index, space) in Space::ALL.into_iter().enumerate() {
            assert_eq!(space as usize, index);
            let keyspace = db
                .keyspace(space.name(), KeyspaceCreateOptions::default)
                .map_err(|e| unavailable(&format!("open keyspace {}", space.name()), &e))?;
            spaces.push(keyspace);
        }
        Ok(Self { db, spaces, batch: None })
    }

    pub(super) fn keyspace(&self, space: Space) -> &Keyspace {
        &self.spaces[space as usize]
    }

    pub(super) fn reader(&self, known: Arc<Known>) -> Reader {
        Reader {
            db: self.db.clone(),
            known,
            orders: self.keyspace(Space::Orders).clone(),
            user_orders: self.keyspace(Space::UserOrders).clone(),
            counters: self.keyspace(Space::Counters).clone(),
            queue: self.keyspace(Space::Queue).clone(),
            sent: self.keyspace(Space::Sent).clone(),
            idempotency: self.keyspace(Space::Idempotency).clone(),
        }
    }

    fn open_batch(&mut self) -> &mut OwnedWriteBatch {
        let db = &self.db;
        self.batch.get_or_insert_with(|| db.batch())
    }
}

impl Backend for FjallBackend {
    type Bytes = fjall::Slice;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
        self.keyspace(space).get(key).map_err(|e| unavailable("read the ledger", &e))
    }

    fn scan(
        &mut self,
        space: Space,
        from: &[u8],
        to: &[u8],
        visit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for guard in self.keyspace(space).range(from..to) {
            let key = guard.key().map_err(|e| unavailable("scan the ledger", &e))?;
            if !visit(&key) {
                break;
            }
        }
        Ok(())
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) {
        let keyspace = self.spaces[space as usize].clone();
        self.open_batch().insert(&keyspace, key, value);
    }

    fn delete(&mut self, space: Space, key: &[u8]) {
        let keyspace = self.spaces[space as usize].clone();
        self.open_batch().remove(&keyspace, key);
    }

    fn commit(&mut self, durability: Durability) -> Result<(), StoreError> {
        let Some(batch) = self.batch.take() else { return Ok(()) };
        match durability {
            Durability::Synced => batch
                .durability(Some(PersistMode::SyncAll))
                .commit()
                .map_err(|e| unavailable("commit and fsync a ledger batch", &e)),
            // Written to the journal file (the OS's page cache) without an fsync: the next
            // synced batch's fsync covers it too.
            Durability::Buffered => batch
                .durability(Some(PersistMode::Buffer))
                .commit()
                .map_err(|e| unavailable("commit a ledger batch", &e)),
        }
    }
}

/// Compaction filter of the `idempotency` keyspace: drops keys whose expiry has passed by the
/// injected clock (the same boundary the writer uses: a key is valid while `expires_at > now`;
/// the writer's `now` is the claim's, which its caller took from the same kind of clock).
/// A value that is not an idempotency record is kept: the filter must never lose data it does
/// not understand.
struct ExpiredKeys {
    /// fjall asks its filters to be unwind-safe. A clock read leaves nothing half-changed, so a
    /// panic in a compaction cannot expose a broken clock.
    clock: AssertUnwindSafe<SharedClock>,
}

impl Factory for ExpiredKeys {
    fn name(&self) -> &str {
        "hongbao-expired-idempotency-keys"
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        Box::new(ExpiredKeysAt { now_ms: self.clock.now_ms() })
    }
}

struct ExpiredKeysAt {
    now_ms: u64,
}

impl CompactionFilter for ExpiredKeysAt {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> CompactionFilterResult {
        let value = item.value()?;
        Ok(match layout::idempotency_expiry(&value) {
            Some(expires_at_ms) if expires_at_ms <= self.now_ms => Verdict::Remove,
            _ => Verdict::Keep,
        })
    }
}

pub(super) fn unavailable(what: &str, error: &fjall::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}
