//! The single writer: group commit of ledger commands.
//!
//! One std thread owns all mutable ledger state. It takes the first [`Command`] from the bounded
//! queue, drains up to `batch_max - 1` more without waiting, decides every command in arrival
//! order against *staged* state (committed counters plus this batch's effects), writes the
//! batch's effects as one atomic, fsynced [`Backend::commit`], and only then answers every
//! command. Decisions within a batch see earlier commands of the same batch, so the batch is
//! equivalent to running its commands one by one; one fsync pays for all of them.
//!
//! Failure: if the commit fails, every command of the batch gets `StoreError::Unavailable`, the
//! staged state is thrown away (committed counters never included it), and the writer stops
//! deciding: every later command gets the same error. fjall poisons a database whose journal
//! write or fsync failed, and the only safe recovery is a restart, which reloads the counters
//! from disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::layout::{GrantKey, grant_key};
use crate::{CHANNELS, Channel, GrantOutcome, GrantRequest, StoreError, channel_index};

/// A request to the writer. Each variant carries its reply channel; the writer answers after the
/// batch holding it is durable (or failed).
#[derive(Debug)]
pub(crate) enum Command {
    Grant { req: GrantRequest, reply: oneshot::Sender<Result<GrantOutcome, StoreError>> },
    // The claim issue adds `Claim { req: ClaimRequest, reply: oneshot::Sender<…> }` here; see
    // the module doc of `embedded`.
}

/// Everything a batch writes, staged in memory until its single commit. Bounded by the batch:
/// at most one entry per command.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The final count of every (user, channel) granted to in this batch: one row per key,
    /// however many of the batch's grants hit it.
    pub grants: HashMap<GrantKey, u32>,
    /// The new granted-so-far of every channel that granted in this batch.
    pub budgets: [Option<u64>; CHANNELS],
}

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.budgets.iter().all(Option::is_none)
    }

    fn clear(&mut self) {
        self.grants.clear();
        self.budgets = [None; CHANNELS];
    }
}

/// The writer's narrow view of the disk, so the batching and rollback logic is tested with an
/// in-memory fake (including failing commits) and runs unchanged on fjall.
pub(crate) trait Backend {
    /// The committed count of a (user, channel); 0 when absent.
    fn user_count(&mut self, key: &GrantKey) -> Result<u32, StoreError>;
    /// Write `staged` atomically and durably (fsync) — all of it or, on `Err`, none of it that
    /// the writer will rely on.
    fn commit(&mut self, staged: &Staged) -> Result<(), StoreError>;
}

/// Counters shared with the store handle: what has been committed, and how.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Committed (durable) grants per channel, published after each successful commit.
    pub granted: [AtomicU64; CHANNELS],
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub commit_failures: AtomicU64,
    pub batch_len_max: AtomicU64,
}

impl Shared {
    pub fn with_granted(granted: [u64; CHANNELS]) -> Self {
        let shared = Self::default();
        for (slot, value) in shared.granted.iter().zip(granted) {
            slot.store(value, Ordering::Relaxed);
        }
        shared
    }

    pub fn granted(&self, channel: Channel) -> u64 {
        self.granted[channel_index(channel)].load(Ordering::Acquire)
    }
}

/// An answer decided but not yet sent: it goes out after the batch's commit.
enum Pending {
    Grant {
        reply: oneshot::Sender<Result<GrantOutcome, StoreError>>,
        result: Result<GrantOutcome, StoreError>,
    },
}

impl Pending {
    fn fail(&mut self, error: &StoreError) {
        match self {
            Pending::Grant { result, .. } => *result = Err(error.clone()),
        }
    }

    fn send(self) {
        match self {
            // The caller may have gone away (its future dropped); the grant stands regardless.
            Pending::Grant { reply, result } => {
                let _ = reply.send(result);
            }
        }
    }
}

