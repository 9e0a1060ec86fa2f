//! A whole pass over the in-memory store with hand-made facts: every class once, exact files,
//! repairs, and the pass after the repairs. Tiny pages and sort runs so every stream crosses
//! page and run boundaries.

use std::collections::BTreeMap;
use std::path::Path;

use hongbao_domain::{Channel, Coupon, GameIndex, GiftIndex, Order, OrderId, OrderStatus};
use hongbao_queue::{DeliveryQueue, FinalState, Finish};
use hongbao_reconcile::{
    Class, Options, Quiet, ReconcileError, Refusal, Summary, reconcile, requeue_list,
};
use hongbao_store::{
    CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest, LedgerScan, MemoryStore,
};
use serde_json::Value;

const CAMPAIGN: &str = "spring";
const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

fn binding() -> CampaignBinding {
    CampaignBinding::new(
        CAMPAIGN,
        vec!["g1".into(), "g2".into()],
        vec![("a".into(), GameIndex(0)), ("b".into(), GameIndex(1))],
    )
    .expect("binding")
}

async fn claim(store: &MemoryStore, user: u64, gift: u16, at: u64) -> Order {
    let req = ClaimRequest {
        coupon: Coupon {
            campaign_id: CAMPAIGN.into(),
            user,
            channel: Channel::Swipe,
            serial: 1,
            expires_at_unix_s: i64::MAX,
        },
        gift: GiftIndex(gift),
        zone_id: hongbao_domain::ZoneId(1),
        role_id: hongbao_domain::RoleId(user),
        stock: 1_000,
        per_user_limit: 10,
        now_ms: at,
        deliver_by_ms: at + 48 * HOUR,
        idempotency: None,
        high_value: None,
    };
    match store.claim(req).await.expect("claim") {
        ClaimOutcome::Accepted(order) => *order,
        other => panic!("{other:?}"),
    }
}

/// Leases everything due in `game` and ends each lease as `end` says (None: release).
async fn settle(
    store: &MemoryStore,
    game: u8,
    at: u64,
    end: impl Fn(&Order) -> Option<FinalState>,
) {
    for entry in store.lease(GameIndex(game), 1_000, at).await.expect("lease") {
        match end(&entry.lease.order) {
            Some(state) => {
                store.finish(entry, Finish { state, at_ms: at }).await.expect("finish");
            }
            None => {
                store.release(entry).await.expect("release");
            }
        }
    }
}

