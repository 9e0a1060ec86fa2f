//! The same claim and delivery-queue suite against every adapter (DESIGN.md §3).

mod common;

use std::sync::Arc;

use common::claims;
use hongbao_store::{EmbeddedConfig, EmbeddedStore, MemoryStore};
use tempfile::TempDir;

/// A fresh embedded store in its own directory; the directory outlives the store.
struct Embedded {
    store: EmbeddedStore,
    _dir: TempDir,
}

fn embedded() -> Embedded {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedConfig::default(), claims::binding())
        .expect("open store");
    Embedded { store, _dir: dir }
}

macro_rules! suite {
    ($adapter:ident, $make:expr, $store:ident => $get:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claims_take_exactly_the_stock() {
                let $store = $make;
                claims::concurrent_claims_take_exactly_the_stock(Arc::new($get)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn high_value_daily_limit_holds_under_concurrency() {
                let $store = $make;
                claims::high_value_daily_limit_holds_under_concurrency(Arc::new($get)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn high_value_budget_holds_under_concurrency() {
                let $store = $make;
                claims::high_value_budget_holds_under_concurrency(Arc::new($get)).await;
            }

            #[tokio::test]
            async fn replays_limits_and_idempotency() {
                let $store = $make;
                claims::replays_limits_and_idempotency($get).await;
            }

            #[tokio::test]
            async fn rejections_change_nothing() {
                let $store = $make;
                claims::rejections_change_nothing($get).await;
            }

            #[tokio::test]
            async fn queue_leases_end_exactly_once() {
                let $store = $make;
                claims::queue_leases_end_exactly_once($get).await;
            }

            #[tokio::test]
            async fn requeue_is_idempotent() {
                let $store = $make;
                claims::requeue_is_idempotent($get).await;
            }

            #[tokio::test]
            async fn record_delivered_is_idempotent() {
                let $store = $make;
                claims::record_delivered_is_idempotent($get).await;
            }

            #[tokio::test]
            async fn reads_and_scans() {
                let $store = $make;
                claims::reads_and_scans($get).await;
            }
        }
    };
}

suite!(memory, MemoryStore::with_campaign(claims::binding()), store => store);
suite!(embedded, embedded(), fixture => fixture.store);

/// A queued order whose entry vanished (deleted by hand) is repaired by a requeue.
#[tokio::test]
async fn memory_requeue_repairs_a_missing_entry() {
    use hongbao_store::{ClaimLedger, LedgerRepair, LedgerScan, RequeueOutcome};
    let store = MemoryStore::with_campaign(claims::binding());
    let order = claims::accept(&store, claims::claim_req(1, 1, claims::A, 5, 1, claims::NOW)).await;
    assert!(store.remove_queue_entry_by_hand(&order));
    assert!(!store.in_queue(&order).await.expect("read"));
    assert!(matches!(
        store.requeue(&order.id, claims::NOW + 1, claims::NOW + 9).await,
        Ok(RequeueOutcome::Repaired(_))
    ));
    assert!(store.in_queue(&order).await.expect("read"));
    assert_eq!(store.order(&order.id).await.expect("read"), Some(order.clone()));
    assert!(matches!(
        store.requeue(&order.id, claims::NOW + 2, claims::NOW + 9).await,
        Ok(RequeueOutcome::Unchanged(_))
    ));
}
