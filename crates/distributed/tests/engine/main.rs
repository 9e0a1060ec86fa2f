//! A whole reconciliation pass with hand-made facts: every class once (the damage to our own
//! records in `records.rs`) but `orphan_queue_entry`, exact files, repairs, and the pass after
//! the repairs. (An orphan entry is not made here: the in-memory store has no way to, and on
//! JetStream the pass lists none by design, since the next worker to fetch a message that no
//! waiting order accounts for acknowledges or terminates it: see `DistributedLedger`'s doc.) Tiny pages and sort runs so every stream crosses page and
//! run boundaries.
//!
//! Each test body is written once and runs as `NAME::memory` (the in-memory store, where these
//! tests lived first, in `hongbao-reconcile`) and `NAME::distributed` (`DistributedLedger` over
//! Redis and JetStream under a fresh namespace; skipped, saying so, when Redis or NATS does not
//! answer outside CI, failed under CI). The world is made through the ports on both (claim,
//! lease, finish, release); the one fault no port makes is in `backends.rs`.
//!
//! Where the backends differ, the difference is named in `Backend` with its reason; the engine's
//! findings, repairs and files are the same.

mod backends;
#[path = "../common/mod.rs"]
mod common;
mod records;

use std::collections::BTreeMap;
use std::path::Path;

use backends::{Backend, depths, queues_settle, settle};
use hongbao_domain::{Channel, Coupon, GameIndex, GiftIndex, Order, OrderId, OrderStatus};
use hongbao_queue::FinalState;
use hongbao_reconcile::{
    Class, Options, Quiet, ReconcileError, Refusal, Summary, reconcile, requeue_list,
};
use hongbao_store::{CampaignBinding, ClaimLedger, ClaimRequest, LedgerScan};
use records::damage_to_our_own_records_is_listed;
use serde_json::Value;

/// One test body, `async fn NAME<B: Backend>(b: &B)`, run on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(&super::backends::Memory::open(super::binding())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                if !super::common::services_answer() {
                    return;
                }
                let fleet = super::backends::Fleet::open(super::binding()).await;
                super::$name(&fleet).await;
                fleet.close().await;
            }
        }
    )*};
}

on_both_backends!(
    every_class_is_found_exactly_and_repairs_are_idempotent,
    without_a_game_log_only_our_records_are_judged,
    apply_refuses_a_game_log_that_does_not_cover_the_deliveries,
    apply_refuses_to_redeliver_more_than_the_stated_share,
    damage_to_our_own_records_is_listed,
);

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

async fn claim<B: Backend>(b: &B, user: u64, gift: u16, at: u64) -> Order {
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
    b.claim(req).await
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

/// The orders of `game` among `orders`.
fn of_game(orders: &[&Order], game: &str) -> Vec<OrderId> {
    orders.iter().filter(|o| o.game_id == game).map(|o| o.id).collect()
}

async fn world<B: Backend>(b: &B, dir: &Path) -> World {
    let t = NOW - 3 * HOUR;
    let ok = claim(b, 1, 0, t).await;
    let lost = claim(b, 2, 0, t).await;
    let crashed = claim(b, 3, 1, t).await;
    let deleted = claim(b, 4, 1, t).await;
    let stuck = claim(b, 6, 1, t).await;
    let dead = claim(b, 7, 0, t).await;
    let dead_applied = claim(b, 8, 0, t).await;
    let twice = claim(b, 9, 0, t).await;
    let outside = claim(b, 10, 0, NOW - 30 * HOUR).await;
    let delivered = [ok.id, lost.id, twice.id, outside.id];
    let dead_ids = [dead.id, dead_applied.id];
    let all = [&ok, &lost, &crashed, &deleted, &stuck, &dead, &dead_applied, &twice, &outside];
    for (index, game_id) in ["g1", "g2"].into_iter().enumerate() {
        let game = GameIndex(u8::try_from(index).expect("two games"));
        settle(b.queue(), game, &of_game(&all, game_id), t + 10, |id| {
            if delivered.contains(id) {
                Some(FinalState::Delivered { duplicate: false })
            } else if dead_ids.contains(id) {
                Some(FinalState::Dead { reason: "role gone".into() })
            } else {
                None
            }
        })
        .await;
    }
    let pending = claim(b, 5, 1, NOW - 1_000).await;
    b.lose_queue_entry(&deleted).await;
    // g1's orders all finished; g2 keeps crashed, stuck and pending (deleted's entry is gone).
    queues_settle(b.queue(), &[0, 3]).await;
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

async fn every_class_is_found_exactly_and_repairs_are_idempotent<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().expect("dir");
    let w = world(b, dir.path()).await;

    let summary = reconcile(b.store(), &options(dir.path(), "first")).await.expect("pass");
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
    let applied = reconcile(b.store(), &apply).await.expect("apply");
    let tally = applied.applied.expect("tally");
    assert_eq!((tally.requeued, tally.repaired, tally.recorded), (1, 1, 2), "{tally:?}");
    assert_eq!((tally.unchanged, tally.errors, tally.in_flight), (0, 0, 0));
    let rows = read_jsonl(&dir.path().join("apply/resend.jsonl"));
    assert!(
        rows.iter().all(|r| r["outcome"] == "requeued" || r["outcome"] == "repaired"),
        "{rows:?}"
    );
    let lost = b.store().order(&w.lost.id).await.expect("read").expect("order");
    assert_eq!(lost.status, OrderStatus::Queued);
    assert_eq!(lost.deliver_by_ms, NOW + 48 * HOUR, "a new deadline");
    for id in [w.crashed.id, w.dead_applied.id] {
        let o = b.store().order(&id).await.expect("read").expect("order");
        assert_eq!(o.status, OrderStatus::Delivered);
        assert_eq!(o.delivered_at_ms, Some(NOW - 3 * HOUR + 9), "the game's time");
    }

    // Right after: nothing to resend or record; applying again changes nothing.
    let again = reconcile(b.store(), &apply).await.expect("again");
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
    let twice = requeue_list(b.store(), ids, NOW, NOW + HOUR).await;
    assert_eq!((twice.unchanged, twice.requeued, twice.repaired), (3, 0, 0));
    // g1: lost, queued again; g2: stuck, deleted's new entry, pending, and what crashed's
    // record leaves behind until a worker's next fetch (see `Backend`).
    queues_settle(b.queue(), &[1, 3 + B::ENTRIES_LEFT_BY_A_RECORD]).await;
    // A worker's fetch (each lease released): what the record left is acknowledged unsent,
    // never handed out; the waiting orders stay.
    let waiting = [w.stuck.id, w.deleted.id, w.pending.id];
    settle(b.queue(), GameIndex(1), &waiting, NOW, |_| None).await;
    queues_settle(b.queue(), &[1, 3]).await;

    // Include dead orders: the dead one is resent (its game log is empty for it).
    let mut dead = options(dir.path(), "dead");
    dead.include_dead = true;
    let s = reconcile(b.store(), &dead).await.expect("dead");
    assert_eq!(s.resend, 1);
    let rows = read_jsonl(&dir.path().join("dead/resend.jsonl"));
    assert_eq!(keyed(&rows, "why"), vec![("dead".to_string(), w.dead.id.to_string())]);
    let _ = (&w.ok, &w.outside);
}

async fn without_a_game_log_only_our_records_are_judged<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().expect("dir");
    world(b, dir.path()).await;
    let mut o = options(dir.path(), "nolog");
    o.game_log = None;
    o.out = None;
    let s = reconcile(b.store(), &o).await.expect("pass");
    let expected: BTreeMap<Class, u64> =
        [(Class::NotSentNorQueued, 1), (Class::Stuck, 2), (Class::Dead, 2)].into();
    assert_eq!(nonzero(&s), expected, "{}", s.table());
    assert!(s.game_log.is_none() && s.out.is_none());
    assert!(!dir.path().join("nolog").exists());
}

