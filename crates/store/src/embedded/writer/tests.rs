//! The writer against an in-memory disk: batching, rollback, recovery, and a differential
//! property test against [`crate::MemoryStore`] (the model). Both run the ledger's rules
//! (`crate::ledger`), the writer over its batch's staged overlay and the model over its maps,
//! so the differential test checks the one thing that differs: how each backend stores.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hongbao_domain::{Coupon, GameIndex, GiftIndex, Order, OrderId, OrderStatus, RoleId, ZoneId};
use hongbao_queue::FinalState;
use proptest::prelude::*;
use tokio::sync::oneshot;

use super::*;
use crate::claim::{CampaignBinding, ClaimOutcome, ClaimRequest, IdempotencyKey};
use crate::embedded::layout::{self, GrantKey, grant_key};
use crate::ledger::{self, SettleAction};
use crate::queue::{QueueEntry, QueuedRef, RecordOutcome, RequeueOutcome, SentRecord, Settled};
use crate::{
    CHANNELS, Channel, ClaimLedger, GrantOutcome, GrantRequest, LedgerRepair, LedgerScan,
    MemoryStore, StoreError, channel_index,
};

const DELIVERED: FinalState = FinalState::Delivered { duplicate: false };

/// One write of a batch: a put (`Some` value) or a delete.
type Write = (Space, Vec<u8>, Option<Vec<u8>>);
type Rows = BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>;

/// An in-memory disk whose next commit can be made to fail.
#[derive(Default)]
pub(crate) struct FakeBackend {
    pub spaces: BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>,
    open: Vec<(Space, Vec<u8>, Option<Vec<u8>>)>,
    pub fail_next_commit: bool,
    pub commits: usize,
    /// How the last commit was asked to persist.
    pub last_durability: Option<Durability>,
    /// What a crash keeps: `spaces` as of the last synced commit (buffered batches join it with
    /// the next synced one, as fjall's single journal file does).
    durable: Rows,
    unsynced: Vec<Vec<Write>>,
}

impl FakeBackend {
    /// A crash: every buffered batch not yet followed by a synced one is lost, whole.
    fn crash(&mut self) {
        self.unsynced.clear();
        self.open.clear();
        self.spaces = self.durable.clone();
    }

    fn apply(spaces: &mut Rows, writes: &[Write]) {
        for (space, key, value) in writes {
            let rows = spaces.entry(*space).or_default();
            match value {
                Some(value) => rows.insert(key.clone(), value.clone()),
                None => rows.remove(key),
            };
        }
    }

    fn space(&self, space: Space) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.spaces.get(&space).into_iter().flatten()
    }
}

