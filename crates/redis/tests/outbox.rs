//! The should-send set and `settle.lua` (the distributed queue's Redis side): reading and
//! marking unpublished orders, and recording an outcome conditionally and idempotently.

mod common;

use common::{NOW_MS, claim_req, connect, namespace, redis_answers};
use hongbao_domain::{Channel, OrderEvent, OrderStatus};
use hongbao_redis::{MessageOf, Settled};
use hongbao_store::{ClaimLedger, ClaimOutcome};

#[tokio::test]
async fn unpublished_orders_are_listed_oldest_first_until_marked() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let ledger = connect(&ns).await;
    let mut ids = Vec::new();
    for (user, at) in [(1, NOW_MS + 20), (2, NOW_MS), (3, NOW_MS + 10)] {
        let outcome = ledger.claim(claim_req(user, Channel::Swipe, 1, 0, 10, 1, at)).await.unwrap();
        let ClaimOutcome::Accepted(order) = outcome else { panic!("{outcome:?}") };
        ids.push(order.id);
    }
    let listed = ledger.unpublished(0, NOW_MS + 10, 10).await.unwrap();
    let listed: Vec<_> = listed.iter().map(|o| o.id).collect();
    assert_eq!(listed, [ids[1], ids[2]], "recorded by then, oldest first");
    assert_eq!(ledger.unpublished(0, NOW_MS + 100, 1).await.unwrap().len(), 1, "bounded");

    ledger.mark_published(0, &[ids[1].as_str(), ids[2].as_str()]).await.unwrap();
    ledger.mark_published(0, &[ids[1].as_str()]).await.unwrap();
    assert_eq!(ledger.unpublished_count().await.unwrap(), 1);
    let left = ledger.unpublished(0, NOW_MS + 100, 10).await.unwrap();
    assert_eq!(left.iter().map(|o| o.id).collect::<Vec<_>>(), [ids[0]]);
}

#[tokio::test]
async fn settle_writes_over_the_leased_state_once_and_logs_a_delivery_once() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let ledger = connect(&ns).await;
    let outcome = ledger.claim(claim_req(1, Channel::Swipe, 1, 0, 10, 1, NOW_MS)).await.unwrap();
    let ClaimOutcome::Accepted(order) = outcome else { panic!("{outcome:?}") };
    let leased = ledger.stored_orders(0, &[order.id.as_str().to_string()]).await.unwrap()[0]
        .clone()
        .expect("stored");
    assert_eq!(leased.order, *order);
    ledger.mark_published_at(0, &[(order.id.as_str(), 7)]).await.unwrap();
    assert_eq!(ledger.message_of(&order).await.unwrap(), MessageOf::Published { sequence: 7 });

    let delivering = leased.order.apply(&OrderEvent::StartDelivery, NOW_MS + 5).unwrap();
    let delivered = delivering.apply(&OrderEvent::Delivered, NOW_MS + 5).unwrap();
    assert_eq!(ledger.settle(&leased, &delivered).await.unwrap(), Settled::Written);
    assert_eq!(ledger.settle(&leased, &delivered).await.unwrap(), Settled::AlreadyWritten);
    let expired = delivering.apply(&OrderEvent::Expire, NOW_MS + 6).unwrap();
    assert_eq!(
        ledger.settle(&leased, &expired).await.unwrap(),
        Settled::Stale,
        "not over another outcome"
    );

    let stored = ledger.order(&order.id).await.unwrap().expect("stored");
    assert_eq!(stored.status, OrderStatus::Delivered);
    // A final order's message is no longer looked for: where the stream held it is forgotten.
    assert_eq!(ledger.message_of(&stored).await.unwrap(), MessageOf::Unknown);
    assert_eq!(ledger.sent(10).await.unwrap(), [(order.id.as_str().to_string(), NOW_MS + 5)]);
    assert!(ledger.stored_orders(0, &["0".repeat(32)]).await.unwrap()[0].is_none());
}
