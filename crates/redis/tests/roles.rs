//! The role cache's shared second level in a real Redis: the store's contract, and two nodes'
//! caches over one Redis asking the slow game side once between them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{REDIS_URL, namespace, redis_answers};
use hongbao_domain::{GameIndex, Role, RoleId, ZoneId};
use hongbao_gateway::{
    MemoryRoleSource, RoleCache, RoleCacheConfig, RoleKey, RoleSource, RoleStoreL2,
};
use hongbao_redis::RedisRoleStore;

const KEY: RoleKey = RoleKey { user: 10_042, game: GameIndex(3) };

fn role(n: u64) -> Role {
    Role { zone_id: ZoneId(1), region: "north".to_string(), role_id: RoleId(n), level: 30 }
}

async fn store(namespace: &str) -> RedisRoleStore {
    let conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    RedisRoleStore::new(conn, namespace, "spring").expect("a store")
}

async fn pttl_ms(namespace: &str) -> i64 {
    let mut conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    let key = format!("{namespace}:spring:roles:{}:{}", KEY.user, KEY.game.0);
    redis::cmd("PTTL").arg(key).query_async(&mut conn).await.expect("PTTL")
}

#[tokio::test]
async fn put_get_remove_with_the_callers_ttl() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let store = store(&ns).await;
    assert_eq!(store.get(KEY).await.unwrap(), None);

    let roles: Arc<[Role]> = vec![role(1), role(2)].into();
    store.put(KEY, roles.clone(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(store.get(KEY).await.unwrap().as_deref(), Some(&*roles));
    let ttl = pttl_ms(&ns).await;
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // "No role here" is an entry of its own, with its own (shorter) TTL.
    store.put(KEY, Vec::new().into(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(store.get(KEY).await.unwrap().as_deref(), Some(&[][..]));
    let ttl = pttl_ms(&ns).await;
    assert!(ttl > 0 && ttl <= 5_000, "{ttl}");

    store.remove(KEY).await.unwrap();
    assert_eq!(store.get(KEY).await.unwrap(), None);
    // A TTL under a millisecond stores nothing (Redis refuses PX 0).
    store.put(KEY, roles, Duration::from_micros(10)).await.unwrap();
    assert_eq!(store.get(KEY).await.unwrap(), None);
}

#[tokio::test]
async fn an_undecodable_entry_is_a_miss_not_an_error() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let store = store(&ns).await;
    let mut conn = hongbao_redis::connect(REDIS_URL).await.unwrap();
    let key = format!("{ns}:spring:roles:{}:{}", KEY.user, KEY.game.0);
    redis::cmd("SET").arg(&key).arg("not json").query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(store.get(KEY).await.unwrap(), None);
}

#[tokio::test]
async fn two_nodes_share_what_one_learned_from_the_game_side() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let source = Arc::new(MemoryRoleSource::new());
    source.set_roles(KEY.user, KEY.game, vec![role(7)]);
    let config = RoleCacheConfig {
        max_entries: 1_000,
        ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(10),
    };
    let node = |store: RedisRoleStore| {
        let l2: Arc<dyn RoleStoreL2> = Arc::new(store);
        RoleCache::new(source.clone() as Arc<dyn RoleSource>, Some(l2), config)
    };
    let a = node(store(&ns).await);
    let b = node(store(&ns).await);

    assert_eq!(&*a.roles(KEY.user, KEY.game).await.unwrap(), &[role(7)]);
    assert_eq!(&*b.roles(KEY.user, KEY.game).await.unwrap(), &[role(7)]);
    assert_eq!(source.calls(), 1, "the second node read the first node's answer from Redis");
    assert_eq!(b.stats().snapshot().hits_l2, 1);

    // A user who created a role: node A invalidates, node B's next L1 miss sees the new list.
    source.set_roles(KEY.user, KEY.game, vec![role(7), role(8)]);
    a.invalidate(KEY.user, KEY.game).await.unwrap();
    let c = node(store(&ns).await);
    assert_eq!(&*c.roles(KEY.user, KEY.game).await.unwrap(), &[role(7), role(8)]);
    assert_eq!(source.calls(), 2);
}
