//! The operator API's nonce store in a real Redis, as two nodes of a fleet share it.

mod common;

use common::{REDIS_URL, namespace, redis_answers};
use hongbao_auth::{NonceError, NonceStore};
use hongbao_redis::RedisNonceStore;

async fn store(namespace: &str) -> RedisNonceStore {
    let conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    RedisNonceStore::new(conn, namespace).expect("a store")
}

#[tokio::test]
async fn a_nonce_used_on_one_node_is_refused_on_another_until_it_expires() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let (node_a, node_b) = (store(&ns).await, store(&ns).await);
    let now = 1_800_000_000;
    node_a.remember("ops-1", "n-0001", now, now + 600).await.expect("first use");
    assert_eq!(
        node_b.remember("ops-1", "n-0001", now + 1, now + 601).await,
        Err(NonceError::Reused)
    );
    assert_eq!(
        node_a.remember("ops-1", "n-0001", now + 2, now + 602).await,
        Err(NonceError::Reused)
    );
    // Another key's nonce of the same text, and a key id that ends like another's nonce
    // begins, are different nonces.
    node_b.remember("ops-2", "n-0001", now, now + 600).await.expect("another key");
    node_b.remember("ops-1:n", "0001", now, now + 600).await.expect("no collision");

    let mut conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{ns}:nonce:5:ops-1:n-0001"))
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert!((590..=600).contains(&ttl), "kept as long as it must be remembered: {ttl}");
}
