//! In-memory implementations of the cache's ports, for tests (here and in the crates above):
//! a counting [`MemoryRoleSource`] standing in for the game side and a [`MemoryRoleStore`]
//! standing in for the shared L2.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hongbao_domain::{GameIndex, Role};

use crate::cache::{BoxFuture, RoleKey, RoleSource, RoleStoreL2};
use crate::error::GatewayError;

/// Most failures [`MemoryRoleSource::fail_next`] queues.
pub const FAKE_FAILURES_MAX: usize = 1024;
/// Default bound on [`MemoryRoleStore`] entries.
pub const MEMORY_STORE_ENTRIES_MAX_DEFAULT: usize = 100_000;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A role source answering from a map (absent key = no role), counting its calls, optionally
/// slow and optionally failing the next calls.
#[derive(Debug, Default)]
pub struct MemoryRoleSource {
    roles: Mutex<HashMap<RoleKey, Vec<Role>>>,
    failures: Mutex<VecDeque<GatewayError>>,
    calls: AtomicU64,
    delay: Duration,
}

impl MemoryRoleSource {
    pub fn new() -> MemoryRoleSource {
        MemoryRoleSource::default()
    }

    /// A source that waits `delay` before each answer (to widen single-flight windows).
    pub fn with_delay(delay: Duration) -> MemoryRoleSource {
        MemoryRoleSource { delay, ..MemoryRoleSource::default() }
    }

    pub fn set_roles(&self, user: u64, game: GameIndex, roles: Vec<Role>) {
        locked(&self.roles).insert(RoleKey { user, game }, roles);
    }

    /// The next call fails with `error` (queued in order; at most [`FAKE_FAILURES_MAX`]).
    pub fn fail_next(&self, error: GatewayError) {
        let mut failures = locked(&self.failures);
        assert!(failures.len() < FAKE_FAILURES_MAX, "too many queued fake failures");
        failures.push_back(error);
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl RoleSource for MemoryRoleSource {
    fn fetch_roles(
        &self,
        user: u64,
        game: GameIndex,
    ) -> BoxFuture<'_, Result<Vec<Role>, GatewayError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if let Some(error) = locked(&self.failures).pop_front() {
                return Err(error);
            }
            Ok(locked(&self.roles).get(&RoleKey { user, game }).cloned().unwrap_or_default())
        })
    }
}

/// A stored list and the instant it expires.
type StoredRoles = (Arc<[Role]>, Instant);

/// A bounded in-memory L2 with per-entry expiry, counting its operations; can be switched to
/// fail every call (a Redis outage).
#[derive(Debug)]
pub struct MemoryRoleStore {
    entries: Mutex<HashMap<RoleKey, StoredRoles>>,
    max_entries: usize,
    failing: AtomicBool,
    gets: AtomicU64,
    puts: AtomicU64,
}

impl Default for MemoryRoleStore {
    fn default() -> Self {
        MemoryRoleStore::new(MEMORY_STORE_ENTRIES_MAX_DEFAULT)
    }
}

impl MemoryRoleStore {
    pub fn new(max_entries: usize) -> MemoryRoleStore {
        assert!(max_entries > 0, "store needs room for at least one entry");
        MemoryRoleStore {
            entries: Mutex::default(),
            max_entries,
            failing: AtomicBool::new(false),
            gets: AtomicU64::new(0),
            puts: AtomicU64::new(0),
        }
    }

    /// While set, every call fails with [`GatewayError::Store`].
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Stores an entry directly (as another node would have).
    pub fn insert(&self, key: RoleKey, roles: Vec<Role>, ttl: Duration) {
        locked(&self.entries).insert(key, (roles.into(), Instant::now() + ttl));
    }

    /// The live entry's roles and remaining TTL.
    pub fn peek(&self, key: RoleKey) -> Option<(Arc<[Role]>, Duration)> {
        let now = Instant::now();
        locked(&self.entries)
            .get(&key)
            .filter(|(_, expires)| *expires > now)
            .map(|(roles, expires)| (roles.clone(), *expires - now))
    }

    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), GatewayError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(GatewayError::Store("memory store set to fail".to_string()));
        }
        Ok(())
    }
}

impl RoleStoreL2 for MemoryRoleStore {
    fn get(&self, key: RoleKey) -> BoxFuture<'_, Result<Option<Arc<[Role]>>, GatewayError>> {
        Box::pin(async move {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.check()?;
            Ok(self.peek(key).map(|(roles, _)| roles))
        })
    }

    fn put(
        &self,
        key: RoleKey,
        roles: Arc<[Role]>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), GatewayError>> {
        Box::pin(async move {
            self.puts.fetch_add(1, Ordering::SeqCst);
            self.check()?;
            let now = Instant::now();
            let mut entries = locked(&self.entries);
            if entries.len() >= self.max_entries && !entries.contains_key(&key) {
                entries.retain(|_, (_, expires)| *expires > now);
                if entries.len() >= self.max_entries {
                    return Err(GatewayError::Store(format!(
                        "memory store full ({} entries)",
                        self.max_entries
                    )));
                }
            }
            entries.insert(key, (roles, now + ttl));
            Ok(())
        })
    }

    fn remove(&self, key: RoleKey) -> BoxFuture<'_, Result<(), GatewayError>> {
        Box::pin(async move {
            self.check()?;
            locked(&self.entries).remove(&key);
            Ok(())
        })
    }
}
