//! Game leases in a real Redis, against the same contract as the in-memory leases: one holder
//! at a time, renewal, release by the holder only, expiry, and one winner of a race.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{REDIS_URL, namespace, redis_answers};
use hongbao_clock::SystemClock;
use hongbao_domain::GameIndex;
use hongbao_queue::{GameLeases, Held, MemoryGameLeases};
use hongbao_redis::RedisGameLeases;

const G: GameIndex = GameIndex(4);
const LONG_MS: u64 = 60_000;

async fn redis_leases(namespace: &str) -> RedisGameLeases {
    let conn = hongbao_redis::connect(REDIS_URL).await.expect("connect");
    RedisGameLeases::new(conn, namespace, "spring").expect("leases")
}

/// What every [`GameLeases`] must do, without waiting for an expiry.
async fn contract(leases: &dyn GameLeases) {
    assert_eq!(leases.hold(G, "a", LONG_MS).await, Ok(Held::Acquired));
    assert_eq!(leases.hold(G, "b", LONG_MS).await, Ok(Held::Elsewhere));
    assert_eq!(leases.hold(G, "a", LONG_MS).await, Ok(Held::Renewed));
    // Another game is separate.
    assert_eq!(leases.hold(GameIndex(5), "b", LONG_MS).await, Ok(Held::Acquired));
    // Only the holder's release counts.
    leases.release(G, "b").await.expect("release");
    assert_eq!(leases.hold(G, "b", LONG_MS).await, Ok(Held::Elsewhere));
    leases.release(G, "a").await.expect("release");
    assert_eq!(leases.hold(G, "b", LONG_MS).await, Ok(Held::Acquired));
    // `a` held it before, but `b` did since: acquired, not renewed.
    leases.release(G, "b").await.expect("release");
    assert_eq!(leases.hold(G, "a", LONG_MS).await, Ok(Held::Acquired));
}

#[tokio::test]
async fn memory_leases_keep_the_contract() {
    contract(&MemoryGameLeases::new(SystemClock::shared())).await;
}

#[tokio::test]
async fn redis_leases_keep_the_contract() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    contract(&redis_leases(&ns).await).await;
}

#[tokio::test]
async fn a_lease_not_renewed_expires_and_another_takes_it() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let leases = redis_leases(&ns).await;
    assert_eq!(leases.hold(G, "a", 100).await, Ok(Held::Acquired));
    // Waits for Redis's expiry (bounded: a lease that never expires fails the test).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match leases.hold(G, "b", LONG_MS).await.unwrap() {
            Held::Acquired => break,
            Held::Elsewhere => {
                assert!(tokio::time::Instant::now() < deadline, "the lease never expired");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Held::Renewed => panic!("b never held it"),
        }
    }
    assert_eq!(leases.hold(G, "a", LONG_MS).await, Ok(Held::Elsewhere));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_racing_workers_one_takes_the_game() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let leases = Arc::new(redis_leases(&ns).await);
    let mut racers = tokio::task::JoinSet::new();
    for n in 0..16 {
        let leases = leases.clone();
        racers.spawn(async move { leases.hold(G, &format!("w{n}"), LONG_MS).await.unwrap() });
    }
    let answers = racers.join_all().await;
    assert_eq!(answers.iter().filter(|a| **a == Held::Acquired).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| **a == Held::Elsewhere).count(), 15);
}

#[tokio::test]
async fn a_holder_name_out_of_bounds_is_refused() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let leases = redis_leases(&ns).await;
    assert!(leases.hold(G, "", LONG_MS).await.is_err());
    let long = "h".repeat(hongbao_redis::HOLDER_BYTES_MAX + 1);
    assert!(leases.hold(G, &long, LONG_MS).await.is_err());
}
