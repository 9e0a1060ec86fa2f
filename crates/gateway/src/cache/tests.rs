//! The cache's rules against the counting fake source and the in-memory L2.

use std::sync::Arc;
use std::time::Duration;

use hongbao_clock::ManualClock;
use hongbao_domain::{GameIndex, Role, RoleId, ZoneId};

use super::*;
use crate::memory::{MemoryRoleSource, MemoryRoleStore};

const USER: u64 = 10_001;
const GAME: GameIndex = GameIndex(3);
const KEY: RoleKey = RoleKey { user: USER, game: GAME };
/// Long enough that nothing expires during a test unless the test means it to.
const LONG: Duration = Duration::from_secs(3600);

fn role(role_id: u64) -> Role {
    Role { zone_id: ZoneId(2), region: "cn-south".to_string(), role_id: RoleId(role_id), level: 30 }
}

fn config() -> RoleCacheConfig {
    RoleCacheConfig { max_entries: 1_000, ttl: LONG, negative_ttl: LONG }
}

fn cache_over(source: &Arc<MemoryRoleSource>, l2: Option<&Arc<MemoryRoleStore>>) -> RoleCache {
    let l2 = l2.map(|s| s.clone() as Arc<dyn RoleStoreL2>);
    RoleCache::new(source.clone(), l2, config())
}

fn timeout() -> GatewayError {
    GatewayError::Timeout { game: "g".to_string(), timeout_ms: 300 }
}

#[tokio::test]
async fn a_second_lookup_is_an_l1_hit() {
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(USER, GAME, vec![role(1), role(2)]);
    let cache = cache_over(&source, None);

    let first = cache.roles(USER, GAME).await.unwrap();
    let second = cache.roles(USER, GAME).await.unwrap();
    assert_eq!(&*first, &[role(1), role(2)]);
    assert!(Arc::ptr_eq(&first, &second), "the cached list is shared, not copied");
    assert_eq!(source.calls(), 1);
    let counters = cache.stats().snapshot();
    assert_eq!((counters.misses, counters.hits_l1), (1, 1));
}

#[tokio::test]
async fn keys_are_per_user_and_game() {
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(USER, GAME, vec![role(1)]);
    let cache = cache_over(&source, None);

    assert_eq!(cache.roles(USER, GAME).await.unwrap().len(), 1);
    assert!(cache.roles(USER, GameIndex(4)).await.unwrap().is_empty());
    assert!(cache.roles(USER + 1, GAME).await.unwrap().is_empty());
    assert_eq!(source.calls(), 3);
}

#[tokio::test]
async fn no_role_is_cached_too() {
    let source = Arc::new(MemoryRoleSource::new());
    let cache = cache_over(&source, None);

    assert!(cache.roles(USER, GAME).await.unwrap().is_empty());
    assert!(cache.roles(USER, GAME).await.unwrap().is_empty());
    assert_eq!(source.calls(), 1);
    assert_eq!(cache.stats().snapshot().hits_l1, 1);
}

#[tokio::test]
async fn no_role_expires_sooner_than_a_role() {
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(USER, GAME, vec![role(1)]);
    let short = Duration::from_millis(20);
    let cache =
        RoleCache::new(source.clone(), None, RoleCacheConfig { negative_ttl: short, ..config() })
            .with_clock(clock.clone());

    cache.roles(USER, GAME).await.unwrap();
    cache.roles(USER + 1, GAME).await.unwrap(); // no role: the short TTL
    assert_eq!(source.calls(), 2);
    // Only ever waits longer than the short TTL; the long one cannot pass during the test.
    clock.advance_ms(millis(short * 5));
    cache.roles(USER, GAME).await.unwrap();
    cache.roles(USER + 1, GAME).await.unwrap();
    assert_eq!(source.calls(), 3, "only the negative entry was fetched again");
}

#[tokio::test]
async fn errors_are_not_cached() {
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(USER, GAME, vec![role(1)]);
    source.fail_next(timeout());
    let cache = cache_over(&source, None);

    assert_eq!(cache.roles(USER, GAME).await.unwrap_err(), timeout());
    assert_eq!(cache.entry_count(), 0);
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(1)]);
    assert_eq!(source.calls(), 2);
    let counters = cache.stats().snapshot();
    assert_eq!((counters.misses, counters.upstream_errors), (2, 1));
}