/// Everything a pass could change: every order and every queue's depth.
async fn snapshot<B: Backend>(b: &B) -> (Vec<Order>, Vec<u64>) {
    let orders = b.store().scan_orders(None, 1_000).await.expect("scan");
    (orders, depths(b.queue(), 2).await)
}

/// An empty game log "loses" every delivered order: the dry run says `apply` would refuse,
/// `apply` refuses and changes nothing, and only `force` goes ahead.
async fn apply_refuses_a_game_log_that_does_not_cover_the_deliveries<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().expect("dir");
    world(b, dir.path()).await;
    std::fs::write(dir.path().join("empty.log"), "").expect("write");
    let before = snapshot(b).await;

    let mut dry = options(dir.path(), "dry");
    dry.game_log = Some(dir.path().join("empty.log"));
    dry.guards.max_requeue_share = 1.0;
    let s = reconcile(b.store(), &dry).await.expect("dry run");
    assert_eq!(s.classes[&Class::LostAtGame], 3, "{}", s.table());
    assert!(
        matches!(s.refusal, Some(Refusal::GameLogDoesNotCover { log_first_ms: None, .. })),
        "{:?}",
        s.refusal
    );
    assert!(s.table().contains("--apply would refuse"), "{}", s.table());
    assert_eq!(snapshot(b).await, before, "a dry run changes nothing");

    let mut apply = dry.clone();
    apply.apply = true;
    apply.out = Some(dir.path().join("refused"));
    match reconcile(b.store(), &apply).await {
        Err(ReconcileError::Refused(Refusal::GameLogDoesNotCover { .. })) => {}
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(snapshot(b).await, before, "a refused apply changes nothing");
    assert!(!dir.path().join("refused").exists(), "a refused apply writes no report");

    apply.guards.force = true;
    let forced = reconcile(b.store(), &apply).await.expect("forced");
    assert_eq!(forced.applied.expect("tally").requeued, 3);
    assert!(forced.refusal.is_some(), "the summary still says what was overridden");
}

/// More re-deliveries than the stated share of delivered orders: refused, nothing changed.
async fn apply_refuses_to_redeliver_more_than_the_stated_share<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().expect("dir");
    world(b, dir.path()).await;
    let before = snapshot(b).await;
    let mut apply = options(dir.path(), "apply");
    apply.apply = true;
    match reconcile(b.store(), &apply).await {
        Err(ReconcileError::Refused(Refusal::RequeueShareExceeded {
            redeliver: 1,
            delivered: 3,
            ..
        })) => {}
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(snapshot(b).await, before);
    apply.guards.max_requeue_share = 0.34;
    let applied = reconcile(b.store(), &apply).await.expect("within the share");
    assert_eq!(applied.applied.expect("tally").requeued, 1);
}