fn log_line(order: &Order, at: u64) -> String {
    format!(
        r#"{{"serial":"{}","game":"{}","user":{},"zone_id":1,"role_id":{},"items":[],"applied_at_ms":{at}}}"#,
        order.id, order.game_id, order.user, order.user
    )
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// (class or why, order id) of every row of a file.
fn keyed(rows: &[Value], key: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r[key].as_str().unwrap_or_default().to_string(),
                r["order_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn nonzero(summary: &Summary) -> BTreeMap<Class, u64> {
    summary.classes.iter().filter(|(_, n)| **n > 0).map(|(c, n)| (*c, *n)).collect()
}

struct World {
    store: MemoryStore,
    ok: Order,
    lost: Order,
    crashed: Order,
    deleted: Order,
    pending: Order,
    stuck: Order,
    dead: Order,
    dead_applied: Order,
    twice: Order,
    outside: Order,
    foreign: OrderId,
}

async fn world(dir: &Path) -> World {
    let store = MemoryStore::with_campaign(binding());
    let t = NOW - 3 * HOUR;
    let ok = claim(&store, 1, 0, t).await;
    let lost = claim(&store, 2, 0, t).await;
    let crashed = claim(&store, 3, 1, t).await;
    let deleted = claim(&store, 4, 1, t).await;
    let stuck = claim(&store, 6, 1, t).await;
    let dead = claim(&store, 7, 0, t).await;
    let dead_applied = claim(&store, 8, 0, t).await;
    let twice = claim(&store, 9, 0, t).await;
    let outside = claim(&store, 10, 0, NOW - 30 * HOUR).await;
    let delivered = [ok.id, lost.id, twice.id, outside.id];
    let dead_ids = [dead.id, dead_applied.id];
    for game in [0, 1] {
        settle(&store, game, t + 10, |o| {
            if delivered.contains(&o.id) {
                Some(FinalState::Delivered { duplicate: false })
            } else if dead_ids.contains(&o.id) {
                Some(FinalState::Dead { reason: "role gone".into() })
            } else {
                None
            }
        })
        .await;
    }
    let pending = claim(&store, 5, 1, NOW - 1_000).await;
    assert!(store.remove_queue_entry_by_hand(&deleted));
    let foreign = OrderId::derive(CAMPAIGN, 999, "swipe-9");

    // The game's log, in time order: everything delivered but `lost`, plus what the game has
    // and we do not (`crashed`, `dead_applied`), one serial twice, one that no order has, one
    // that is no order id at all, and a malformed line.
    let mut lines = vec![
        log_line(&outside, NOW - 30 * HOUR + 5),
        log_line(&ok, t + 9),
        log_line(&twice, t + 9),
        log_line(&crashed, t + 9),
        log_line(&dead_applied, t + 9),
        log_line(&twice, t + 11),
    ];
    lines.push(
        log_line(&ok, t + 12)
            .replace(ok.id.as_str(), foreign.as_str())
            .replace(r#""user":1"#, r#""user":999"#),
    );
    lines.push(
        r#"{"serial":"manual-gift-1","game":"g1","user":5,"applied_at_ms":1800000000000}"#.into(),
    );
    lines.push("{oops".into());
    std::fs::write(dir.join("game.log"), lines.join("\n") + "\n").expect("write log");
    World {
        store,
        ok,
        lost,
        crashed,
        deleted,
        pending,
        stuck,
        dead,
        dead_applied,
        twice,
        outside,
        foreign,
    }
}

fn options(dir: &Path, out: &str) -> Options {
    let mut o = Options::new(NOW, vec!["g1".into(), "g2".into()], 48 * HOUR);
    o.game_log = Some(dir.join("game.log"));
    o.out = Some(dir.join(out));
    o.temp_dir = Some(dir.to_path_buf());
    o.stuck_after_ms = HOUR;
    o.page_len = 2;
    o.sort_run_len = 2;
    o.from_ms = Some(NOW - 24 * HOUR);
    o
}

#[tokio::test]
async fn every_class_is_found_exactly_and_repairs_are_idempotent() {
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path()).await;

    let summary = reconcile(&w.store, &options(dir.path(), "first")).await.expect("pass");
    let expected: BTreeMap<Class, u64> = [
        (Class::NotSentNorQueued, 1),
        (Class::LostAtGame, 1),
        (Class::DeliveredUnrecorded, 2),
        (Class::AppliedTwice, 1),
        (Class::AppliedWithoutOrder, 2),
        (Class::Stuck, 1),
        (Class::Dead, 1),
        (Class::GameLogMalformed, 1),
    ]
    .into();
    assert_eq!(nonzero(&summary), expected, "{}", summary.table());
    assert_eq!(summary.quiet[&Quiet::Delivered], 1, "ok (twice has a finding)");
    assert_eq!(summary.quiet[&Quiet::Pending], 1);
    assert_eq!(summary.quiet[&Quiet::OutsideWindow], 1);
    assert_eq!((summary.resend, summary.record, summary.orders_scanned), (2, 2, 10));
    assert_eq!(summary.game_log.as_ref().map(|g| g.stats.runs), Some(4));
    assert!(!summary.clean);

    let out = dir.path().join("first");
    let resend = read_jsonl(&out.join("resend.jsonl"));
    let mut want = vec![
        ("lost_at_game".to_string(), w.lost.id.to_string()),
        ("not_sent_nor_queued".to_string(), w.deleted.id.to_string()),
    ];
    want.sort();
    assert_eq!(keyed(&resend, "why"), want);
    for row in &resend {
        for field in ["order_id", "user", "game", "gift", "zone", "role", "why"] {
            assert!(!row[field].is_null(), "{field} in {row}");
        }
    }
    let csv = std::fs::read_to_string(out.join("resend.csv")).expect("csv");
    assert!(csv.starts_with("order_id,user,game,gift,zone,role,why"));
    assert_eq!(csv.lines().count(), 3);
    let anomalies = read_jsonl(&out.join("anomalies.jsonl"));
    let mut want = vec![
        ("applied_twice".to_string(), w.twice.id.to_string()),
        ("applied_without_order".to_string(), w.foreign.to_string()),
        ("applied_without_order".to_string(), "manual-gift-1".to_string()),
        ("dead".to_string(), w.dead.id.to_string()),
        ("delivered_unrecorded".to_string(), w.crashed.id.to_string()),
        ("delivered_unrecorded".to_string(), w.dead_applied.id.to_string()),
        ("game_log_malformed".to_string(), String::new()),
        ("stuck".to_string(), w.stuck.id.to_string()),
    ];
    want.sort();
    assert_eq!(keyed(&anomalies, "class"), want);
    let summary_file: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary_file["resend"], 2);

    // Apply: resend two, record two.
    let mut apply = options(dir.path(), "apply");
    apply.apply = true;
    // A third of this world's deliveries is lost on purpose: above any sane default share.
    apply.guards.max_requeue_share = 1.0;
    let applied = reconcile(&w.store, &apply).await.expect("apply");
    let tally = applied.applied.expect("tally");
    assert_eq!((tally.requeued, tally.repaired, tally.recorded), (1, 1, 2), "{tally:?}");
    assert_eq!((tally.unchanged, tally.errors, tally.in_flight), (0, 0, 0));
    let rows = read_jsonl(&dir.path().join("apply/resend.jsonl"));
    assert!(
        rows.iter().all(|r| r["outcome"] == "requeued" || r["outcome"] == "repaired"),
        "{rows:?}"
    );
    let lost = w.store.order(&w.lost.id).await.expect("read").expect("order");
    assert_eq!(lost.status, OrderStatus::Queued);
    assert_eq!(lost.deliver_by_ms, NOW + 48 * HOUR, "a new deadline");
    for id in [w.crashed.id, w.dead_applied.id] {
        let o = w.store.order(&id).await.expect("read").expect("order");
        assert_eq!(o.status, OrderStatus::Delivered);
        assert_eq!(o.delivered_at_ms, Some(NOW - 3 * HOUR + 9), "the game's time");
    }

    // Right after: nothing to resend or record; applying again changes nothing.
    let again = reconcile(&w.store, &apply).await.expect("again");
    assert_eq!((again.resend, again.record), (0, 0), "{}", again.table());
    let tally = again.applied.expect("tally");
    assert_eq!(tally, Default::default());
    let left: BTreeMap<Class, u64> = [
        (Class::AppliedTwice, 1),
        (Class::AppliedWithoutOrder, 2),
        // The repaired entry keeps its old due time: first in line, and old enough to count as
        // stuck until a worker takes it.
        (Class::Stuck, 2),
        (Class::Dead, 1),
        (Class::GameLogMalformed, 1),
    ]
    .into();
    assert_eq!(nonzero(&again), left);
    assert_eq!(again.quiet[&Quiet::Pending], 2, "pending, and lost queued again");
    assert_eq!(again.quiet[&Quiet::Delivered], 3, "ok, crashed, dead_applied");

    // The same list applied twice: the second time everything is already queued.
    let ids = [w.lost.id, w.deleted.id, w.pending.id];
    let twice = requeue_list(&w.store, ids, NOW, NOW + HOUR).await;
    assert_eq!((twice.unchanged, twice.requeued, twice.repaired), (3, 0, 0));
    assert_eq!(w.store.queue_depth(GameIndex(0)) + w.store.queue_depth(GameIndex(1)), 4);

    // Include dead orders: the dead one is resent (its game log is empty for it).
    let mut dead = options(dir.path(), "dead");
    dead.include_dead = true;
    let s = reconcile(&w.store, &dead).await.expect("dead");
    assert_eq!(s.resend, 1);
    let rows = read_jsonl(&dir.path().join("dead/resend.jsonl"));
    assert_eq!(keyed(&rows, "why"), vec![("dead".to_string(), w.dead.id.to_string())]);
    let _ = (&w.ok, &w.outside);
}

#[tokio::test]
async fn without_a_game_log_only_our_records_are_judged() {
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path()).await;
    let mut o = options(dir.path(), "nolog");
    o.game_log = None;
    o.out = None;
    let s = reconcile(&w.store, &o).await.expect("pass");
    let expected: BTreeMap<Class, u64> =
        [(Class::NotSentNorQueued, 1), (Class::Stuck, 2), (Class::Dead, 2)].into();
    assert_eq!(nonzero(&s), expected, "{}", s.table());
    assert!(s.game_log.is_none() && s.out.is_none());
    assert!(!dir.path().join("nolog").exists());
}