#[tokio::test]
async fn concurrent_misses_make_one_call() {
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(50)));
    source.set_roles(USER, GAME, vec![role(7)]);
    let cache = Arc::new(cache_over(&source, None));

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.roles(USER, GAME).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(&*task.await.unwrap().unwrap(), &[role(7)]);
    }
    assert_eq!(source.calls(), 1);
    let c = cache.stats().snapshot();
    assert_eq!(c.misses, 1);
    assert_eq!(c.hits_l1 + c.coalesced + c.misses, 200, "every call is counted once: {c:?}");
}

#[tokio::test]
async fn concurrent_misses_share_one_error_and_the_next_call_retries() {
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(50)));
    source.set_roles(USER, GAME, vec![role(7)]);
    source.fail_next(timeout());
    let cache = Arc::new(cache_over(&source, None));

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.roles(USER, GAME).await })
        })
        .collect();
    let mut errors = 0;
    for task in tasks {
        match task.await.unwrap() {
            Err(e) => {
                assert_eq!(e, timeout());
                errors += 1;
            }
            // A task scheduled after the failed load retried and succeeded: also fine.
            Ok(roles) => assert_eq!(&*roles, &[role(7)]),
        }
    }
    assert!(errors >= 1);
    assert!(source.calls() <= 2, "one failed load, at most one retry: {}", source.calls());
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(7)]);
}

#[tokio::test]
async fn an_l2_hit_avoids_the_source_and_fills_l1() {
    let source = Arc::new(MemoryRoleSource::new());
    let store = Arc::new(MemoryRoleStore::default());
    store.insert(KEY, vec![role(9)], LONG);
    let cache = cache_over(&source, Some(&store));

    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(9)]);
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(9)]);
    assert_eq!(source.calls(), 0);
    assert_eq!(store.gets(), 1, "the second look-up was answered by L1");
    let c = cache.stats().snapshot();
    assert_eq!((c.hits_l2, c.hits_l1, c.misses), (1, 1, 0));
}

#[tokio::test]
async fn a_source_answer_is_written_back_to_l2_with_its_ttl() {
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(USER, GAME, vec![role(1)]);
    let store = Arc::new(MemoryRoleStore::default());
    let negative_ttl = Duration::from_secs(10);
    let cache = RoleCache::new(
        source.clone(),
        Some(store.clone()),
        RoleCacheConfig { negative_ttl, ..config() },
    );

    cache.roles(USER, GAME).await.unwrap();
    cache.roles(USER + 1, GAME).await.unwrap();
    let (roles, ttl) = store.peek(KEY).unwrap();
    assert_eq!(&*roles, &[role(1)]);
    assert!(ttl > negative_ttl, "a role list keeps the long TTL");
    let (roles, ttl) = store.peek(RoleKey { user: USER + 1, game: GAME }).unwrap();
    assert!(roles.is_empty());
    assert!(ttl <= negative_ttl, "no role keeps the short TTL");

    // Another node (a fresh L1 over the same L2) needs no game-side call.
    let other = cache_over(&source, Some(&store));
    other.roles(USER, GAME).await.unwrap();
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn a_failing_l2_falls_through_to_the_source() {
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(USER, GAME, vec![role(1)]);
    let store = Arc::new(MemoryRoleStore::default());
    store.set_failing(true);
    let cache = cache_over(&source, Some(&store));

    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(1)]);
    assert_eq!(source.calls(), 1);
    assert_eq!(cache.stats().snapshot().store_errors, 2, "the read and the write-back");
}

