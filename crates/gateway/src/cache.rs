//! The multi-level role cache: L1 in-process → L2 shared store (optional) → the game side.
//!
//! The game side's role query is slow (tens of milliseconds) and can absorb far less than the
//! list view's traffic, so every role look-up goes through here:
//! - L1 is a bounded `quick_cache` cache (sharded, CLOCK-Pro-like eviction, a read is one shard
//!   read lock) with a TTL, and a shorter TTL for "no role" answers (a new player may create one
//!   any moment). quick_cache has no expiry, so entries carry their deadline and an expired one
//!   is a miss.
//! - Single-flight: concurrent misses for one key share one load (quick_cache's placeholder
//!   guards), so a spike on a cold or just-expired key costs the game side one query, not
//!   thousands.
//! - Errors are never cached: the requests waiting on a failed load share its error, the next
//!   request tries again.
//! - L2 (Redis in the distributed mode, none embedded) is read before the game side and written
//!   after it, so the nodes of a cluster share one game-side query per key and TTL.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hongbao_clock::{SharedClock, SystemClock};

use hongbao_domain::{GameIndex, Role};

use crate::error::GatewayError;
use crate::idip::IdipClient;

/// A boxed, sendable future: keeps the ports below object-safe (`Arc<dyn …>`), so the app picks
/// the adapters at start-up and tests swap in fakes. One allocation per upstream call is noise
/// next to the network round trip it stands for.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Default bound on L1 entries. An entry (key, deadline, `Arc<[Role]>` with up to three roles,
/// quick_cache's own bookkeeping) takes roughly 200–300 bytes, so this is a few hundred MiB at the worst.
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
    /// Most entries L1 holds; quick_cache evicts beyond it (by its CLOCK-Pro-like policy). Rounded
    /// down to a multiple of L1's shard count (4 per core, so a few hundred at most).
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

/// L1 key: (user, game index). A tuple rather than [`RoleKey`] keeps the hashing trivial.
type L1Key = (u64, u8);

/// An L1 value. quick_cache has no expiry of its own, so each list carries its deadline and a
/// read past it is a miss.
#[derive(Clone)]
enum Slot {
    /// A role list, served until `expires_at_ms` (Unix ms: the positive or negative TTL after
    /// the load, on the cache's clock).
    Roles { expires_at_ms: u64, roles: Arc<[Role]> },
    /// A failed load, inserted through the single-flight guard only to hand the error to the
    /// requests waiting on it, and removed right after (errors are not cached). `seq` tells the
    /// requests that were already in flight when the load failed (they share the error) from
    /// later ones (they load again). Weighs nothing, so inserting it never evicts a list.
    /// The error sits behind an `Arc` to keep every slot (lists included) small.
    Failed { seq: u64, error: Arc<GatewayError> },
}

impl Slot {
    /// The answer this slot gives a request that entered the slow path when the failure counter
    /// stood at `started`, or `None` when the request must load: an expired list, or an error
    /// from a load that failed before the request arrived.
    fn answer(&self, started: u64, now_ms: u64) -> Option<Result<Arc<[Role]>, GatewayError>> {
        match self {
            Slot::Roles { expires_at_ms, roles } if *expires_at_ms > now_ms => {
                Some(Ok(roles.clone()))
            }
            Slot::Failed { seq, error } if *seq > started => Some(Err(GatewayError::clone(error))),
            Slot::Roles { .. } | Slot::Failed { .. } => None,
        }
    }
}

/// Lists weigh one entry each; failure slots nothing (see [`Slot::Failed`]).
#[derive(Clone, Copy, Debug)]
struct SlotWeighter;

impl quick_cache::Weighter<L1Key, Slot> for SlotWeighter {
    fn weight(&self, _key: &L1Key, slot: &Slot) -> u64 {
        match slot {
            Slot::Roles { .. } => 1,
            Slot::Failed { .. } => 0,
        }
    }
}

type L1Lifecycle = quick_cache::sync::DefaultLifecycle<L1Key, Slot>;
type L1 = quick_cache::sync::Cache<
    L1Key,
    Slot,
    SlotWeighter,
    quick_cache::DefaultHashBuilder,
    L1Lifecycle,
