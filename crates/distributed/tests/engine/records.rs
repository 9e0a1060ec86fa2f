//! Damage to our own records, which no repair can answer (only an alert): a delivered order
//! without its send-log row, a send-log row without its order; and an expired order, listed,
//! and resent only when asked.

use std::collections::BTreeMap;

use hongbao_domain::{GameIndex, OrderStatus};
use hongbao_queue::FinalState;
use hongbao_reconcile::{Class, Options, Quiet, reconcile};
use hongbao_store::ClaimLedger;

use crate::backends::{Backend, queues_settle, settle};
use crate::{HOUR, NOW, claim, keyed, nonzero, read_jsonl};

fn options(dir: &std::path::Path, out: &str) -> Options {
    let mut o = Options::new(NOW, vec!["g1".into(), "g2".into()], 48 * HOUR);
    o.out = Some(dir.join(out));
    o.stuck_after_ms = HOUR;
    o.page_len = 2;
    o.from_ms = Some(NOW - 24 * HOUR);
    o
}

pub async fn damage_to_our_own_records_is_listed<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().expect("dir");
    let t = NOW - 3 * HOUR;
    let fine = claim(b, 1, 0, t).await;
    let rowless = claim(b, 2, 0, t).await;
    let orderless = claim(b, 3, 0, t).await;
    let expired = claim(b, 4, 1, t).await;
    let delivered = [fine.id, rowless.id, orderless.id];
    let done = FinalState::Delivered { duplicate: false };
    settle(b.queue(), GameIndex(0), &delivered, t + 10, |_| Some(done.clone())).await;
    settle(b.queue(), GameIndex(1), &[expired.id], t + 10, |_| Some(FinalState::Expired)).await;
    b.lose_sent_row(&rowless.id).await;
    b.lose_order(&orderless.id).await;
    queues_settle(b.queue(), &[0, 0]).await;

    let first = reconcile(b.store(), &options(dir.path(), "first")).await.expect("pass");
    let expected: BTreeMap<Class, u64> =
        [(Class::SendRowMissing, 1), (Class::SentWithoutOrder, 1), (Class::Expired, 1)].into();
    assert_eq!(nonzero(&first), expected, "{}", first.table());
    assert_eq!(first.quiet[&Quiet::Delivered], 1, "fine");
    assert_eq!((first.orders_scanned, first.sent_rows_scanned), (3, 2));
    assert_eq!(first.resend, 0, "nothing to resend unless asked");
    let rows = read_jsonl(&dir.path().join("first/anomalies.jsonl"));
    let mut want = vec![
        ("expired".to_string(), expired.id.to_string()),
        ("send_row_missing".to_string(), rowless.id.to_string()),
        ("sent_without_order".to_string(), orderless.id.to_string()),
    ];
    want.sort();
    assert_eq!(keyed(&rows, "class"), want);

    // Asked to: the expired order is resent with a new deadline and delivered once; the alerts
    // stay, since no repair writes our own records back.
    let mut apply = options(dir.path(), "apply");
    apply.include_expired = true;
    apply.apply = true;
    let applied = reconcile(b.store(), &apply).await.expect("apply");
    let tally = applied.applied.expect("tally");
    assert_eq!((tally.requeued, tally.errors), (1, 0), "{tally:?}");
    let resent = b.store().order(&expired.id).await.expect("read").expect("order");
    assert_eq!((resent.status, resent.deliver_by_ms), (OrderStatus::Queued, NOW + 48 * HOUR));
    settle(b.queue(), GameIndex(1), &[expired.id], NOW, |_| Some(done.clone())).await;
    queues_settle(b.queue(), &[0, 0]).await;

    let last = reconcile(b.store(), &options(dir.path(), "last")).await.expect("last pass");
    let left: BTreeMap<Class, u64> =
        [(Class::SendRowMissing, 1), (Class::SentWithoutOrder, 1)].into();
    assert_eq!(nonzero(&last), left, "{}", last.table());
    assert_eq!(last.quiet[&Quiet::Delivered], 2, "fine, and the expired one delivered");
}