impl Backend for FakeBackend {
    type Bytes = Vec<u8>;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.spaces.get(&space).and_then(|s| s.get(key)).cloned())
    }

    fn scan(
        &mut self,
        space: Space,
        from: &[u8],
        to: &[u8],
        visit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if let Some(rows) = self.spaces.get(&space) {
            for key in rows.range(from.to_vec()..to.to_vec()).map(|(k, _)| k) {
                if !visit(key) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) {
        self.open.push((space, key.to_vec(), Some(value.to_vec())));
    }

    fn delete(&mut self, space: Space, key: &[u8]) {
        self.open.push((space, key.to_vec(), None));
    }

    fn commit(&mut self, durability: Durability) -> Result<(), StoreError> {
        self.last_durability = Some(durability);
        let writes = std::mem::take(&mut self.open);
        if std::mem::take(&mut self.fail_next_commit) {
            return Err(StoreError::Unavailable("injected fsync failure".into()));
        }
        self.commits += 1;
        Self::apply(&mut self.spaces, &writes);
        self.unsynced.push(writes);
        if durability == Durability::Synced {
            for writes in self.unsynced.drain(..) {
                Self::apply(&mut self.durable, &writes);
            }
        }
        Ok(())
    }
}

fn binding() -> Arc<CampaignBinding> {
    Arc::new(
        CampaignBinding::new(
            "spring",
            vec!["g1".into(), "g2".into()],
            vec![
                ("a".into(), GameIndex(0)),
                ("b".into(), GameIndex(0)),
                ("c".into(), GameIndex(1)),
            ],
        )
        .expect("valid binding"),
    )
}

fn ledger_on(mut backend: FakeBackend) -> Ledger<FakeBackend> {
    let binding = binding();
    let recovered = recover(&mut backend, &binding).expect("recover");
    let known = Arc::new(known(&mut backend, &binding, &recovered).expect("fill the filter"));
    let shared = Arc::new(Shared::new(&recovered));
    Ledger::new(backend, binding, recovered, shared, known)
}

fn ledger() -> Ledger<FakeBackend> {
    ledger_on(FakeBackend::default())
}

fn budgets(backend: &FakeBackend) -> [u64; CHANNELS] {
    let mut out = [0; CHANNELS];
    for channel in Channel::ALL {
        let key = layout::budget_key(channel);
        if let Some(bytes) =
            backend.spaces.get(&Space::Counters).and_then(|s| s.get(key.as_bytes()))
        {
            out[channel_index(channel)] = layout::decode_budget(channel, bytes).expect("counter");
        }
    }
    out
}

// --- grants -----------------------------------------------------------------------------------

type GrantReply = oneshot::Receiver<Result<GrantOutcome, StoreError>>;

fn grant(user: u64, channel: Channel, per_user_limit: u32, budget: u64) -> (Command, GrantReply) {
    let (reply, rx) = oneshot::channel();
    (Command::Grant { req: GrantRequest { user, channel, per_user_limit, budget }, reply }, rx)
}

fn run_grants(
    ledger: &mut Ledger<FakeBackend>,
    requests: &[(u64, Channel)],
    limit: u32,
    budget: u64,
) -> Vec<Result<GrantOutcome, StoreError>> {
    let (commands, mut replies): (Vec<_>, Vec<_>) =
        requests.iter().map(|(user, channel)| grant(*user, *channel, limit, budget)).unzip();
    ledger.run_batch(commands);
    replies.iter_mut().map(|rx| rx.try_recv().expect("answered after the batch")).collect()
}

#[test]
fn one_batch_sees_its_own_grants_and_commits_once() {
    let mut ledger = ledger();
    let commits_at_open = ledger.backend.commits;
    let results = run_grants(&mut ledger, &[(1, Channel::Swipe); 4], 3, 100);
    assert_eq!(
        results,
        vec![
            Ok(GrantOutcome::Granted { serial: 1 }),
            Ok(GrantOutcome::Granted { serial: 2 }),
            Ok(GrantOutcome::Granted { serial: 3 }),
            Ok(GrantOutcome::UserLimitReached),
        ]
    );
    assert_eq!(ledger.backend.commits, commits_at_open + 1);
    let row = ledger.backend.spaces[&Space::Grants][&grant_key(1, Channel::Swipe).to_vec()].clone();
    assert_eq!(row, layout::encode_count(3));
    assert_eq!(budgets(&ledger.backend), [3, 0, 0]);
    assert_eq!(ledger.shared.fsyncs.load(Ordering::Relaxed), 1);
}

#[test]
fn a_batch_of_rejections_does_not_fsync() {
    let mut ledger = ledger();
    let results = run_grants(&mut ledger, &[(1, Channel::Scan), (2, Channel::Scan)], 3, 0);
    assert_eq!(results, vec![Ok(GrantOutcome::BudgetExhausted); 2]);
    assert_eq!(ledger.shared.fsyncs.load(Ordering::Relaxed), 0);
    assert_eq!(ledger.shared.batches.load(Ordering::Relaxed), 1);
}

#[test]
fn a_failed_commit_fails_the_whole_batch_rolls_back_and_stops_the_writer() {
    let mut ledger = ledger();
    run_grants(&mut ledger, &[(1, Channel::Swipe)], 3, 100);
    let commits = ledger.backend.commits;
    ledger.backend.fail_next_commit = true;
    let results = run_grants(
        &mut ledger,
        &[(1, Channel::Swipe), (2, Channel::Swipe), (3, Channel::Swipe)],
        1,
        100,
    );
    assert!(results.iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))), "{results:?}");
    assert_eq!(ledger.granted, [1, 0, 0], "in-memory counters equal the disk's");
    assert_eq!(ledger.shared.granted(Channel::Swipe), 1);
    let later = run_grants(&mut ledger, &[(9, Channel::Scan)], 3, 100);
    assert!(matches!(later[0], Err(StoreError::Unavailable(_))));
    assert_eq!(ledger.backend.commits, commits);
}

// --- claims and the queue ---------------------------------------------------------------------

const NOW: u64 = 1_800_000_000_000;

