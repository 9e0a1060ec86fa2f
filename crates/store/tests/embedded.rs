//! Embedded-adapter specifics: durability across reopen, group commit, configuration.

mod common;

use std::sync::Arc;

use common::{grant_ok, req};
use hongbao_store::{
    Channel, EmbeddedConfig, EmbeddedStore, GrantLedger, GrantOutcome, StoreError,
};

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedConfig::default()).expect("open store")
}

#[tokio::test]
async fn reopen_continues_serials_and_budgets_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path());
        for serial in 1..=2 {
            assert_eq!(
                grant_ok(&store, req(7, Channel::Swipe, 3, 10)).await,
                GrantOutcome::Granted { serial }
            );
        }
        for user in 100..105 {
            grant_ok(&store, req(user, Channel::Scan, 1, 8)).await;
        }
        store.close().expect("clean close");
    }
    {
        // Closed by drop this time.
        let store = open(dir.path());
        assert_eq!(store.granted(Channel::Swipe), 2);
        assert_eq!(store.granted(Channel::Scan), 5);
        assert_eq!(
            grant_ok(&store, req(7, Channel::Swipe, 3, 10)).await,
            GrantOutcome::Granted { serial: 3 },
            "the serial continues, never reused"
        );
        assert_eq!(
            grant_ok(&store, req(7, Channel::Swipe, 3, 10)).await,
            GrantOutcome::UserLimitReached
        );
        assert_eq!(
            grant_ok(&store, req(100, Channel::Scan, 1, 8)).await,
            GrantOutcome::UserLimitReached
        );
        for user in 200..203 {
            assert_eq!(
                grant_ok(&store, req(user, Channel::Scan, 1, 8)).await,
                GrantOutcome::Granted { serial: 1 }
            );
        }
        assert_eq!(
            grant_ok(&store, req(300, Channel::Scan, 1, 8)).await,
            GrantOutcome::BudgetExhausted
        );
    }
    let store = open(dir.path());
    assert_eq!(store.granted(Channel::Swipe), 3);
    assert_eq!(store.granted(Channel::Scan), 8);
    assert_eq!(store.granted(Channel::ArMap), 0);
    assert_eq!(
        grant_ok(&store, req(301, Channel::Scan, 1, 8)).await,
        GrantOutcome::BudgetExhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_storm_then_reopen_keeps_every_grant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(open(dir.path()));
    let total =
        common::concurrent_grabs_hold_limits_and_budgets_exactly(Arc::clone(&store), 400, 40).await;
    let store = Arc::into_inner(store).expect("tasks are done");
    store.close().expect("clean close");

    let store = open(dir.path());
    let reopened: u64 = Channel::ALL.into_iter().map(|c| store.granted(c)).sum();
    assert_eq!(reopened, total);
    assert_eq!(
        grant_ok(&store, req(9_999, Channel::ArMap, 3, 500)).await,
        GrantOutcome::BudgetExhausted
    );
}

/// Group commit really groups: far fewer fsyncs than grants under concurrency. Counts, no clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grants_share_fsyncs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut granted = 0u64;
            for attempt in 0..20 {
                let user = task * 1_000 + attempt;
                if let GrantOutcome::Granted { .. } =
                    grant_ok(&*store, req(user, Channel::Swipe, 1, u64::MAX)).await
                {
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut grants = 0;
    for task in tasks {
        grants += task.await.expect("task completes");
    }
    let stats = store.stats();
    assert_eq!(grants, 64 * 20);
    assert_eq!(stats.commands, grants);
    assert_eq!(stats.commit_failures, 0);
    assert!(stats.fsyncs < grants, "{stats:?} for {grants} grants");
    assert!(stats.batch_len_max > 1, "{stats:?}");
    assert_eq!(store.granted(Channel::Swipe), grants);
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _store = open(dir.path());
    let second = EmbeddedStore::open(dir.path(), EmbeddedConfig::default());
    assert!(matches!(second, Err(StoreError::Unavailable(_))), "{second:?}");
}

#[test]
fn zero_or_oversized_bounds_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for config in [
        EmbeddedConfig { queue_max: 0, batch_max: 8 },
        EmbeddedConfig { queue_max: 8, batch_max: 0 },
        EmbeddedConfig { queue_max: usize::MAX, batch_max: 8 },
        EmbeddedConfig { queue_max: 8, batch_max: usize::MAX },
    ] {
        let opened = EmbeddedStore::open(dir.path(), config);
        assert!(matches!(opened, Err(StoreError::InvalidConfig(_))), "{config:?}: {opened:?}");
    }
}

/// A batch of one is allowed (no grouping) and still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_max_one_is_exact_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig { queue_max: 4, batch_max: 1 })
        .expect("open store");
    let store = Arc::new(store);
    let total =
        common::concurrent_grabs_hold_limits_and_budgets_exactly(Arc::clone(&store), 10, 12).await;
    assert!(total > 0);
    assert_eq!(store.stats().batch_len_max, 1);
}
