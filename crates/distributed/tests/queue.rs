//! The delivery-queue port over JetStream + Redis: the `DeliveryQueue` contract (the same
//! cases as `MemoryQueue`'s own tests, adapted to a queue whose waits are JetStream's), and a
//! worker that dies with a lease, before or after recording the outcome.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{Env, NOW_MS, binding, claim_req, eventually, services_answer};
use hongbao_distributed::{DistributedClaims, JetStreamLease, JetStreamQueue};
use hongbao_domain::{GameIndex, OrderEvent, OrderStatus};
use hongbao_jetstream::JetStreamConfig;
use hongbao_queue::{DeliveryQueue, FinalState, Finish, Leased, QueueError, Retry};
use hongbao_store::{ClaimLedger, ClaimOutcome, OrderId};

const G1: GameIndex = GameIndex(0);
/// Far past every order's ready time: lease calls hand out whatever JetStream delivers.
const LATER_MS: u64 = NOW_MS + 60_000;

/// The shortest ack wait JetStream settings allow here: a dropped lease comes back quickly.
fn quick() -> JetStreamConfig {
    JetStreamConfig { ack_wait_ms: 1_000, ..JetStreamConfig::default() }
}

/// `n` accepted and published orders of gift `a` (game g1), by users 1..=n.
async fn orders(env: &Env, n: u64) -> Vec<String> {
    let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
    let mut ids = Vec::new();
    for user in 1..=n {
        match claims.claim(claim_req(user, 0, NOW_MS)).await.expect("claim") {
            ClaimOutcome::Accepted(o) => ids.push(o.id.as_str().to_string()),
            other => panic!("{other:?}"),
        }
    }
    claims.shutdown().await;
    ids
}