fn claim_req(
    user: u64,
    serial: u32,
    gift: u16,
    stock: u64,
    per_user: u32,
    now_ms: u64,
) -> ClaimRequest {
    ClaimRequest {
        coupon: Coupon {
            campaign_id: "spring".into(),
            user,
            channel: Channel::Swipe,
            serial,
            expires_at_unix_s: i64::MAX,
        },
        gift: GiftIndex(gift),
        zone_id: ZoneId(1),
        role_id: RoleId(user),
        stock,
        per_user_limit: per_user,
        now_ms,
        deliver_by_ms: now_ms + 1_000_000,
        idempotency: None,
        high_value: None,
    }
}

/// A batch of mixed commands, answered.
#[derive(Default)]
struct Batch {
    commands: Vec<Command>,
    replies: Vec<Answer>,
}

enum Answer {
    Oldest(oneshot::Receiver<Result<Option<u64>, StoreError>>),
    Claim(oneshot::Receiver<Result<ClaimOutcome, StoreError>>),
    Lease(oneshot::Receiver<Result<Vec<QueueEntry>, StoreError>>),
    Settle(oneshot::Receiver<Result<Settled, StoreError>>),
    Requeue(oneshot::Receiver<Result<RequeueOutcome, StoreError>>),
    Record(oneshot::Receiver<Result<RecordOutcome, StoreError>>),
}

#[derive(Debug, PartialEq)]
enum Answered {
    Oldest(Result<Option<u64>, StoreError>),
    Claim(Result<ClaimOutcome, StoreError>),
    Lease(Result<Vec<QueueEntry>, StoreError>),
    Settle(Result<Settled, StoreError>),
    Requeue(Result<RequeueOutcome, StoreError>),
    Record(Result<RecordOutcome, StoreError>),
}

impl Batch {
    fn claim(&mut self, req: ClaimRequest) -> &mut Self {
        let prepared = ledger::claim::prepare(&binding(), &req).expect("valid claim");
        let (reply, rx) = oneshot::channel();
        self.commands.push(Command::Claim { claim: Box::new((req, prepared)), reply });
        self.replies.push(Answer::Claim(rx));
        self
    }

    fn lease(&mut self, game: u8, max: usize, now_ms: u64) -> &mut Self {
        let (reply, rx) = oneshot::channel();
        self.commands.push(Command::Lease { game: GameIndex(game), max, now_ms, reply });
        self.replies.push(Answer::Lease(rx));
        self
    }

    fn oldest(&mut self, game: u8) -> &mut Self {
        let (reply, rx) = oneshot::channel();
        self.commands.push(Command::Oldest { game: GameIndex(game), reply });
        self.replies.push(Answer::Oldest(rx));
        self
    }

    fn settle(&mut self, entry: &QueueEntry, action: SettleAction, now_ms: u64) -> &mut Self {
        let (reply, rx) = oneshot::channel();
        let (order_id, lease) = (entry.order.id, entry.lease);
        self.commands.push(Command::Settle { order_id, lease, action, now_ms, reply });
        self.replies.push(Answer::Settle(rx));
        self
    }

    fn requeue(&mut self, order_id: OrderId, now_ms: u64) -> &mut Self {
        let (reply, rx) = oneshot::channel();
        let deliver_by_ms = now_ms + 1_000_000;
        self.commands.push(Command::Requeue { order_id, now_ms, deliver_by_ms, reply });
        self.replies.push(Answer::Requeue(rx));
        self
    }

    fn record(&mut self, order_id: OrderId, delivered_at_ms: u64, now_ms: u64) -> &mut Self {
        let (reply, rx) = oneshot::channel();
        self.commands.push(Command::RecordDelivered { order_id, delivered_at_ms, now_ms, reply });
        self.replies.push(Answer::Record(rx));
        self
    }

    fn run(&mut self, ledger: &mut Ledger<FakeBackend>) -> Vec<Answered> {
        ledger.run_batch(self.commands.drain(..));
        self.replies
            .drain(..)
            .map(|answer| match answer {
                Answer::Oldest(mut rx) => Answered::Oldest(rx.try_recv().expect("answered")),
                Answer::Claim(mut rx) => Answered::Claim(rx.try_recv().expect("answered")),
                Answer::Lease(mut rx) => Answered::Lease(rx.try_recv().expect("answered")),
                Answer::Settle(mut rx) => Answered::Settle(rx.try_recv().expect("answered")),
                Answer::Requeue(mut rx) => Answered::Requeue(rx.try_recv().expect("answered")),
                Answer::Record(mut rx) => Answered::Record(rx.try_recv().expect("answered")),
            })
            .collect()
    }
}

fn accepted(answer: &Answered) -> Order {
    match answer {
        Answered::Claim(Ok(ClaimOutcome::Accepted(order))) => (**order).clone(),
        other => panic!("expected Accepted, got {other:?}"),
    }
}

