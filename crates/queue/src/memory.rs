//! An in-memory [`DeliveryQueue`] for tests (here and in the crates above). It keeps what a durable
//! queue would (entries, final states, the actual-send log) and can "crash": [`MemoryQueue::crash`]
//! forgets every lease, as a restarted store does, so the orders a dead worker held come back.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hongbao_domain::GameIndex;

use crate::{
    DeliveryQueue, FinalState, Finish, Leased, QueueDepth, QueueError, QueuedOrder, Retry,
};

/// The in-memory queue's lease handle: the entry's order id and the lease's unique number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLease {
    order_id: String,
    lease_id: u64,
}

#[derive(Debug)]
struct Entry {
    order: QueuedOrder,
    ready_at_ms: u64,
    /// Tie-break among equal ready times: first enqueued, first leased.
    seq: u64,
    lease_id: Option<u64>,
    retrying: bool,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct GameQueue {
    entries: HashMap<String, Entry>,
    /// Unleased entries by (ready time, seq, order id).
    ready: BTreeSet<(u64, u64, String)>,
}

#[derive(Debug, Default)]
struct Inner {
    games: Vec<GameQueue>,
    next_seq: u64,
    next_lease_id: u64,
    finished: HashMap<String, Finish>,
    /// Order ids in the order they were finished delivered: the actual-send log.
    send_log: Vec<String>,
}

impl Inner {
    fn game(&mut self, game: GameIndex) -> &mut GameQueue {
        let i = usize::from(game.0);
        if self.games.len() <= i {
            self.games.resize_with(i + 1, GameQueue::default);
        }
        &mut self.games[i]
    }

    /// Checks `lease` is the entry's current lease and takes the entry out of the lease.
    fn take_lease(
        &mut self,
        game: GameIndex,
        lease: &MemoryLease,
    ) -> Result<&mut Entry, QueueError> {
        let q = self.game(game);
        match q.entries.get_mut(&lease.order_id) {
            Some(e) if e.lease_id == Some(lease.lease_id) => {
                e.lease_id = None;
                Ok(e)
            }
            _ => Err(QueueError::LeaseLost(lease.order_id.clone())),
        }
    }
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
}

impl MemoryQueue {
    pub fn new() -> MemoryQueue {
        MemoryQueue::default()
    }

