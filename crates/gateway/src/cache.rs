//! The multi-level role cache: L1 in-process → L2 shared store (optional) → the game side.
//!
//! The game side's role query is slow (tens of milliseconds) and can absorb far less than the
//! list view's traffic, so every role look-up goes through here:
//! - L1 is a bounded `moka` cache with a TTL, and a shorter TTL for "no role" answers (a new
//!   player may create one any moment).
//! - Single-flight: concurrent misses for one key share one load (moka's `try_get_with`), so a
//!   spike on a cold key costs the game side one query, not thousands.
//! - Errors are never cached: the next request tries again.
//! - L2 (Redis in the distributed mode, none embedded) is read before the game side and written
//!   after it, so the nodes of a cluster share one game-side query per key and TTL.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hongbao_domain::{GameIndex, Role};

use crate::error::GatewayError;
use crate::idip::IdipClient;

/// A boxed, sendable future: keeps the ports below object-safe (`Arc<dyn …>`), so the app picks
/// the adapters at start-up and tests swap in fakes. One allocation per upstream call is noise
/// next to the network round trip it stands for.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Default bound on L1 entries. An entry (key, `Arc<[Role]>` with up to three roles, moka's own
/// bookkeeping) takes roughly 200–300 bytes, so this is a few hundred MiB at the worst.
pub const ROLE_CACHE_ENTRIES_MAX_DEFAULT: u64 = 1_000_000;
/// Default TTL of a cached role list: roles change rarely during a campaign (level-ups matter only
/// for level-gated gifts, and the claim re-checks against a fresh answer).
pub const ROLE_CACHE_TTL_MS_DEFAULT: u64 = 60_000;
/// Default TTL of a cached "no role in this game": short, because a new player creates a role
/// right before claiming a new-user pack.
pub const ROLE_CACHE_NEGATIVE_TTL_MS_DEFAULT: u64 = 10_000;

/// Identifies one user's roles in one game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoleKey {
    pub user: u64,
    pub game: GameIndex,
}

/// Where role lists come from when no cache has them: the game side ([`IdipClient`]) or a fake.
pub trait RoleSource: Send + Sync {
    /// The user's roles in the game; empty when they have none there.
    fn fetch_roles(
        &self,
        user: u64,
        game: GameIndex,
    ) -> BoxFuture<'_, Result<Vec<Role>, GatewayError>>;
}

impl RoleSource for IdipClient {
    fn fetch_roles(
        &self,
        user: u64,
        game: GameIndex,
    ) -> BoxFuture<'_, Result<Vec<Role>, GatewayError>> {
        Box::pin(self.query_roles(user, game))
    }
}

/// The shared second-level store (Redis in the distributed mode). Narrow on purpose: the cache
/// needs nothing else, and an in-memory implementation ([`crate::MemoryRoleStore`]) tests it.
pub trait RoleStoreL2: Send + Sync {
    /// The cached list, or `None` when absent or expired. An empty list is a cached "no role".
    fn get(&self, key: RoleKey) -> BoxFuture<'_, Result<Option<Arc<[Role]>>, GatewayError>>;
    /// Stores `roles` for `ttl`, replacing any earlier entry.
    fn put(
        &self,
        key: RoleKey,
        roles: Arc<[Role]>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), GatewayError>>;
    /// Forgets the entry (after the user created a role).
    fn remove(&self, key: RoleKey) -> BoxFuture<'_, Result<(), GatewayError>>;
}

/// Bounds and TTLs of the role cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleCacheConfig {
    /// Most entries L1 holds; moka evicts beyond it (by its TinyLFU policy).
    pub max_entries: u64,
    /// TTL of a non-empty role list, in L1 and L2.
    pub ttl: Duration,
    /// TTL of an empty list ("no role in this game"), in L1 and L2.
    pub negative_ttl: Duration,
}