fn leased(answer: Answered) -> Vec<QueueEntry> {
    match answer {
        Answered::Lease(Ok(entries)) => entries,
        other => panic!("expected a lease, got {other:?}"),
    }
}

#[test]
fn one_batch_of_claims_sees_itself_commits_once_and_leases_last() {
    let mut ledger = ledger();
    let commits = ledger.backend.commits;
    let answers = Batch::default()
        .lease(0, 10, NOW)
        .claim(claim_req(1, 1, 0, 2, 1, NOW))
        .claim(claim_req(1, 1, 0, 2, 1, NOW))
        .claim(claim_req(1, 2, 0, 2, 1, NOW))
        .claim(claim_req(2, 1, 0, 2, 1, NOW))
        .claim(claim_req(3, 1, 0, 2, 1, NOW))
        .run(&mut ledger);
    let first = accepted(&answers[1]);
    assert_eq!(answers[2], Answered::Claim(Ok(ClaimOutcome::Replayed(Box::new(first.clone())))));
    assert_eq!(answers[3], Answered::Claim(Ok(ClaimOutcome::LimitReached)));
    let second = accepted(&answers[4]);
    assert_eq!(answers[5], Answered::Claim(Ok(ClaimOutcome::OutOfStock)));
    assert_eq!(ledger.backend.commits, commits + 1, "one commit for the batch");
    // The lease came first in the batch but was decided after the commit: it sees both.
    let entries = leased(answers.into_iter().next().expect("lease answer"));
    let mut ids: Vec<OrderId> = entries.iter().map(|e| e.order.id).collect();
    let mut expected = vec![first.id, second.id];
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(entries.iter().all(|e| e.order.status == OrderStatus::Delivering));
    assert_eq!(ledger.stock[0], 2);
    assert_eq!(ledger.shared.stock_taken(GiftIndex(0)), 2);
    assert_eq!(ledger.games[0].depth, 2);
    assert_eq!(ledger.shared.games[0].leased.load(Ordering::Relaxed), 2);
}

#[test]
fn a_failed_commit_fails_every_claim_and_keeps_the_counters() {
    let mut ledger = ledger();
    Batch::default().claim(claim_req(1, 1, 0, 10, 1, NOW)).run(&mut ledger);
    ledger.backend.fail_next_commit = true;
    let answers = Batch::default()
        .claim(claim_req(2, 1, 0, 10, 1, NOW))
        .claim(claim_req(3, 1, 2, 10, 1, NOW))
        .lease(0, 10, NOW)
        .run(&mut ledger);
    for answer in &answers {
        let failed = matches!(
            answer,
            Answered::Claim(Err(StoreError::Unavailable(_)))
                | Answered::Lease(Err(StoreError::Unavailable(_)))
        );
        assert!(failed, "{answer:?}");
    }
    assert_eq!(ledger.stock, vec![1, 0, 0]);
    assert_eq!(ledger.games[0].depth, 1);
    assert_eq!(ledger.backend.space(Space::Orders).count(), 1);
}

