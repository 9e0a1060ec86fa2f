//! The two backends the engine's tests run on, each with the hand-made faults no public
//! operation makes: a waiting order's queue entry lost, a send-log row lost, an order lost
//! with its send-log row kept, each behind the store's back. Everything else is made through
//! the ports (claim, lease, finish, release), so both backends get the same damage the same
//! way. Redis's keys are touched only through `hongbao_redis::testing`, never named here.

use std::time::Duration;

use hongbao_distributed::{DistributedClaims, DistributedLedger, JetStreamQueue};
use hongbao_domain::{GameIndex, Order, OrderId};
use hongbao_jetstream::JetStreamConfig;
use hongbao_queue::{DeliveryQueue, FinalState, Finish};
use hongbao_reconcile::Ledger;
use hongbao_redis::{MessageOf, testing};
use hongbao_store::{CampaignBinding, ClaimLedger, ClaimOutcome, ClaimRequest, MemoryStore};

use crate::common::{Env, LIVENESS_POLLS, NATS_URL, eventually};

/// What a test body needs of a backend.
pub trait Backend {
    type Store: Ledger;
    type Queue: DeliveryQueue;
    /// Queue entries an order recorded delivered by reconciliation leaves behind until a
    /// worker next fetches its game: none in the store (the record removes the entry); on
    /// JetStream its message, which the record cannot acknowledge (only its holder can) and
    /// the next fetch acknowledges unsent (see `DistributedLedger::record_delivered`).
    const ENTRIES_LEFT_BY_A_RECORD: u64;
    fn store(&self) -> &Self::Store;
    fn queue(&self) -> &Self::Queue;
    /// `req` accepted (and, on JetStream, published), or a panic.
    async fn claim(&self, req: ClaimRequest) -> Order;
    /// Deletes `order`'s entry in its game's queue the way a fault would: by hand in the store,
    /// and on JetStream the stream losing its message (a purge, a server's lost disk).
    async fn lose_queue_entry(&self, order: &Order);
    /// Deletes `id`'s send-log row (a lost write), its order left as it is.
    async fn lose_sent_row(&self, id: &OrderId);
    /// Deletes `id`'s order, its send-log row left as it is.
    async fn lose_order(&self, id: &OrderId);
}

fn accepted(outcome: ClaimOutcome) -> Order {
    match outcome {
        ClaimOutcome::Accepted(order) => *order,
        other => panic!("not accepted: {other:?}"),
    }
}

/// The in-memory store: the ledger core over maps, the store's queue beside it.
pub struct Memory {
    store: MemoryStore,
}

impl Memory {
    pub fn open(binding: CampaignBinding) -> Memory {
        Memory { store: MemoryStore::with_campaign(binding) }
    }
}

impl Backend for Memory {
    type Store = MemoryStore;
    type Queue = MemoryStore;
    const ENTRIES_LEFT_BY_A_RECORD: u64 = 0;
    fn store(&self) -> &MemoryStore {
        &self.store
    }
    fn queue(&self) -> &MemoryStore {
        &self.store
    }
    async fn claim(&self, req: ClaimRequest) -> Order {
        accepted(self.store.claim(req).await.expect("claim"))
    }
    async fn lose_queue_entry(&self, order: &Order) {
        assert!(self.store.remove_queue_entry_by_hand(order), "no entry to lose");
    }
    async fn lose_sent_row(&self, id: &OrderId) {
        assert_eq!(self.store.remove_sent_rows_by_hand(id), 1, "one row to lose");
    }
    async fn lose_order(&self, id: &OrderId) {
        assert!(self.store.remove_order_by_hand(id), "no order to lose");
    }
}

/// Redis and JetStream under a fresh namespace (removed when it drops, also on a panic):
/// claims published at once, reconciliation's ports, the workers' queue.
pub struct Fleet {
    env: Env,
    claims: DistributedClaims,
    ledger: DistributedLedger,
    queue: JetStreamQueue,
}

impl Fleet {
    pub async fn open(binding: CampaignBinding) -> Fleet {
        let env = Env::new(binding, JetStreamConfig::default()).await;
        let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
        let ledger = DistributedLedger::new(env.ledger.clone(), env.stream.clone());
        let queue = JetStreamQueue::new(env.ledger.clone(), env.stream.clone());
        Fleet { env, claims, ledger, queue }
    }