impl Default for RoleCacheConfig {
    fn default() -> Self {
        RoleCacheConfig {
            max_entries: ROLE_CACHE_ENTRIES_MAX_DEFAULT,
            ttl: Duration::from_millis(ROLE_CACHE_TTL_MS_DEFAULT),
            negative_ttl: Duration::from_millis(ROLE_CACHE_NEGATIVE_TTL_MS_DEFAULT),
        }
    }
}

impl RoleCacheConfig {
    fn ttl_for(&self, roles: &[Role]) -> Duration {
        if roles.is_empty() { self.negative_ttl } else { self.ttl }
    }
}

/// Counters of the role cache, plain atomics so that metrics read them without locks. Every
/// [`RoleCache::roles`] call adds one to exactly one of `hits_l1`, `coalesced`, `hits_l2` or
/// `misses` ([`RoleCache::refresh`] adds to `misses`); `upstream_errors` and `store_errors` count
/// failures on top.
#[derive(Debug, Default)]
pub struct RoleCacheStats {
    /// Answered from L1.
    pub hits_l1: AtomicU64,
    /// Answered by another request's load of the same key (single-flight waiters).
    pub coalesced: AtomicU64,
    /// Answered from L2 (then written to L1).
    pub hits_l2: AtomicU64,
    /// Calls to the role source (the game side), successful or not.
    pub misses: AtomicU64,
    /// Role-source calls that failed (not cached).
    pub upstream_errors: AtomicU64,
    /// L2 reads or writes that failed (reads fall through to the source).
    pub store_errors: AtomicU64,
}

/// A point-in-time copy of [`RoleCacheStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleCacheCounters {
    pub hits_l1: u64,
    pub coalesced: u64,
    pub hits_l2: u64,
    pub misses: u64,
    pub upstream_errors: u64,
    pub store_errors: u64,
}

impl RoleCacheStats {
    pub fn snapshot(&self) -> RoleCacheCounters {
        RoleCacheCounters {
            hits_l1: self.hits_l1.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            hits_l2: self.hits_l2.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// L1 key: (user, game index). A tuple rather than [`RoleKey`] keeps moka's hashing trivial.
type L1Key = (u64, u8);

/// Per-entry expiry: the positive or negative TTL, decided by the value.
struct RoleExpiry {
    config: RoleCacheConfig,
}

impl moka::Expiry<L1Key, Arc<[Role]>> for RoleExpiry {
    fn expire_after_create(
        &self,
        _key: &L1Key,
        value: &Arc<[Role]>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.config.ttl_for(value))
    }

    fn expire_after_update(
        &self,
        _key: &L1Key,
        value: &Arc<[Role]>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.config.ttl_for(value))
    }
}

/// The role cache. Share it as `Arc<RoleCache>`; every method takes `&self`.
pub struct RoleCache {
    l1: moka::future::Cache<L1Key, Arc<[Role]>>,
    l2: Option<Arc<dyn RoleStoreL2>>,
    source: Arc<dyn RoleSource>,
    config: RoleCacheConfig,
    stats: RoleCacheStats,
}

impl std::fmt::Debug for RoleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCache")
            .field("config", &self.config)
            .field("l2", &self.l2.is_some())
            .field("entries", &self.l1.entry_count())
            .finish()
    }
}

impl RoleCache {
    /// A cache over `source`, with an optional shared `l2`.
    ///
    /// Panics on a configuration that cannot work (no entries, zero TTL): that is a bug in the
    /// caller, not an operating condition.
    pub fn new(
        source: Arc<dyn RoleSource>,
        l2: Option<Arc<dyn RoleStoreL2>>,
        config: RoleCacheConfig,
    ) -> RoleCache {
        assert!(config.max_entries > 0, "role cache needs room for at least one entry");
        assert!(!config.ttl.is_zero(), "role cache TTL must be positive");
        let l1 = moka::future::Cache::builder()
            .name("roles")
            .max_capacity(config.max_entries)
            .expire_after(RoleExpiry { config })
            .build();
        RoleCache { l1, l2, source, config, stats: RoleCacheStats::default() }
    }