#[tokio::test]
async fn invalidate_forces_a_refetch_from_both_levels() {
    let source = Arc::new(MemoryRoleSource::new());
    let store = Arc::new(MemoryRoleStore::default());
    let cache = cache_over(&source, Some(&store));

    assert!(cache.roles(USER, GAME).await.unwrap().is_empty());
    // The user creates a role; the cached "no role" hides it until invalidated.
    source.set_roles(USER, GAME, vec![role(5)]);
    assert!(cache.roles(USER, GAME).await.unwrap().is_empty());
    cache.invalidate(USER, GAME).await.unwrap();
    assert!(store.peek(KEY).is_none());
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(5)]);
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn refresh_bypasses_and_updates_the_caches() {
    let source = Arc::new(MemoryRoleSource::new());
    let store = Arc::new(MemoryRoleStore::default());
    let cache = cache_over(&source, Some(&store));

    assert!(cache.roles(USER, GAME).await.unwrap().is_empty());
    source.set_roles(USER, GAME, vec![role(5)]);
    assert_eq!(&*cache.refresh(USER, GAME).await.unwrap(), &[role(5)]);
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(5)]);
    assert_eq!(&*store.peek(KEY).unwrap().0, &[role(5)]);
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn l1_stays_within_its_bound() {
    let source = Arc::new(MemoryRoleSource::new());
    let max_entries = 16;
    let cache = RoleCache::new(source.clone(), None, RoleCacheConfig { max_entries, ..config() });

    for user in 0..500 {
        cache.roles(user, GAME).await.unwrap();
    }
    assert!(cache.entry_count() <= max_entries, "{} entries", cache.entry_count());
}

#[tokio::test]
async fn a_sharded_l1_stays_within_its_bound_too() {
    // Large enough for several shards, and not a multiple of their count.
    let source = Arc::new(MemoryRoleSource::new());
    let max_entries = 1_000;
    let cache = RoleCache::new(source.clone(), None, RoleCacheConfig { max_entries, ..config() });

    assert!(cache.l1.capacity() <= max_entries, "capacity {}", cache.l1.capacity());
    assert!(cache.l1.capacity() + 64 > max_entries, "capacity {}", cache.l1.capacity());
    for user in 0..10_000 {
        cache.roles(user, GAME).await.unwrap();
    }
    assert!(cache.entry_count() <= max_entries, "{} entries", cache.entry_count());
    assert!(cache.entry_count() > max_entries / 2, "{} entries", cache.entry_count());
}

#[tokio::test]
async fn an_expired_entry_is_reloaded_by_one_request() {
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(50)));
    source.set_roles(USER, GAME, vec![role(1)]);
    // Long enough that the waiters of one load, busy machine or not, get it before it expires.
    let ttl = Duration::from_millis(100);
    let cache = Arc::new(
        RoleCache::new(
            source.clone(),
            None,
            RoleCacheConfig { ttl, negative_ttl: ttl, ..config() },
        )
        .with_clock(clock.clone()),
    );

    cache.roles(USER, GAME).await.unwrap();
    clock.advance_ms(millis(ttl * 3));
    source.set_roles(USER, GAME, vec![role(2)]);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.roles(USER, GAME).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(&*task.await.unwrap().unwrap(), &[role(2)], "nobody is served the expired list");
    }
    assert_eq!(source.calls(), 2, "one load, one reload");
    assert_eq!(cache.entry_count(), 1);
    let c = cache.stats().snapshot();
    assert_eq!(c.misses, 2);
    assert_eq!(c.hits_l1 + c.coalesced + c.misses, 201, "every call is counted once: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_entry_is_reloaded_by_one_request_across_threads() {
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(30)));
    source.set_roles(USER, GAME, vec![role(1)]);
    let ttl = Duration::from_millis(100);
    let cache = Arc::new(
        RoleCache::new(
            source.clone(),
            None,
            RoleCacheConfig { ttl, negative_ttl: ttl, ..config() },
        )
        .with_clock(clock.clone()),
    );

    for round in 1..=5 {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.roles(USER, GAME).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(source.calls(), round, "one load per expiry");
        clock.advance_ms(millis(ttl * 2));
    }
}

