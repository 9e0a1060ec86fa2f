//! Reconciliation over both backends with one test body: the embedded store, and Redis with
//! JetStream (`DistributedLedger`, `JetStreamQueue`). Each scenario is written once against
//! the `Backend` helper below. Tiny pages, so every scan crosses page boundaries.

mod common;

use std::path::Path;

use common::{Env, NOW_MS, binding, claim_req, services_answer};
use hongbao_distributed::{DistributedClaims, DistributedLedger, JetStreamQueue};
use hongbao_domain::{GameIndex, Order, OrderId, OrderStatus};
use hongbao_jetstream::JetStreamConfig;
use hongbao_queue::{DeliveryQueue, FinalState, Finish};
use hongbao_reconcile::{Class, Ledger, Options, ReconcileError, Refusal, Summary, reconcile};
use hongbao_store::{ClaimLedger, ClaimOutcome, EmbeddedConfig, EmbeddedStore};

const HOUR_MS: u64 = 3_600_000;
const GAMES: [&str; 2] = ["g1", "g2"];

/// What a scenario needs of a backend: its reconciliation ports, its delivery queue, and a
/// claim that is queued (and, on JetStream, published) when it returns.
trait Backend {
    type Store: Ledger;
    type Queue: DeliveryQueue;
    /// Send-log rows of an order delivered, resent and delivered again: the embedded log keeps
    /// a row per delivery, Redis's one per order (the first time; see DEPLOYMENT.md).
    const ROWS_AFTER_A_RESEND: u64;
    fn store(&self) -> &Self::Store;
    fn queue(&self) -> &Self::Queue;
    async fn claim(&self, user: u64, gift: u16, now_ms: u64) -> Order;
}