#[test]
fn finish_is_exactly_once_even_within_one_batch_and_recovery_matches() {
    let mut ledger = ledger();
    Batch::default()
        .claim(claim_req(1, 1, 0, 10, 1, NOW))
        .claim(claim_req(2, 1, 2, 10, 1, NOW))
        .run(&mut ledger);
    let entries = leased(Batch::default().lease(0, 10, NOW + 1).run(&mut ledger).remove(0));
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let answers = Batch::default()
        .settle(entry, SettleAction::Finish(DELIVERED), NOW + 2)
        .settle(entry, SettleAction::Finish(DELIVERED), NOW + 3)
        .run(&mut ledger);
    match &answers[0] {
        Answered::Settle(Ok(Settled::Applied(order))) => {
            assert_eq!(order.status, OrderStatus::Delivered);
            assert_eq!(order.delivered_at_ms, Some(NOW + 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(answers[1], Answered::Settle(Ok(Settled::NotLeased)));
    assert_eq!(ledger.backend.space(Space::Sent).count(), 1);
    assert_eq!(ledger.games[0].depth, 0);
    assert_eq!(ledger.games[1].depth, 1);

    // A restart rebuilds the same counters and queues from the disk alone.
    let games = ledger.games.clone();
    let stock = ledger.stock.clone();
    let incarnation = ledger.incarnation;
    let restarted = ledger_on(std::mem::take(&mut ledger.backend));
    assert_eq!(restarted.stock, stock);
    assert_eq!(restarted.games[1], games[1]);
    assert_eq!(restarted.games[0].depth, 0);
    assert_eq!(restarted.incarnation, incarnation + 1);
}

#[test]
fn settlements_are_not_fsynced_and_a_crash_that_loses_them_only_requeues() {
    let mut ledger = ledger();
    let answers = Batch::default().claim(claim_req(1, 1, 0, 10, 1, NOW)).run(&mut ledger);
    let order = accepted(&answers[0]);
    assert_eq!(ledger.backend.last_durability, Some(Durability::Synced));
    let fsyncs = ledger.shared.fsyncs.load(Ordering::Relaxed);
    let entries = leased(Batch::default().lease(0, 10, NOW + 1).run(&mut ledger).remove(0));
    // The workers' usual batch: a finish and the next lease.
    let answers = Batch::default()
        .settle(&entries[0], SettleAction::Finish(DELIVERED), NOW + 2)
        .lease(0, 10, NOW + 2)
        .oldest(0)
        .run(&mut ledger);
    assert!(matches!(answers[0], Answered::Settle(Ok(Settled::Applied(_)))));
    assert_eq!(ledger.backend.last_durability, Some(Durability::Buffered));
    assert_eq!(ledger.shared.fsyncs.load(Ordering::Relaxed), fsyncs, "no fsync for a finish");
    assert_eq!(ledger.games[0].depth, 0);

    // The crash loses the finish whole: the order is queued again, as before its lease, and a
    // new lease hands out the same order (the same serial for the game).
    ledger.backend.crash();
    let mut restarted = ledger_on(std::mem::take(&mut ledger.backend));
    assert_eq!(restarted.games[0].depth, 1);
    assert_eq!(restarted.backend.space(Space::Sent).count(), 0);
    let again = leased(Batch::default().lease(0, 10, NOW + 3).run(&mut restarted).remove(0));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].order.id, order.id);

    // A batch holding any claim is synced, settlements included; nothing is lost after it.
    let answers = Batch::default()
        .settle(&again[0], SettleAction::Finish(DELIVERED), NOW + 4)
        .claim(claim_req(2, 1, 0, 10, 1, NOW + 4))
        .run(&mut restarted);
    assert!(matches!(answers[0], Answered::Settle(Ok(Settled::Applied(_)))));
    assert_eq!(restarted.backend.last_durability, Some(Durability::Synced));
    restarted.backend.crash();
    let recovered = ledger_on(std::mem::take(&mut restarted.backend));
    assert_eq!(recovered.games[0].depth, 1, "the second claim's entry only");
    assert_eq!(recovered.backend.space(Space::Sent).count(), 1);
}

#[test]
fn cursor_skips_past_delivered_entries_and_is_lowered_by_early_inserts() {
    let mut ledger = ledger();
    for user in 0..5 {
        Batch::default().claim(claim_req(user, 1, 0, 10, 1, NOW + user * 10)).run(&mut ledger);
    }
    let entries = leased(Batch::default().lease(0, 2, NOW + 100).run(&mut ledger).remove(0));
    assert_eq!(entries.len(), 2);
    assert_eq!(ledger.games[0].cursor_ms, NOW + 20, "at the first entry not taken");
    for entry in &entries {
        Batch::default().settle(entry, SettleAction::Finish(DELIVERED), NOW + 101).run(&mut ledger);
    }
    let entries = leased(Batch::default().lease(0, 10, NOW + 100).run(&mut ledger).remove(0));
    assert_eq!(entries.len(), 3);
    assert_eq!(ledger.games[0].cursor_ms, NOW + 101, "everything due is taken");
    // A claim stamped earlier (a caller's clock behind) lowers the cursor: never lost.
    Batch::default().claim(claim_req(9, 1, 0, 10, 1, NOW - 5)).run(&mut ledger);
    assert_eq!(ledger.games[0].cursor_ms, NOW - 5);
    let late = leased(Batch::default().lease(0, 10, NOW + 100).run(&mut ledger).remove(0));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].order.ready_at_ms, Some(NOW - 5));
    // Nothing due: the cursor moves past `now`.
    for entry in entries.iter().chain(&late) {
        Batch::default()
            .settle(entry, SettleAction::Finish(FinalState::Expired), NOW + 200)
            .run(&mut ledger);
    }
    assert!(leased(Batch::default().lease(0, 10, NOW + 300).run(&mut ledger).remove(0)).is_empty());
    assert_eq!(ledger.games[0].cursor_ms, NOW + 301);
    assert_eq!(ledger.games[0].depth, 0);
}