    /// The user's roles in the game: from L1, else L2, else the source (one call per key however
    /// many requests wait for it). An empty list means "no role there" and is cached briefly.
    pub async fn roles(&self, user: u64, game: GameIndex) -> Result<Arc<[Role]>, GatewayError> {
        let l1_key = (user, game.0);
        if let Some(hit) = self.l1.get(&l1_key).await {
            bump(&self.stats.hits_l1);
            return Ok(hit);
        }
        let loaded_here = AtomicBool::new(false);
        let result = self
            .l1
            .try_get_with(l1_key, async {
                loaded_here.store(true, Ordering::Relaxed);
                self.load(RoleKey { user, game }).await
            })
            .await;
        if !loaded_here.load(Ordering::Relaxed) {
            bump(&self.stats.coalesced);
        }
        result.map_err(|shared| GatewayError::clone(&shared))
    }

    /// Asks the source now, bypassing the caches, and stores the answer in both levels. For the
    /// claim path when a role the user names is not in the cached list (created on another node,
    /// or since the last look-up).
    pub async fn refresh(&self, user: u64, game: GameIndex) -> Result<Arc<[Role]>, GatewayError> {
        let key = RoleKey { user, game };
        let roles = self.fetch_and_store_l2(key).await?;
        self.l1.insert((user, game.0), roles.clone()).await;
        Ok(roles)
    }

    /// Forgets the user's roles in the game in L2 and L1, so the next look-up asks the game side
    /// (a role was just created). L2 goes first: the other order lets a concurrent look-up copy
    /// the stale L2 entry back into L1. A load already in flight may still store the answer it
    /// got before the change; [`RoleCache::refresh`] is the way to a guaranteed-fresh list.
    pub async fn invalidate(&self, user: u64, game: GameIndex) -> Result<(), GatewayError> {
        if let Some(l2) = &self.l2 {
            l2.remove(RoleKey { user, game })
                .await
                .inspect_err(|_| bump(&self.stats.store_errors))?;
        }
        self.l1.invalidate(&(user, game.0)).await;
        Ok(())
    }

    pub fn stats(&self) -> &RoleCacheStats {
        &self.stats
    }

    pub fn config(&self) -> RoleCacheConfig {
        self.config
    }

    /// L1 entries (approximate until [`RoleCache::run_pending_tasks`]; moka applies evictions
    /// in batches).
    pub fn entry_count(&self) -> u64 {
        self.l1.entry_count()
    }

    /// Applies L1's pending evictions and expirations now (tests and metrics snapshots).
    pub async fn run_pending_tasks(&self) {
        self.l1.run_pending_tasks().await;
    }

    /// L1 missed: L2, then the source.
    async fn load(&self, key: RoleKey) -> Result<Arc<[Role]>, GatewayError> {
        if let Some(l2) = &self.l2 {
            match l2.get(key).await {
                Ok(Some(roles)) => {
                    bump(&self.stats.hits_l2);
                    return Ok(roles);
                }
                Ok(None) => {}
                Err(e) => {
                    bump(&self.stats.store_errors);
                    tracing::warn!(error = %e, "role store read failed; asking the game side");
                }
            }
        }
        self.fetch_and_store_l2(key).await
    }

    async fn fetch_and_store_l2(&self, key: RoleKey) -> Result<Arc<[Role]>, GatewayError> {
        bump(&self.stats.misses);
        let roles: Arc<[Role]> = self
            .source
            .fetch_roles(key.user, key.game)
            .await
            .inspect_err(|_| bump(&self.stats.upstream_errors))?
            .into();
        if let Some(l2) = &self.l2
            && let Err(e) = l2.put(key, roles.clone(), self.config.ttl_for(&roles)).await
        {
            bump(&self.stats.store_errors);
            tracing::warn!(error = %e, "role store write failed");
        }
        Ok(roles)
    }
}