#[tokio::test]
async fn a_failed_reload_of_an_expired_entry_is_shared_and_not_cached() {
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(50)));
    source.set_roles(USER, GAME, vec![role(1)]);
    let ttl = Duration::from_millis(100);
    let cache = Arc::new(
        RoleCache::new(
            source.clone(),
            None,
            RoleCacheConfig { ttl, negative_ttl: ttl, ..config() },
        )
        .with_clock(clock.clone()),
    );

    cache.roles(USER, GAME).await.unwrap();
    clock.advance_ms(millis(ttl * 2));
    source.fail_next(timeout());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.roles(USER, GAME).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), timeout(), "no stale list, one shared error");
    }
    assert_eq!(source.calls(), 2);
    assert_eq!(cache.entry_count(), 0, "neither the expired list nor the error stays");
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(1)]);
    assert_eq!(source.calls(), 3);
    let c = cache.stats().snapshot();
    assert_eq!((c.misses, c.upstream_errors, c.coalesced), (3, 1, 49), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_costs_one_call_per_wave_of_requests() {
    let clock = ManualClock::new(1_000_000);
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(30)));
    source.set_roles(USER, GAME, vec![role(1)]);
    let ttl = Duration::from_millis(100);
    let cache = Arc::new(
        RoleCache::new(
            source.clone(),
            None,
            RoleCacheConfig { ttl, negative_ttl: ttl, ..config() },
        )
        .with_clock(clock.clone()),
    );
    cache.roles(USER, GAME).await.unwrap();
    clock.advance_ms(millis(ttl * 2));

    // Requests keep arriving while every reload fails.
    for _ in 0..20 {
        source.fail_next(timeout());
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(500 * i)).await;
                cache.roles(USER, GAME).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_err(), "the expired list is never served");
    }
    // 100 ms of arrivals over 30 ms loads: a handful of loads, not one per request.
    let calls = source.calls() - 1;
    assert!((1..=8).contains(&calls), "{calls} loads for 200 requests");
}

#[tokio::test]
async fn a_cancelled_load_hands_over_to_a_waiting_request() {
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(50)));
    source.set_roles(USER, GAME, vec![role(7)]);
    let cache = Arc::new(cache_over(&source, None));

    let leader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.roles(USER, GAME).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiter = tokio::spawn({
        let cache = cache.clone();
        async move { cache.roles(USER, GAME).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort(); // the client went away mid-load
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(&*waiter.await.unwrap().unwrap(), &[role(7)]);
    assert_eq!(source.calls(), 2, "the waiter loaded in the cancelled request's place");
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(7)]);
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn invalidate_during_a_load_keeps_its_answer_out_of_l1() {
    let source = Arc::new(MemoryRoleSource::with_delay(Duration::from_millis(50)));
    let cache = Arc::new(cache_over(&source, None));

    let in_flight = tokio::spawn({
        let cache = cache.clone();
        async move { cache.roles(USER, GAME).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    cache.invalidate(USER, GAME).await.unwrap();
    // The fake answers from its state at the end of the delay: the in-flight load sees role 5.
    source.set_roles(USER, GAME, vec![role(5)]);
    assert_eq!(&*in_flight.await.unwrap().unwrap(), &[role(5)]);
    // Had the load stored its answer, this would be an L1 hit on role 5.
    source.set_roles(USER, GAME, vec![role(6)]);
    assert_eq!(&*cache.roles(USER, GAME).await.unwrap(), &[role(6)]);
    assert_eq!(source.calls(), 2);
}

#[test]
#[should_panic(expected = "at least one entry")]
fn a_cache_without_room_is_a_bug() {
    let source = Arc::new(MemoryRoleSource::new());
    RoleCache::new(source, None, RoleCacheConfig { max_entries: 0, ..config() });
}

#[test]
fn an_l1_slot_is_a_deadline_and_a_list() {
    // Every resident entry pays for the largest variant: keep the failure one from growing it.
    assert!(std::mem::size_of::<Slot>() <= 40, "{} bytes", std::mem::size_of::<Slot>());
}

#[test]
fn defaults_are_the_named_constants() {
    let c = RoleCacheConfig::default();
    assert_eq!(c.max_entries, ROLE_CACHE_ENTRIES_MAX_DEFAULT);
    assert_eq!(c.ttl, Duration::from_millis(ROLE_CACHE_TTL_MS_DEFAULT));
    assert_eq!(c.negative_ttl, Duration::from_millis(ROLE_CACHE_NEGATIVE_TTL_MS_DEFAULT));
    assert!(c.negative_ttl < c.ttl);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).expect("a short test duration")
}