/// A lease that never ends does not hold lease scans (or the oldest-waiting query) back; a
/// release makes its entry leasable again at its old position.
#[test]
fn a_stuck_lease_does_not_pin_the_cursor_and_a_release_rewinds_it() {
    let mut ledger = ledger();
    for user in 0..4 {
        Batch::default().claim(claim_req(user, 1, 0, 10, 1, NOW + user)).run(&mut ledger);
    }
    let stuck = leased(Batch::default().lease(0, 1, NOW + 10).run(&mut ledger).remove(0));
    assert_eq!(stuck[0].order.ready_at_ms, Some(NOW));
    let rest = leased(Batch::default().lease(0, 10, NOW + 10).run(&mut ledger).remove(0));
    assert_eq!(rest.len(), 3);
    for entry in &rest {
        Batch::default().settle(entry, SettleAction::Finish(DELIVERED), NOW + 11).run(&mut ledger);
    }
    assert_eq!(ledger.games[0].cursor_ms, NOW + 11, "past the stuck lease");
    assert_eq!(Batch::default().oldest(0).run(&mut ledger), vec![Answered::Oldest(Ok(None))]);
    // Released (a batch that writes nothing): due again from its old position.
    Batch::default().settle(&stuck[0], SettleAction::Release, NOW + 12).run(&mut ledger);
    assert_eq!(ledger.games[0].cursor_ms, NOW);
    assert_eq!(Batch::default().oldest(0).run(&mut ledger), vec![Answered::Oldest(Ok(Some(NOW)))]);
    let again = leased(Batch::default().lease(0, 10, NOW + 12).run(&mut ledger).remove(0));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].order.id, stuck[0].order.id);
}

proptest! {
    /// Any sequence of batches equals running the commands one by one, and the committed
    /// counters always equal the fake disk (a failing commit ends the run).
    #[test]
    fn batches_equal_sequential_decisions(
        batches in prop::collection::vec(
            prop::collection::vec((0u64..6, 0usize..3), 1..20), 1..12),
        limit in 0u32..4,
        budget in 0u64..40,
        fail_at in prop::option::of(0usize..12),
    ) {
        let mut ledger = ledger();
        let model = crate::MemoryStore::new();
        for (number, batch) in batches.iter().enumerate() {
            let requests: Vec<(u64, Channel)> =
                batch.iter().map(|(user, channel)| (*user, Channel::ALL[*channel])).collect();
            let fail = fail_at == Some(number);
            ledger.backend.fail_next_commit = fail;
            let results = run_grants(&mut ledger, &requests, limit, budget);
            // A batch of rejections commits nothing, so the injected failure may be unused.
            ledger.backend.fail_next_commit = false;
            if fail && ledger.failed.is_some() {
                prop_assert!(results.iter().all(|r| r.is_err()));
                break;
            }
            for ((user, channel), result) in requests.iter().zip(results) {
                let expected = model.decide(GrantRequest { user: *user, channel: *channel, per_user_limit: limit, budget });
                prop_assert_eq!(result, expected);
            }
            prop_assert_eq!(ledger.granted, budgets(&ledger.backend));
        }
        prop_assert_eq!(ledger.granted, budgets(&ledger.backend));
        for channel in Channel::ALL {
            let rows: u64 = ledger.backend.space(Space::Grants)
                .filter(|(key, _)| key[8] == layout::channel_code(channel))
                .map(|(key, count)| {
                    let key: GrantKey = key.as_slice().try_into().expect("9-byte key");
                    u64::from(layout::decode_count(&key, count).expect("count"))
                })
                .sum();
            prop_assert_eq!(rows, ledger.granted[channel_index(channel)]);
        }
    }
}

/// Synced commits land in the bucket whose bound is the first at or above their duration; the
/// last bucket takes everything over 50 ms, and the maximum is kept in microseconds.
#[test]
fn synced_commit_durations_fill_their_buckets_at_the_bounds() {
    let shared = Shared::default();
    for us in [0, 1_000, 1_001, 5_000, 50_000, 50_001, 3_600_000_000] {
        shared.record_synced_commit(Duration::from_micros(us));
    }
    let counts: Vec<u64> =
        shared.synced_commits_by_ms.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts, [2, 1, 1, 0, 0, 1, 2]);
    assert_eq!(shared.synced_commit_max_us.load(Ordering::Relaxed), 3_600_000_000);
}

mod differential;
