//! Reconciliation's reads on Redis (`scan.rs`): orders and the send log in id order in bounded
//! pages, the order index rebuilt for orders recorded before it, and ids whose order was
//! deleted by hand.

mod common;

use common::{NOW_MS, claim_req, connect, namespace, redis_answers};
use hongbao_domain::{Channel, OrderEvent, OrderId};
use hongbao_redis::Settled;
use hongbao_store::{ClaimLedger, ClaimOutcome, SentRecord};

#[tokio::test]
async fn orders_and_sends_come_in_id_order_in_pages_and_the_index_is_rebuilt() {
    if !redis_answers() {
        return;
    }
    let (ns, _cleanup) = namespace();
    let ledger = connect(&ns).await;
    let mut orders = Vec::new();
    for user in 1..=7 {
        let req = claim_req(user, Channel::Swipe, 1, 0, 100, 1, NOW_MS + user);
        let ClaimOutcome::Accepted(order) = ledger.claim(req).await.unwrap() else { panic!() };
        orders.push(*order);
    }
    // Three delivered, at times out of id order.
    for (i, order) in orders.iter().enumerate().take(3) {
        let read = ledger.stored_order(&order.id).await.unwrap().expect("stored");
        let at = NOW_MS + 100 - i as u64;
        let delivered = order
            .apply(&OrderEvent::StartDelivery, at)
            .and_then(|o| o.apply(&OrderEvent::Delivered, at))
            .unwrap();
        assert_eq!(ledger.settle(&read, &delivered).await.unwrap(), Settled::Written);
    }
    // As if recorded before the index existed.
    let client = redis::Client::open(common::REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let index = format!("{ns}:{{spring}}:order_ids");
    redis::cmd("DEL").arg(&index).query_async::<u64>(&mut conn).await.unwrap();
    assert_eq!(ledger.index_orders().await.unwrap(), 7);
    assert_eq!(ledger.index_orders().await.unwrap(), 0, "nothing to add the second time");

    let mut ids: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
    ids.sort();
    let (mut after, mut scanned) = (None, Vec::new());
    loop {
        let page = ledger.scan_orders(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        scanned.extend(page.iter().map(|o| o.id));
    }
    assert_eq!(scanned, ids);

    let mut sent: Vec<SentRecord> = orders[..3]
        .iter()
        .enumerate()
        .map(|(i, o)| SentRecord { order_id: o.id, delivered_at_ms: NOW_MS + 100 - i as u64 })
        .collect();
    sent.sort();
    let (mut after, mut rows) = (None, Vec::new());
    loop {
        let page = ledger.scan_sent(after, 1).await.unwrap();
        let Some(last) = page.last().copied() else { break };
        after = Some(last);
        rows.extend(page);
    }
    assert_eq!(rows, sent, "(order id, time) order, one row per page");
    let first = SentRecord { order_id: sent[1].order_id, delivered_at_ms: 0 };
    assert_eq!(ledger.scan_sent(Some(first), 1).await.unwrap(), [sent[1]], "its own row next");

    // An order deleted by hand: no longer scanned, its send-log row still found.
    let gone = sent[0].order_id;
    let orders_key = format!("{ns}:{{spring}}:orders");
    redis::cmd("HDEL")
        .arg(&orders_key)
        .arg(gone.as_str())
        .query_async::<u64>(&mut conn)
        .await
        .unwrap();
    let all = ledger.scan_orders(None, 10).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|o| o.id != gone));
    assert_eq!(ledger.scan_sent(None, 10).await.unwrap(), sent);
}