    fn locked(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the data consistent; a panic elsewhere does not matter.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enqueues `order`, ready at `ready_at_ms`. Idempotent like the store's enqueue: an order
    /// already queued or finished is not added again (returns `false`).
    pub fn push(&self, order: QueuedOrder, ready_at_ms: u64) -> bool {
        let mut inner = self.locked();
        if inner.finished.contains_key(&order.order_id) {
            return false;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let q = inner.game(order.game);
        if q.entries.contains_key(&order.order_id) {
            return false;
        }
        q.ready.insert((ready_at_ms, seq, order.order_id.clone()));
        let entry =
            Entry { order, ready_at_ms, seq, lease_id: None, retrying: false, last_error: None };
        q.entries.insert(entry.order.order_id.clone(), entry);
        true
    }

    /// A restart: every lease is forgotten and its entry is ready again (at its old ready time).
    /// Handles of the old leases are refused from now on ([`QueueError::LeaseLost`]).
    pub fn crash(&self) {
        let mut inner = self.locked();
        for q in &mut inner.games {
            for e in q.entries.values_mut() {
                if e.lease_id.take().is_some() {
                    q.ready.insert((e.ready_at_ms, e.seq, e.order.order_id.clone()));
                }
            }
        }
    }

    /// Every finished order's final record, by order id.
    pub fn finished(&self) -> HashMap<String, Finish> {
        self.locked().finished.clone()
    }

    /// How many orders were finished, over all games.
    pub fn finished_count(&self) -> usize {
        self.locked().finished.len()
    }

    /// The actual-send log: order ids finished delivered, in that order.
    pub fn send_log(&self) -> Vec<String> {
        self.locked().send_log.clone()
    }

    /// Entries not finished, over all games (ready, retrying or leased).
    pub fn outstanding(&self) -> usize {
        self.locked().games.iter().map(|q| q.entries.len()).sum()
    }

    /// When an outstanding order is ready to lease (leased now: when it was): for a retried
    /// order, the end of its backoff.
    pub fn ready_at_ms(&self, game: GameIndex, order_id: &str) -> Option<u64> {
        let mut inner = self.locked();
        inner.game(game).entries.get(order_id).map(|e| e.ready_at_ms)
    }

    /// The last error recorded for an outstanding order.
    pub fn last_error(&self, game: GameIndex, order_id: &str) -> Option<String> {
        let mut inner = self.locked();
        inner.game(game).entries.get(order_id).and_then(|e| e.last_error.clone())
    }
}

impl DeliveryQueue for MemoryQueue {
    type Lease = MemoryLease;

    async fn lease(
        &self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<Leased<MemoryLease>>, QueueError> {
        let mut inner = self.locked();
        let first_lease_id = inner.next_lease_id;
        let q = inner.game(game);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(first) = q.ready.first() else { break };
            if first.0 > now_ms {
                break;
            }
            let Some((_, _, id)) = q.ready.pop_first() else { break };
            let entry = q.entries.get_mut(&id).expect("every ready key names an entry");
            assert!(entry.lease_id.is_none(), "a ready entry is not leased");
            let lease_id = first_lease_id + out.len() as u64;
            entry.lease_id = Some(lease_id);
            out.push(Leased {
                order: entry.order.clone(),
                lease: MemoryLease { order_id: id, lease_id },
            });
        }
        inner.next_lease_id += out.len() as u64;
        Ok(out)
    }

    async fn finish(&self, entry: Leased<MemoryLease>, finish: Finish) -> Result<(), QueueError> {
        let mut inner = self.locked();
        let game = entry.order.game;
        inner.take_lease(game, &entry.lease)?;
        let id = entry.lease.order_id;
        // Send log, then the order's state, then the entry: one critical section here.
        if matches!(finish.state, FinalState::Delivered { .. }) {
            inner.send_log.push(id.clone());
        }
        let previous = inner.finished.insert(id.clone(), finish);
        assert!(previous.is_none(), "order `{id}` finished twice");
        inner.game(game).entries.remove(&id);
        Ok(())
    }

    async fn retry(&self, entry: Leased<MemoryLease>, retry: Retry) -> Result<(), QueueError> {
        let mut inner = self.locked();
        let game = entry.order.game;
        let e = inner.take_lease(game, &entry.lease)?;
        e.ready_at_ms = retry.ready_at_ms;
        e.order.attempts += 1;
        e.retrying = true;
        e.last_error = Some(retry.error);
        let key = (e.ready_at_ms, e.seq, e.order.order_id.clone());
        inner.game(game).ready.insert(key);
        Ok(())
    }

    async fn release(&self, entry: Leased<MemoryLease>) -> Result<(), QueueError> {
        let mut inner = self.locked();
        let game = entry.order.game;
        let e = inner.take_lease(game, &entry.lease)?;
        let key = (e.ready_at_ms, e.seq, e.order.order_id.clone());
        inner.game(game).ready.insert(key);
        Ok(())
    }

    async fn depth(&self, game: GameIndex) -> Result<QueueDepth, QueueError> {
        let mut inner = self.locked();
        let q = inner.game(game);
        let count = |f: fn(&Entry) -> bool| q.entries.values().filter(|e| f(e)).count() as u64;
        Ok(QueueDepth {
            entries: q.entries.len() as u64,
            leased: count(|e| e.lease_id.is_some()),
            retrying: Some(count(|e| e.retrying)),
            oldest_ready_ms: q.entries.values().map(|e| e.ready_at_ms).min(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hongbao_domain::{RoleId, ZoneId};

    fn order(id: &str, game: u8) -> QueuedOrder {
        QueuedOrder {
            order_id: id.to_string(),
            user: 1,
            game: GameIndex(game),
            zone_id: ZoneId(1),
            role_id: RoleId(1),
            items: Vec::new(),
            deliver_by_ms: u64::MAX,
            attempts: 0,
        }
    }

    fn delivered() -> Finish {
        Finish { state: FinalState::Delivered { duplicate: false }, at_ms: 0 }
    }

    fn failed(ready_at_ms: u64, error: &str) -> Retry {
        Retry { ready_at_ms, error: error.to_string(), at_ms: 0 }
    }

    #[tokio::test]
    async fn leases_ready_orders_oldest_first_and_once() {
        let q = MemoryQueue::new();
        assert!(q.push(order("b", 0), 20));
        assert!(q.push(order("a", 0), 10));
        assert!(q.push(order("later", 0), 1000));
        assert!(q.push(order("other-game", 1), 0));
        assert!(!q.push(order("a", 0), 5), "enqueue is idempotent");

        let got = q.lease(GameIndex(0), 10, 100).await.unwrap();
        let ids: Vec<_> = got.iter().map(|l| l.order.order_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(q.lease(GameIndex(0), 10, 100).await.unwrap().is_empty(), "leased once");
        let d = q.depth(GameIndex(0)).await.unwrap();
        assert_eq!(
            d,
            QueueDepth { entries: 3, leased: 2, retrying: Some(0), oldest_ready_ms: Some(10) }
        );
    }

    #[tokio::test]
    async fn finish_and_retry_end_the_lease_and_a_crash_fences_old_leases() {
        let q = MemoryQueue::new();
        q.push(order("a", 0), 0);
        q.push(order("b", 0), 0);
        let mut got = q.lease(GameIndex(0), 10, 0).await.unwrap().into_iter();
        let (a, b) = (got.next().unwrap(), got.next().unwrap());
        q.finish(a, delivered()).await.unwrap();
        assert_eq!(q.send_log(), ["a"]);
        assert!(!q.push(order("a", 0), 0), "a finished order is not enqueued again");

        q.crash();
        let err = q.retry(b, failed(0, "x")).await.unwrap_err();
        assert_eq!(err, QueueError::LeaseLost("b".into()));
        let b = q.lease(GameIndex(0), 10, 0).await.unwrap().pop().unwrap();
        q.release(b).await.unwrap();
        let b = q.lease(GameIndex(0), 10, 0).await.unwrap().pop().unwrap();
        assert_eq!(b.order.attempts, 0, "a release is no attempt");
        q.retry(b, failed(50, "timeout")).await.unwrap();
        assert!(q.lease(GameIndex(0), 10, 49).await.unwrap().is_empty());
        let d = q.depth(GameIndex(0)).await.unwrap();
        assert_eq!(
            d,
            QueueDepth { entries: 1, leased: 0, retrying: Some(1), oldest_ready_ms: Some(50) }
        );
        assert_eq!(q.last_error(GameIndex(0), "b").as_deref(), Some("timeout"));
        assert_eq!(q.ready_at_ms(GameIndex(0), "b"), Some(50));
        let b = q.lease(GameIndex(0), 10, 50).await.unwrap().pop().unwrap();
        assert_eq!(b.order.attempts, 1);
        let expired = Finish { state: FinalState::Expired, at_ms: 60 };
        q.finish(b, expired.clone()).await.unwrap();
        assert_eq!(q.finished()["b"], expired);
        assert_eq!(q.send_log(), ["a"], "only deliveries are in the send log");
        assert_eq!(q.outstanding(), 0);
    }
}
