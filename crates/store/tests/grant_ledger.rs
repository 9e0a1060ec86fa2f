//! The same behavioural suite against every `GrantLedger` adapter (DESIGN.md §3).

mod common;

use std::sync::Arc;

use hongbao_store::{EmbeddedConfig, EmbeddedStore, MemoryStore};
use tempfile::TempDir;

/// A fresh embedded store in its own directory; the directory outlives the store (fields drop
/// in order).
struct Embedded {
    store: EmbeddedStore,
    _dir: TempDir,
}

fn embedded() -> Embedded {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open store");
    Embedded { store, _dir: dir }
}

macro_rules! suite {
    ($adapter:ident, $make:expr, $store:ident => $get:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn serials_count_per_user_and_stop_at_the_limit() {
                let $store = $make;
                common::serials_count_per_user_and_stop_at_the_limit($get).await;
            }

            #[tokio::test]
            async fn budgets_are_per_channel_and_checked_first() {
                let $store = $make;
                common::budgets_are_per_channel_and_checked_first($get).await;
            }

            #[tokio::test]
            async fn zero_limits_grant_nothing() {
                let $store = $make;
                common::zero_limits_grant_nothing($get).await;
            }

            #[tokio::test]
            async fn extreme_user_ids_are_distinct() {
                let $store = $make;
                common::extreme_user_ids_are_distinct($get).await;
            }

            /// Few users: the per-user caps bind (10 users × 3 channels × 3 = 90 < 500).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_grabs_per_user_caps_bind() {
                let $store = $make;
                let total = common::concurrent_grabs_hold_limits_and_budgets_exactly(
                    Arc::new($get),
                    10,
                    30,
                )
                .await;
                assert_eq!(total, 90);
            }

            /// Many users: the budgets bind (500 per channel).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_grabs_budgets_bind() {
                let $store = $make;
                let total = common::concurrent_grabs_hold_limits_and_budgets_exactly(
                    Arc::new($get),
                    400,
                    40,
                )
                .await;
                assert_eq!(total, 1_500);
            }
        }
    };
}

suite!(memory, MemoryStore::new(), store => store);
// Moving the store out leaves the directory in the fixture until the test ends.
suite!(embedded, embedded(), fixture => fixture.store);