>;
/// The single-flight token: whoever holds it for a key loads it; the others wait for its
/// `insert`, and when it is dropped without one (the loading request was cancelled) the next
/// waiter gets it.
type L1Guard<'a> = quick_cache::sync::PlaceholderGuard<
    'a,
    L1Key,
    Slot,
    SlotWeighter,
    quick_cache::DefaultHashBuilder,
    L1Lifecycle,
>;

/// quick_cache splits its capacity evenly over its shards, rounding each share up. Choosing the
/// shard count here (as quick_cache would: 4 per core, at least 32 entries each) and rounding the
/// capacity down to a multiple of it keeps the total within `max_entries`.
fn l1_options(max_entries: u64) -> quick_cache::Options {
    const SHARD_ENTRIES_MIN: u64 = 32;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut shards = u64::try_from(cores.saturating_mul(4).next_power_of_two()).unwrap_or(1);
    while shards > 1 && max_entries / shards < SHARD_ENTRIES_MIN {
        shards /= 2;
    }
    let capacity = max_entries - max_entries % shards;
    quick_cache::OptionsBuilder::new()
        .shards(usize::try_from(shards).unwrap_or(1))
        .estimated_items_capacity(usize::try_from(capacity).unwrap_or(usize::MAX))
        .weight_capacity(capacity)
        .build()
        .expect("valid role cache options")
}

