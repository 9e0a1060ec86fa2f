//! Embedded-adapter specifics: durability across reopen, group commit, configuration.

mod common;

use std::sync::Arc;

use common::{grant_ok, req};
use hongbao_store::{
    Channel, CommitLinger, EmbeddedConfig, EmbeddedStore, GrantLedger, GrantOutcome, RuntimeIdle,
    StoreError,
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
        EmbeddedConfig { queue_max: 0, batch_max: 8, ..EmbeddedConfig::default() },
        EmbeddedConfig { queue_max: 8, batch_max: 0, ..EmbeddedConfig::default() },
        EmbeddedConfig { queue_max: usize::MAX, batch_max: 8, ..EmbeddedConfig::default() },
        EmbeddedConfig { queue_max: 8, batch_max: usize::MAX, ..EmbeddedConfig::default() },
    ] {
        let opened = EmbeddedStore::open(dir.path(), config.clone());
        assert!(matches!(opened, Err(StoreError::InvalidConfig(_))), "{config:?}: {opened:?}");
    }
}

/// A batch of one is allowed (no grouping) and still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_max_one_is_exact_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedConfig { queue_max: 4, batch_max: 1, ..EmbeddedConfig::default() },
    )
    .expect("open store");
    let store = Arc::new(store);
    let total =
        common::concurrent_grabs_hold_limits_and_budgets_exactly(Arc::clone(&store), 10, 12).await;
    assert!(total > 0);
    assert_eq!(store.stats().batch_len_max, 1);
}

fn lingering(max: std::time::Duration) -> (EmbeddedConfig, Arc<RuntimeIdle>) {
    let idle = Arc::new(RuntimeIdle::default());
    let linger = Some(CommitLinger { max, idle: idle.clone() });
    (EmbeddedConfig { linger, ..EmbeddedConfig::default() }, idle)
}

/// While no runtime worker is idle, the writer waits: grants sent meanwhile join the first
/// one's batch, committed (once) when a worker parks.
#[tokio::test(flavor = "current_thread")]
async fn a_lingering_writer_batches_what_a_busy_runtime_sends_until_it_parks() {
    let dir = tempfile::tempdir().expect("temp dir");
    // An hour: only the park can end this wait.
    let (config, idle) = lingering(std::time::Duration::from_secs(3600));
    let store = Arc::new(EmbeddedStore::open(dir.path(), config).expect("open"));
    let before = store.stats();
    let grants: Vec<_> = (0..5)
        .map(|user| {
            let store = store.clone();
            tokio::spawn(async move { grant_ok(&store, req(user, Channel::Swipe, 1, 100)).await })
        })
        .collect();
    // Each task sends its command on its first poll (the queue has room), then awaits.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // This test's runtime has no park hook: the park is reported by hand, after all five sent.
    idle.parked();
    for grant in grants {
        assert_eq!(grant.await.expect("grant task"), GrantOutcome::Granted { serial: 1 });
    }
    let after = store.stats();
    assert_eq!(after.commands - before.commands, 5);
    assert_eq!(after.batches - before.batches, 1, "five grants, one batch");
    assert_eq!(after.fsyncs - before.fsyncs, 1);
    let timed = |s: &hongbao_store::EmbeddedStats| s.synced_commits_by_ms.iter().sum::<u64>();
    assert_eq!(timed(&after) - timed(&before), 1, "the one commit is timed once");
}

/// A runtime that never goes idle delays a commit by the linger at most.
#[tokio::test(flavor = "current_thread")]
async fn a_lingering_writer_commits_at_its_deadline_when_the_runtime_stays_busy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, _idle) = lingering(std::time::Duration::from_millis(20));
    let store = EmbeddedStore::open(dir.path(), config).expect("open");
    for user in 0..3 {
        grant_ok(&store, req(user, Channel::Scan, 1, 10)).await;
    }
    assert_eq!(store.granted(Channel::Scan), 3);
}