    /// Stops the claims' publisher; the namespace goes when the rest drops.
    pub async fn close(self) {
        let Fleet { env, claims, ledger, queue } = self;
        claims.shutdown().await;
        drop((queue, ledger, env));
    }

    /// The stream sequence `id`'s latest message was stored at (the publisher records it
    /// just after the claim's answer: waited for, with a liveness bound).
    async fn sequence_of(&self, id: &OrderId) -> u64 {
        let order = self.env.ledger.stored_order(id).await.expect("read").expect("stored").order;
        for _ in 0..LIVENESS_POLLS {
            match self.env.ledger.message_of(&order).await.expect("message of") {
                MessageOf::Published { sequence } => return sequence,
                MessageOf::Unpublished | MessageOf::Unknown => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{id} was never marked published");
    }
}

impl Backend for Fleet {
    type Store = DistributedLedger;
    type Queue = JetStreamQueue;
    const ENTRIES_LEFT_BY_A_RECORD: u64 = 1;
    fn store(&self) -> &DistributedLedger {
        &self.ledger
    }
    fn queue(&self) -> &JetStreamQueue {
        &self.queue
    }
    async fn claim(&self, req: ClaimRequest) -> Order {
        accepted(self.claims.claim(req).await.expect("claim"))
    }
    /// Only the stream's copy goes: Redis still says where the message was, as after a real
    /// loss.
    async fn lose_queue_entry(&self, order: &Order) {
        let sequence = self.sequence_of(&order.id).await;
        let client = async_nats::connect(NATS_URL).await.expect("nats");
        let stream = async_nats::jetstream::new(client)
            .get_stream(self.env.stream.names().stream())
            .await
            .expect("stream");
        assert!(stream.delete_message(sequence).await.expect("delete the message"));
    }
    async fn lose_sent_row(&self, id: &OrderId) {
        let removed = testing::remove_sent_row_by_hand(&self.env.ledger, id).await;
        assert!(removed.expect("remove the row"), "no row to lose");
    }
    async fn lose_order(&self, id: &OrderId) {
        let removed = testing::remove_order_by_hand(&self.env.ledger, id).await;
        assert!(removed.expect("remove the order"), "no order to lose");
    }
}

/// Leases every order of `waiting` (all of `game`, due at `at_ms`) once, and ends each lease as
/// `end` says (`None`: released). Leases go round until each was seen: JetStream hands a
/// fetch what it has at hand, and a released message comes straight back.
pub async fn settle<Q: DeliveryQueue>(
    queue: &Q,
    game: GameIndex,
    waiting: &[OrderId],
    at_ms: u64,
    end: impl Fn(&OrderId) -> Option<FinalState>,
) {
    let mut seen = Vec::new();
    for _ in 0..LIVENESS_POLLS {
        for entry in queue.lease(game, 1_000, at_ms).await.expect("lease") {
            let id = OrderId::parse(&entry.order.order_id).expect("an order id");
            assert!(waiting.contains(&id), "{id} leased from game {}, not waiting there", game.0);
            let state = if seen.contains(&id) { None } else { end(&id) };
            seen.push(id);
            match state {
                Some(state) => queue.finish(entry, Finish { state, at_ms }).await.expect("finish"),
                None => queue.release(entry).await.expect("release"),
            }
        }
        if waiting.iter().all(|id| seen.contains(id)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("game {} never handed out all of {waiting:?}", game.0);
}

/// Waits until the games' queues hold `entries` (by index): the store counts at once, and
/// JetStream's consumer figures follow acknowledgements a moment later (a liveness bound, not
/// a timing assertion).
pub async fn queues_settle<Q: DeliveryQueue>(queue: &Q, entries: &[u64]) {
    eventually(&format!("queue entries {entries:?}"), || async {
        depths(queue, entries.len()).await == entries
    })
    .await;
}

/// Every game's queue entries, by index.
pub async fn depths<Q: DeliveryQueue>(queue: &Q, games: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(games);
    for game in 0..games {
        let game = GameIndex(u8::try_from(game).expect("few games"));
        out.push(queue.depth(game).await.expect("depth").entries);
    }
    out
}