/// When an entry loaded at `now_ms` with `ttl` expires (a TTL past the end of time: never).
fn expiry(now_ms: u64, ttl: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// The role cache. Share it as `Arc<RoleCache>`; every method takes `&self`.
pub struct RoleCache {
    l1: L1,
    l2: Option<Arc<dyn RoleStoreL2>>,
    source: Arc<dyn RoleSource>,
    config: RoleCacheConfig,
    stats: RoleCacheStats,
    /// Failed loads so far; tags [`Slot::Failed`].
    failures: AtomicU64,
    /// Decides what has expired.
    clock: SharedClock,
}

impl std::fmt::Debug for RoleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCache")
            .field("config", &self.config)
            .field("l2", &self.l2.is_some())
            .field("entries", &self.l1.len())
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
        let l1 = L1::with_options(
            l1_options(config.max_entries),
            SlotWeighter,
            quick_cache::DefaultHashBuilder::default(),
            L1Lifecycle::default(),
        );
        RoleCache {
            l1,
            l2,
            source,
            config,
            stats: RoleCacheStats::default(),
            failures: AtomicU64::new(0),
            clock: SystemClock::shared(),
        }
    }

    /// The same cache deciding expiry on `clock` (a manual clock in tests and simulations).
    pub fn with_clock(mut self, clock: SharedClock) -> RoleCache {
        self.clock = clock;
        self
    }

    /// The user's roles in the game: from L1, else L2, else the source (one call per key however
    /// many requests wait for it). An empty list means "no role there" and is cached briefly.
    pub async fn roles(&self, user: u64, game: GameIndex) -> Result<Arc<[Role]>, GatewayError> {
        let l1_key = (user, game.0);
        // The hot path: one shard read lock, no write.
        if let Some(Slot::Roles { expires_at_ms, roles }) = self.l1.get(&l1_key)
            && expires_at_ms > self.clock.now_ms()
        {
            bump(&self.stats.hits_l1);
            return Ok(roles);
        }
        self.roles_slow(RoleKey { user, game }).await
    }

    /// L1 has no fresh list: wait for the load in flight, or become the one request that loads.
    async fn roles_slow(&self, key: RoleKey) -> Result<Arc<[Role]>, GatewayError> {
        use quick_cache::sync::{EntryAction, EntryResult};

        let l1_key = (key.user, key.game.0);
        // A load that fails after this point failed while this request was waiting for it.
        let started = self.failures.load(Ordering::Relaxed);
        loop {
            // Absent: take the guard, or wait for its holder and get its outcome (a failure
            // included: waiters read it from the guard's placeholder, not from L1).
            let slot = match self.l1.get_value_or_guard_async(&l1_key).await {
                Err(guard) => return self.load_into(guard, key).await,
                Ok(slot) => slot,
            };
            if let Some(answer) = slot.answer(started, self.clock.now_ms()) {
                bump(&self.stats.coalesced);
                return answer;
            }
            // An expired list (or a failure from before this request) sits in L1. Swap it for a
            // guard under the shard lock, so that one request reloads however many saw it, and
            // the key keeps its place in the eviction order. Zero timeout: the sync call only
            // takes the lock, and never waits inside, where a failure would already be gone
            // from L1 when it looked again.
            let now_ms = self.clock.now_ms();
            let entry = self.l1.entry(&l1_key, Some(Duration::ZERO), |_, slot| {
                match slot.answer(started, now_ms) {
                    Some(answer) => EntryAction::Retain(answer),
                    None => EntryAction::ReplaceWithGuard,
                }
            });
            match entry {
                EntryResult::Retained(answer) => {
                    bump(&self.stats.coalesced);
                    return answer;
                }
                EntryResult::Replaced(guard, _) | EntryResult::Vacant(guard) => {
                    return self.load_into(guard, key).await;
                }
                // Another request got there first and is reloading: wait for it above.
                EntryResult::Timeout => {}
                EntryResult::Removed(..) => unreachable!("the role cache never asks to remove"),
            }
        }
    }

    /// Loads `key` as the single-flight leader and hands the outcome to the waiters: a list is
    /// stored, an error is passed on and then dropped from L1.
    async fn load_into(
        &self,
        guard: L1Guard<'_>,
        key: RoleKey,
    ) -> Result<Arc<[Role]>, GatewayError> {
        match self.load(key).await {
            Ok(roles) => {
                let expires_at_ms = expiry(self.clock.now_ms(), self.config.ttl_for(&roles));
                // Refused only when the key was invalidated or refreshed meanwhile: the waiters
                // get this answer, L1 keeps the newer state.
                let _ = guard.insert(Slot::Roles { expires_at_ms, roles: roles.clone() });
                Ok(roles)
            }
            Err(error) => {
                // The waiters read the error from the guard's placeholder; then it leaves L1
                // (no await in between, so a cancelled request cannot leave it behind).
                let seq = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let _ = guard.insert(Slot::Failed { seq, error: Arc::new(error.clone()) });
                self.l1.remove_if(
                    &(key.user, key.game.0),
                    |slot| matches!(slot, Slot::Failed { seq: s, .. } if *s == seq),
                );
                Err(error)
            }
        }
    }

    /// Asks the source now, bypassing the caches, and stores the answer in both levels. For the
    /// claim path when a role the user names is not in the cached list (created on another node,
    /// or since the last look-up).
    pub async fn refresh(&self, user: u64, game: GameIndex) -> Result<Arc<[Role]>, GatewayError> {
        let key = RoleKey { user, game };
        let roles = self.fetch_and_store_l2(key).await?;
        let expires_at_ms = expiry(self.clock.now_ms(), self.config.ttl_for(&roles));
        self.l1.insert((user, game.0), Slot::Roles { expires_at_ms, roles: roles.clone() });
        Ok(roles)
    }

    /// Forgets the user's roles in the game in L2 and L1, so the next look-up asks the game side
    /// (a role was just created). L2 goes first: the other order lets a concurrent look-up copy
    /// the stale L2 entry back into L1. A load already in flight still answers the requests
    /// waiting on it with what it got before the change, but no longer stores it in L1;
    /// [`RoleCache::refresh`] is the way to a guaranteed-fresh list.
    pub async fn invalidate(&self, user: u64, game: GameIndex) -> Result<(), GatewayError> {
        if let Some(l2) = &self.l2 {
            l2.remove(RoleKey { user, game })
                .await
                .inspect_err(|_| bump(&self.stats.store_errors))?;
        }
        self.l1.remove(&(user, game.0));
        Ok(())
    }

    pub fn stats(&self) -> &RoleCacheStats {
        &self.stats
    }

    pub fn config(&self) -> RoleCacheConfig {
        self.config
    }

    /// L1 entries, exact (expired ones included until they are reloaded or evicted).
    pub fn entry_count(&self) -> u64 {
        u64::try_from(self.l1.len()).unwrap_or(u64::MAX)
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