/// Leases until `want` orders (by id) are held, each once.
async fn lease_ids(
    queue: &JetStreamQueue,
    want: &[&str],
    now_ms: u64,
) -> Vec<Leased<JetStreamLease>> {
    let mut held: Vec<Leased<JetStreamLease>> = Vec::new();
    for _ in 0..common::LIVENESS_POLLS {
        held.extend(queue.lease(G1, 10, now_ms).await.expect("lease"));
        if want.iter().all(|w| held.iter().any(|l| l.order.order_id == *w)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ids: HashSet<_> = held.iter().map(|l| l.order.order_id.clone()).collect();
    assert_eq!(ids.len(), held.len(), "no order held twice");
    let want: HashSet<_> = want.iter().map(|w| w.to_string()).collect();
    assert_eq!(ids, want, "exactly the orders expected");
    held
}

async fn status(env: &Env, id: &str) -> OrderStatus {
    let id = OrderId::parse(id).expect("an id");
    env.ledger.order(&id).await.expect("read").expect("stored").status
}

fn take(held: &mut Vec<Leased<JetStreamLease>>, id: &str) -> Leased<JetStreamLease> {
    let i = held.iter().position(|l| l.order.order_id == id).expect("held");
    held.swap_remove(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_finish_retry_and_release_follow_the_contract() {
    if !services_answer() {
        return;
    }
    let env = Env::new(binding(), quick()).await;
    let ids = orders(&env, 4).await;
    let queue = JetStreamQueue::new(env.ledger.clone(), env.stream.clone());
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    assert!(queue.lease(G1, 10, NOW_MS - 1).await.unwrap().is_empty(), "not ready before");

    let mut held = lease_ids(&queue, &[a, b, c, d], NOW_MS).await;
    assert!(held.iter().all(|l| l.order.attempts == 0 && l.order.user >= 1));
    let depth = queue.depth(G1).await.unwrap();
    assert_eq!((depth.entries, depth.leased), (4, 4));

    // Delivered: recorded (state, send log), then gone from the queue.
    let delivered = Finish { state: FinalState::Delivered { duplicate: false }, at_ms: NOW_MS + 1 };
    queue.finish(take(&mut held, a), delivered).await.unwrap();
    assert_eq!(status(&env, a).await, OrderStatus::Delivered);
    let sent = env.ledger.sent(10).await.unwrap();
    assert_eq!(sent, [(a.clone(), NOW_MS + 1)]);

    // A retry counts one attempt and comes back no earlier than its ready time.
    let retry = Retry { ready_at_ms: NOW_MS + 1_500, error: "timeout".into(), at_ms: NOW_MS + 2 };
    queue.retry(take(&mut held, b), retry).await.unwrap();
    let order = env.ledger.order(&OrderId::parse(b).unwrap()).await.unwrap().unwrap();
    assert_eq!((order.status, order.attempts), (OrderStatus::Retrying, 1));
    assert_eq!(order.last_error.as_deref(), Some("timeout"));

    // A release writes nothing and the order comes back as it was.
    queue.release(take(&mut held, c)).await.unwrap();
    assert_eq!(status(&env, c).await, OrderStatus::Queued);

    // Ending a lease someone else already ended: LeaseLost, nothing changes.
    let lost = take(&mut held, d);
    let stored =
        env.ledger.stored_orders(0, std::slice::from_ref(d)).await.unwrap()[0].clone().unwrap();
    let other = stored.order.apply(&OrderEvent::StartDelivery, NOW_MS).unwrap();
    let other = other.apply(&OrderEvent::Expire, NOW_MS).unwrap();
    env.ledger.settle(&stored, &other).await.unwrap();
    let dead = Finish { state: FinalState::Dead { reason: "x".into() }, at_ms: NOW_MS };
    assert_eq!(queue.finish(lost, dead).await, Err(QueueError::LeaseLost(d.clone())));
    assert_eq!(status(&env, d).await, OrderStatus::Expired, "the other holder's outcome stands");
    drop(held);

    let mut back = lease_ids(&queue, &[b, c], LATER_MS).await;
    assert_eq!(take(&mut back, b).order.attempts, 1, "the retry counted");
    assert_eq!(take(&mut back, c).order.attempts, 0, "the release did not");
    assert_eq!(env.ledger.sent(10).await.unwrap().len(), 1, "only deliveries are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_with_a_lease_loses_nothing_and_doubles_nothing() {
    if !services_answer() {
        return;
    }
    let env = Env::new(binding(), quick()).await;
    let ids = orders(&env, 2).await;
    let (x, y) = (&ids[0], &ids[1]);
    {
        // The first worker: dies holding x (nothing recorded) and after recording y's delivery
        // but before acknowledging its message.
        let queue = JetStreamQueue::new(env.ledger.clone(), env.stream.clone());
        let mut held = lease_ids(&queue, &[x, y], NOW_MS).await;
        let y_lease = take(&mut held, y);
        let stored =
            env.ledger.stored_orders(0, std::slice::from_ref(y)).await.unwrap()[0].clone().unwrap();
        let next = stored.order.apply(&OrderEvent::StartDelivery, NOW_MS).unwrap();
        let next = next.apply(&OrderEvent::Delivered, NOW_MS).unwrap();
        env.ledger.settle(&stored, &next).await.unwrap();
        drop((y_lease, held, queue));
    }
    // The next worker gets x back after the ack wait; y's message is acknowledged, not handed
    // out again.
    let queue = Arc::new(JetStreamQueue::new(env.ledger.clone(), env.stream.clone()));
    let mut held = lease_ids(&queue, &[x], LATER_MS).await;
    let done = Finish { state: FinalState::Delivered { duplicate: true }, at_ms: LATER_MS };
    queue.finish(take(&mut held, x), done).await.unwrap();

    let stream = env.stream.clone();
    eventually("both messages acknowledged", || {
        let stream = stream.clone();
        async move { stream.pending(0).await.unwrap() == (0, 0) }
    })
    .await;
    let mut sent: Vec<String> =
        env.ledger.sent(10).await.unwrap().into_iter().map(|s| s.0).collect();
    sent.sort();
    let mut want = vec![x.clone(), y.clone()];
    want.sort();
    assert_eq!(sent, want, "each order once in the actual-send log");
    assert!(queue.lease(G1, 10, LATER_MS).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_jetstream_is_about_to_give_up_on_is_recorded_dead_not_dropped() {
    if !services_answer() {
        return;
    }
    // JetStream stops delivering after 3 deliveries; the queue ends it at the 2nd.
    let config = JetStreamConfig { deliveries_max: 3, ..quick() };
    let env = Env::new(binding(), config).await;
    let ids = orders(&env, 1).await;
    let queue = JetStreamQueue::new(env.ledger.clone(), env.stream.clone());
    let mut held = lease_ids(&queue, &[&ids[0]], NOW_MS).await;
    queue.release(held.remove(0)).await.unwrap();

    let stream = env.stream.clone();
    let queue = &queue;
    eventually("the message terminated", || {
        let stream = stream.clone();
        async move {
            assert!(queue.lease(G1, 10, NOW_MS).await.unwrap().is_empty(), "not handed out");
            stream.pending(0).await.unwrap() == (0, 0)
        }
    })
    .await;
    let order = env.ledger.order(&OrderId::parse(&ids[0]).unwrap()).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Dead);
    assert!(order.last_error.unwrap_or_default().contains("handed out 2 times"));
}