struct Embedded {
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl Embedded {
    fn open() -> Embedded {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open_with(
            &dir.path().join("store"),
            EmbeddedConfig::default(),
            binding(),
        )
        .expect("store");
        Embedded { store, _dir: dir }
    }
}

fn accepted(outcome: ClaimOutcome) -> Order {
    match outcome {
        ClaimOutcome::Accepted(order) => *order,
        other => panic!("not accepted: {other:?}"),
    }
}

impl Backend for Embedded {
    type Store = EmbeddedStore;
    type Queue = EmbeddedStore;
    const ROWS_AFTER_A_RESEND: u64 = 2;
    fn store(&self) -> &EmbeddedStore {
        &self.store
    }
    fn queue(&self) -> &EmbeddedStore {
        &self.store
    }
    async fn claim(&self, user: u64, gift: u16, now_ms: u64) -> Order {
        accepted(self.store.claim(claim_req(user, gift, now_ms)).await.expect("claim"))
    }
}

struct Fleet {
    env: Env,
    claims: DistributedClaims,
    ledger: DistributedLedger,
    queue: JetStreamQueue,
}

impl Fleet {
    async fn open() -> Fleet {
        let env = Env::new(binding(), JetStreamConfig::default()).await;
        let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
        let ledger = DistributedLedger::new(env.ledger.clone(), env.stream.clone());
        let queue = JetStreamQueue::new(env.ledger.clone(), env.stream.clone());
        Fleet { env, claims, ledger, queue }
    }
}

impl Backend for Fleet {
    type Store = DistributedLedger;
    type Queue = JetStreamQueue;
    const ROWS_AFTER_A_RESEND: u64 = 1;
    fn store(&self) -> &DistributedLedger {
        &self.ledger
    }
    fn queue(&self) -> &JetStreamQueue {
        &self.queue
    }
    async fn claim(&self, user: u64, gift: u16, now_ms: u64) -> Order {
        accepted(self.claims.claim(claim_req(user, gift, now_ms)).await.expect("claim"))
    }
}

/// Delivers everything due at `at_ms` until no game has an unfinished entry left; the ids
/// delivered, in delivery order. (JetStream's consumer figures follow acks a moment later:
/// polled, with a liveness bound.)
async fn drain<Q: DeliveryQueue>(queue: &Q, at_ms: u64) -> Vec<OrderId> {
    let mut delivered = Vec::new();
    for _ in 0..common::LIVENESS_POLLS {
        let mut unfinished = 0;
        for game in 0..GAMES.len() {
            let game = GameIndex(game as u8);
            for entry in queue.lease(game, 100, at_ms).await.expect("lease") {
                delivered.push(OrderId::parse(&entry.order.order_id).expect("an order id"));
                let done = Finish { state: FinalState::Delivered { duplicate: false }, at_ms };
                queue.finish(entry, done).await.expect("finish");
            }
            unfinished += queue.depth(game).await.expect("depth").entries;
        }
        if unfinished == 0 {
            return delivered;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the queues never emptied; delivered so far {delivered:?}");
}

fn log_line(order: &Order, at_ms: u64) -> String {
    format!(
        "{{\"serial\":\"{}\",\"game\":\"{}\",\"user\":{},\"applied_at_ms\":{at_ms}}}\n",
        order.id, order.game_id, order.user
    )
}

fn options(now_ms: u64, game_log: &Path, out: &Path) -> Options {
    let mut options =
        Options::new(now_ms, GAMES.iter().map(|g| g.to_string()).collect(), 48 * HOUR_MS);
    options.game_log = Some(game_log.to_path_buf());
    options.out = Some(out.to_path_buf());
    options.page_len = 2;
    options
}

fn count(summary: &Summary, class: Class) -> u64 {
    summary.classes.get(&class).copied().unwrap_or(0)
}

async fn status<B: Backend>(b: &B, order: &Order) -> OrderStatus {
    b.store().order(&order.id).await.expect("read").expect("the order").status
}

/// Four orders delivered, the game lost one; a fifth queued that the game already applied (its
/// worker died before recording it). The dry run finds both and says apply would refuse (one
/// in four is over the share); apply refuses and changes nothing; with a larger share it
/// requeues the lost one and records the other; a second apply does nothing; the lost order is
/// delivered exactly once more, and the unrecorded one never again.
async fn lost_and_unrecorded<B: Backend>(b: &B, dir: &Path) {
    let mut orders = Vec::new();
    for user in 1..=4 {
        orders.push(b.claim(user, (user % 3) as u16, NOW_MS).await);
    }
    let mut first: Vec<OrderId> = drain(b.queue(), NOW_MS + 1_000).await;
    first.sort();
    let mut ids: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
    ids.sort();
    assert_eq!(first, ids, "each order delivered once");
    let unrecorded = b.claim(5, 2, NOW_MS + 1_500).await;
    let lost = orders[3].clone();
    let log = dir.join("game.log");
    let mut lines: String = orders[..3].iter().map(|o| log_line(o, NOW_MS + 1_000)).collect();
    lines.push_str(&log_line(&unrecorded, NOW_MS + 1_600));
    std::fs::write(&log, &lines).expect("write the log");

    let now = NOW_MS + 2_000;
    let dry = reconcile(b.store(), &options(now, &log, &dir.join("dry"))).await.expect("dry run");
    assert_eq!(
        (count(&dry, Class::LostAtGame), count(&dry, Class::DeliveredUnrecorded)),
        (1, 1),
        "{dry:?}"
    );
    assert_eq!((dry.orders_scanned, dry.resend, dry.record), (5, 1, 1));
    assert!(matches!(dry.refusal, Some(Refusal::RequeueShareExceeded { .. })), "{dry:?}");

    let mut apply = options(now, &log, &dir.join("refused"));
    apply.apply = true;
    let refused = reconcile(b.store(), &apply).await;
    assert!(matches!(refused, Err(ReconcileError::Refused(_))), "{refused:?}");
    assert_eq!(status(b, &lost).await, OrderStatus::Delivered, "a refused apply changes nothing");
    assert_eq!(status(b, &unrecorded).await, OrderStatus::Queued);

    apply.guards.max_requeue_share = 0.5;
    apply.out = Some(dir.join("applied"));
    let applied = reconcile(b.store(), &apply).await.expect("apply");
    let tally = applied.applied.expect("a tally");
    assert_eq!((tally.requeued, tally.recorded, tally.errors), (1, 1, 0), "{tally:?}");
    assert_eq!(status(b, &lost).await, OrderStatus::Queued);
    let recorded = b.store().order(&unrecorded.id).await.expect("read").expect("order");
    assert_eq!(
        (recorded.status, recorded.delivered_at_ms),
        (OrderStatus::Delivered, Some(NOW_MS + 1_600)),
        "recorded at the game's time"
    );

    apply.out = Some(dir.join("again"));
    let again = reconcile(b.store(), &apply).await.expect("apply again");
    let tally = again.applied.expect("a tally");
    assert_eq!((again.resend, again.record, tally.requeued, tally.recorded), (0, 0, 0, 0));
    assert!(again.clean, "{again:?}");

    let second = drain(b.queue(), now + 1_000).await;
    assert_eq!(second, vec![lost.id], "only the lost order, once");
    lines.push_str(&log_line(&lost, now + 1_000));
    std::fs::write(&log, &lines).expect("write the log");
    let last = reconcile(b.store(), &options(now + 2_000, &log, &dir.join("last")))
        .await
        .expect("last pass");
    assert!(last.clean && last.refusal.is_none(), "{last:?}");
    assert_eq!(last.sent_rows_scanned, 4 + B::ROWS_AFTER_A_RESEND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_lost_and_unrecorded() {
    let dir = tempfile::tempdir().expect("dir");
    lost_and_unrecorded(&Embedded::open(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_lost_and_unrecorded() {
    if !services_answer() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let fleet = Fleet::open().await;
    lost_and_unrecorded(&fleet, dir.path()).await;
    fleet.claims.shutdown().await;
}

/// A message the stream lost (purged here; a server's lost disk in life): the order still says
/// queued, but no worker will ever see it. The pass finds it not sent nor queued, the apply
/// publishes it again under a new message id (the first one is still in the dedup window),
/// and it is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_a_message_the_stream_lost_is_published_again() {
    if !services_answer() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let fleet = Fleet::open().await;
    let kept = fleet.claim(1, 0, NOW_MS).await;
    let gone = fleet.claim(2, 2, NOW_MS).await;
    let client = async_nats::connect(common::NATS_URL).await.expect("nats");
    let stream = async_nats::jetstream::new(client)
        .get_stream(fleet.env.stream.names().stream())
        .await
        .expect("stream");
    let subject = fleet.env.stream.names().subject(1).expect("g2's subject");
    stream.purge().filter(subject).await.expect("purge g2");
    // Orders recorded before the order index existed are indexed by the pass itself.
    let index = format!("{}:{{spring}}:order_ids", fleet.env.namespace);
    let redis = redis::Client::open(common::REDIS_URL).expect("redis");
    let mut conn = redis.get_multiplexed_async_connection().await.expect("connect");
    redis::cmd("DEL").arg(&index).query_async::<u64>(&mut conn).await.expect("del");

    let log = dir.path().join("empty.log");
    std::fs::write(&log, "").expect("log");
    let mut apply = options(NOW_MS + 1_000, &log, &dir.path().join("apply"));
    apply.apply = true;
    let applied = reconcile(fleet.store(), &apply).await.expect("apply");
    assert_eq!(applied.orders_scanned, 2, "both orders, the index rebuilt");
    assert_eq!(count(&applied, Class::NotSentNorQueued), 1, "{applied:?}");
    assert_eq!(applied.applied.expect("tally").repaired, 1);
    let resend = std::fs::read_to_string(dir.path().join("apply/resend.jsonl")).expect("list");
    assert!(resend.contains(gone.id.as_str()) && !resend.contains(kept.id.as_str()), "{resend}");

    apply.out = Some(dir.path().join("again"));
    let again = reconcile(fleet.store(), &apply).await.expect("apply again");
    assert!(again.clean, "the message is back: {again:?}");
    let mut delivered = drain(fleet.queue(), NOW_MS + 2_000).await;
    delivered.sort();
    let mut both = vec![kept.id, gone.id];
    both.sort();
    assert_eq!(delivered, both, "each delivered once");
    fleet.claims.shutdown().await;
}