/// The ledger state owned by the writer thread.
pub(crate) struct Ledger<B> {
    backend: B,
    /// Committed granted-so-far per channel: equal to the `counters` rows on disk.
    granted: [u64; CHANNELS],
    shared: Arc<Shared>,
    /// Set by the first failed commit; from then on every command fails with it.
    failed: Option<StoreError>,
    staged: Staged,
    pending: Vec<Pending>,
}

impl<B: Backend> Ledger<B> {
    pub fn new(backend: B, granted: [u64; CHANNELS], shared: Arc<Shared>) -> Self {
        Self {
            backend,
            granted,
            shared,
            failed: None,
            staged: Staged::default(),
            pending: Vec::new(),
        }
    }

    /// Decide, commit once, answer all. See the module doc.
    pub fn run_batch(&mut self, commands: impl IntoIterator<Item = Command>) {
        self.staged.clear();
        self.pending.clear();
        let mut tentative = self.granted;
        for command in commands {
            match command {
                Command::Grant { req, reply } => {
                    let result = match &self.failed {
                        Some(error) => Err(error.clone()),
                        None => {
                            stage_grant(&mut self.backend, &mut self.staged, &mut tentative, req)
                        }
                    };
                    self.pending.push(Pending::Grant { reply, result });
                }
            }
        }

        let batch_len = self.pending.len() as u64;
        self.shared.commands.fetch_add(batch_len, Ordering::Relaxed);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.batch_len_max.fetch_max(batch_len, Ordering::Relaxed);

        // A batch of rejections only writes nothing: its answers rest on committed state.
        if !self.staged.is_empty() {
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            match self.backend.commit(&self.staged) {
                Ok(()) => {
                    for (index, value) in tentative.iter().enumerate() {
                        assert!(*value >= self.granted[index], "budget counters only grow");
                        self.shared.granted[index].store(*value, Ordering::Release);
                    }
                    self.granted = tentative;
                }
                Err(error) => {
                    tracing::error!(
                        %error,
                        batch_len,
                        "ledger commit failed; the store refuses writes until restarted"
                    );
                    self.shared.commit_failures.fetch_add(1, Ordering::Relaxed);
                    for pending in &mut self.pending {
                        pending.fail(&error);
                    }
                    self.failed = Some(error);
                }
            }
        }

        for pending in self.pending.drain(..) {
            pending.send();
        }
    }
}

/// Decide one grant against staged state and stage its effects. A read error fails this
/// request only; it staged nothing.
fn stage_grant<B: Backend>(
    backend: &mut B,
    staged: &mut Staged,
    tentative: &mut [u64; CHANNELS],
    req: GrantRequest,
) -> Result<GrantOutcome, StoreError> {
    let index = channel_index(req.channel);
    if tentative[index] >= req.budget {
        return Ok(GrantOutcome::BudgetExhausted);
    }
    let key = grant_key(req.user, req.channel);
    let count = match staged.grants.get(&key) {
        Some(count) => *count,
        None => backend.user_count(&key)?,
    };
    if count >= req.per_user_limit {
        return Ok(GrantOutcome::UserLimitReached);
    }
    let serial = count + 1;
    tentative[index] += 1;
    assert!(serial <= req.per_user_limit && tentative[index] <= req.budget);
    staged.grants.insert(key, serial);
    staged.budgets[index] = Some(tentative[index]);
    Ok(GrantOutcome::Granted { serial })
}