/// Everything a pass could change: every order and every queue's depth.
async fn snapshot(store: &MemoryStore) -> (Vec<Order>, [u64; 2]) {
    let orders = store.scan_orders(None, 1_000).await.expect("scan");
    (orders, [store.queue_depth(GameIndex(0)), store.queue_depth(GameIndex(1))])
}

/// An empty game log "loses" every delivered order: the dry run says `apply` would refuse,
/// `apply` refuses and changes nothing, and only `force` goes ahead.
#[tokio::test]
async fn apply_refuses_a_game_log_that_does_not_cover_the_deliveries() {
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path()).await;
    std::fs::write(dir.path().join("empty.log"), "").expect("write");
    let before = snapshot(&w.store).await;

    let mut dry = options(dir.path(), "dry");
    dry.game_log = Some(dir.path().join("empty.log"));
    dry.guards.max_requeue_share = 1.0;
    let s = reconcile(&w.store, &dry).await.expect("dry run");
    assert_eq!(s.classes[&Class::LostAtGame], 3, "{}", s.table());
    assert!(
        matches!(s.refusal, Some(Refusal::GameLogDoesNotCover { log_first_ms: None, .. })),
        "{:?}",
        s.refusal
    );
    assert!(s.table().contains("--apply would refuse"), "{}", s.table());
    assert_eq!(snapshot(&w.store).await, before, "a dry run changes nothing");

    let mut apply = dry.clone();
    apply.apply = true;
    apply.out = Some(dir.path().join("refused"));
    match reconcile(&w.store, &apply).await {
        Err(ReconcileError::Refused(Refusal::GameLogDoesNotCover { .. })) => {}
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(snapshot(&w.store).await, before, "a refused apply changes nothing");
    assert!(!dir.path().join("refused").exists(), "a refused apply writes no report");

    apply.guards.force = true;
    let forced = reconcile(&w.store, &apply).await.expect("forced");
    assert_eq!(forced.applied.expect("tally").requeued, 3);
    assert!(forced.refusal.is_some(), "the summary still says what was overridden");
}

/// More re-deliveries than the stated share of delivered orders: refused, nothing changed.
#[tokio::test]
async fn apply_refuses_to_redeliver_more_than_the_stated_share() {
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path()).await;
    let before = snapshot(&w.store).await;
    let mut apply = options(dir.path(), "apply");
    apply.apply = true;
    match reconcile(&w.store, &apply).await {
        Err(ReconcileError::Refused(Refusal::RequeueShareExceeded {
            redeliver: 1,
            delivered: 3,
            ..
        })) => {}
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(snapshot(&w.store).await, before);
    apply.guards.max_requeue_share = 0.34;
    let applied = reconcile(&w.store, &apply).await.expect("within the share");
    assert_eq!(applied.applied.expect("tally").requeued, 1);
}