/// The writer thread's body: runs until every sender is gone and the queue is drained, so the
/// commands accepted before shutdown are all answered.
pub(crate) fn run<B: Backend>(
    mut ledger: Ledger<B>,
    mut queue: mpsc::Receiver<Command>,
    batch_max: usize,
) {
    let mut batch = Vec::with_capacity(batch_max);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        ledger.run_batch(batch.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An in-memory disk whose next commit can be made to fail.
    #[derive(Default)]
    struct FakeBackend {
        rows: HashMap<GrantKey, u32>,
        budgets: [u64; CHANNELS],
        fail_next_commit: bool,
        commits: usize,
    }

    impl Backend for FakeBackend {
        fn user_count(&mut self, key: &GrantKey) -> Result<u32, StoreError> {
            Ok(self.rows.get(key).copied().unwrap_or(0))
        }

        fn commit(&mut self, staged: &Staged) -> Result<(), StoreError> {
            if std::mem::take(&mut self.fail_next_commit) {
                return Err(StoreError::Unavailable("injected fsync failure".into()));
            }
            self.commits += 1;
            self.rows.extend(staged.grants.iter().map(|(k, v)| (*k, *v)));
            for (index, value) in staged.budgets.iter().enumerate() {
                if let Some(value) = value {
                    self.budgets[index] = *value;
                }
            }
            Ok(())
        }
    }

    type Reply = oneshot::Receiver<Result<GrantOutcome, StoreError>>;

    fn grant(user: u64, channel: Channel, per_user_limit: u32, budget: u64) -> (Command, Reply) {
        let (reply, rx) = oneshot::channel();
        (Command::Grant { req: GrantRequest { user, channel, per_user_limit, budget }, reply }, rx)
    }

    fn ledger() -> Ledger<FakeBackend> {
        Ledger::new(FakeBackend::default(), [0; CHANNELS], Arc::new(Shared::default()))
    }

    fn run(
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
        let results = run(&mut ledger, &[(1, Channel::Swipe); 4], 3, 100);
        assert_eq!(
            results,
            vec![
                Ok(GrantOutcome::Granted { serial: 1 }),
                Ok(GrantOutcome::Granted { serial: 2 }),
                Ok(GrantOutcome::Granted { serial: 3 }),
                Ok(GrantOutcome::UserLimitReached),
            ]
        );
        assert_eq!(ledger.backend.commits, 1);
        assert_eq!(ledger.backend.rows[&grant_key(1, Channel::Swipe)], 3);
        assert_eq!(ledger.backend.budgets, [3, 0, 0]);
        assert_eq!(ledger.shared.fsyncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_batch_of_rejections_does_not_fsync() {
        let mut ledger = ledger();
        let results = run(&mut ledger, &[(1, Channel::Scan), (2, Channel::Scan)], 3, 0);
        assert_eq!(results, vec![Ok(GrantOutcome::BudgetExhausted); 2]);
        assert_eq!(ledger.shared.fsyncs.load(Ordering::Relaxed), 0);
        assert_eq!(ledger.shared.batches.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failed_commit_fails_the_whole_batch_rolls_back_and_stops_the_writer() {
        let mut ledger = ledger();
        run(&mut ledger, &[(1, Channel::Swipe)], 3, 100);
        ledger.backend.fail_next_commit = true;
        let results = run(
            &mut ledger,
            &[(1, Channel::Swipe), (2, Channel::Swipe), (3, Channel::Swipe)],
            1,
            100,
        );
        assert!(
            results.iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))),
            "{results:?}"
        );
        assert_eq!(ledger.granted, [1, 0, 0], "in-memory counters equal the disk's");
        assert_eq!(ledger.shared.granted(Channel::Swipe), 1);
        let later = run(&mut ledger, &[(9, Channel::Scan)], 3, 100);
        assert!(matches!(later[0], Err(StoreError::Unavailable(_))));
        assert_eq!(ledger.backend.commits, 1);
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
                let results = run(&mut ledger, &requests, limit, budget);
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
                prop_assert_eq!(ledger.granted, ledger.backend.budgets);
            }
            prop_assert_eq!(ledger.granted, ledger.backend.budgets);
            for channel in Channel::ALL {
                let rows: u64 = ledger.backend.rows.iter()
                    .filter(|(key, _)| key[8] == super::super::layout::channel_code(channel))
                    .map(|(_, count)| u64::from(*count)).sum();
                prop_assert_eq!(rows, ledger.granted[channel_index(channel)]);
            }
        }
    }
}
