//! The writer's state and one batch of commands: decide each (the ledger's rules over the
//! batch's overlay), commit once, publish the committed counters, decide the deferred leases,
//! answer everyone. See the writer's module doc for the protocol and its failure rule.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hongbao_domain::OrderId;

use super::leases::{LEASE_COUNTER_BITS, LookAhead};
use super::protocol::{Deferred, Pending};
use super::recovery::{GameState, Recovered};
use super::staged::Staged;
use super::{Backend, Command, Durability, Shared};
use crate::claim::CampaignBinding;
use crate::embedded::known::Known;
use crate::ledger::{self, Lease};
use crate::{CHANNELS, StoreError};

/// The ledger state owned by the writer thread.
pub(crate) struct Ledger<B> {
    pub(super) backend: B,
    pub(super) binding: Arc<CampaignBinding>,
    /// Committed granted-so-far per channel: equal to the `counters` rows on disk.
    pub(super) granted: [u64; CHANNELS],
    /// Committed taken per bound gift.
    pub(super) stock: Vec<u64>,
    /// Committed per bound game.
    pub(super) games: Vec<GameState>,
    /// This batch's view of `games`.
    pub(super) tentative_games: Vec<GameState>,
    pub(super) leases: HashMap<OrderId, Lease>,
    /// Leases held per bound game.
    pub(super) leased: Vec<u64>,
    /// Per bound game.
    pub(super) look_ahead: Vec<LookAhead>,
    pub(super) incarnation: u64,
    pub(super) next_lease: u64,
    pub(super) shared: Arc<Shared>,
    /// The order ids and (user, gift) counts the store may hold (see `known`).
    pub(super) known: Arc<Known>,
    /// Set by the first failed commit; from then on every command fails with it.
    pub(super) failed: Option<StoreError>,
    pub(super) staged: Staged,
    pending: Vec<Pending>,
    deferred: Vec<Deferred>,
}

impl<B: Backend> Ledger<B> {
    pub fn new(
        backend: B,
        binding: Arc<CampaignBinding>,
        recovered: Recovered,
        shared: Arc<Shared>,
        known: Arc<Known>,
    ) -> Self {
        assert_eq!(recovered.stock.len(), binding.gifts());
        assert_eq!(recovered.games.len(), binding.games());
        assert!(recovered.incarnation < 1 << (64 - LEASE_COUNTER_BITS), "incarnations fit");
        Self {
            backend,
            leased: vec![0; binding.games()],
            look_ahead: (0..binding.games()).map(|_| LookAhead::default()).collect(),
            binding,
            granted: recovered.granted,
            stock: recovered.stock,
            tentative_games: recovered.games.clone(),
            games: recovered.games,
            leases: HashMap::new(),
            incarnation: recovered.incarnation,
            next_lease: 0,
            shared,
            known,
            failed: None,
            staged: Staged::default(),
            pending: Vec::new(),
            deferred: Vec::new(),
        }
    }

    /// Decide, commit once, answer all. See the module doc.
    pub fn run_batch(&mut self, commands: impl IntoIterator<Item = Command>) {
        self.staged.clear();
        self.pending.clear();
        self.tentative_games.clone_from(&self.games);
        let mut batch_len = 0u64;
        let mut durability = Durability::Buffered;
        for command in commands {
            batch_len += 1;
            if command.durability() == Durability::Synced {
                durability = Durability::Synced;
            }
            self.decide(command);
        }
        self.shared.commands.fetch_add(batch_len, Ordering::Relaxed);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.batch_len_max.fetch_max(batch_len, Ordering::Relaxed);
        self.commit(durability, batch_len);
        self.answer_deferred();
        for pending in self.pending.drain(..) {
            pending.send();
        }
    }

    /// Decides one command against the batch's overlay (or defers it, for a read-only queue
    /// command), keeping its answer until the commit.
    fn decide(&mut self, command: Command) {
        let pending = match command {
            Command::Lease { game, max, now_ms, reply } => {
                self.deferred.push(Deferred::Lease { game, max, now_ms, reply });
                return;
            }
            Command::Oldest { game, reply } => {
                self.deferred.push(Deferred::Oldest { game, reply });
                return;
            }
            Command::Grant { req, reply } => Pending::Grant {
                reply,
                result: self.unless_failed(|l| ledger::grant::grant(l, req)),
            },
            Command::Claim { claim, reply } => {
                let (req, prepared) = &*claim;
                let result = self.unless_failed(|l| ledger::claim::claim(l, req, prepared));
                Pending::Claim { reply, result }
            }
            Command::Settle { order_id, lease, action, now_ms, reply } => Pending::Settle {
                reply,
                result: self
                    .unless_failed(|l| ledger::lease::settle(l, order_id, lease, action, now_ms)),
            },
            Command::Requeue { order_id, now_ms, deliver_by_ms, reply } => Pending::Requeue {
                reply,
                result: self.unless_failed(|l| {
                    let binding = Arc::clone(&l.binding);
                    ledger::repair::requeue(l, &binding, order_id, now_ms, deliver_by_ms)
                }),
            },
            Command::RecordDelivered { order_id, delivered_at_ms, now_ms, reply } => {
                Pending::Record {
                    reply,
                    result: self.unless_failed(|l| {
                        let binding = Arc::clone(&l.binding);
                        let (at_ms, id) = (delivered_at_ms, order_id);
                        ledger::repair::record_delivered(l, &binding, id, at_ms, now_ms)
                    }),
                }
            }
        };
        self.pending.push(pending);
    }

    /// Runs `decide` unless a commit has failed: then every command fails with that error.
    fn unless_failed<T>(
        &mut self,
        decide: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => decide(self),
        }
    }

    /// Writes the batch's staged effects as one atomic commit and publishes them, or fails every
    /// answer of the batch and stops the writer.
    fn commit(&mut self, durability: Durability, batch_len: u64) {
        // A batch of rejections and reads only writes nothing: its answers rest on committed
        // state (its releases still lower cursors).
        if self.staged.is_empty() {
            if self.failed.is_none() {
                self.publish();
            }
            return;
        }
        if durability == Durability::Synced {
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let started = Instant::now();
        self.staged.write_to(&self.binding, &self.known, &mut self.backend);
        let committed = self.backend.commit(durability);
        if durability == Durability::Synced {
            // What this batch's callers waited for, past their batch's turn: observability
            // only (`/admin/v1/store`), never a decision.
            self.shared.record_synced_commit(started.elapsed());
        }
        match committed {
            Ok(()) => self.publish(),
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

    /// After a successful commit: the staged counters become the committed ones.
    fn publish(&mut self) {
        for (index, staged) in self.staged.budgets.iter().enumerate() {
            if let Some(granted) = *staged {
                assert!(granted >= self.granted[index], "budget counters only grow");
                self.granted[index] = granted;
                self.shared.granted[index].store(granted, Ordering::Release);
            }
        }
        for (gift, taken) in &self.staged.stock {
            let slot = usize::from(gift.0);
            assert!(*taken > self.stock[slot], "stock taken only grows");
            self.stock[slot] = *taken;
            self.shared.stock[slot].store(*taken, Ordering::Release);
        }
        self.games.clone_from(&self.tentative_games);
        for (state, shared) in self.games.iter().zip(self.shared.games.iter()) {
            shared.depth.store(state.depth, Ordering::Release);
        }
    }

    /// Leases and oldest-entry queries, against the state just committed.
    fn answer_deferred(&mut self) {
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Lease { game, max, now_ms, reply } => {
                    let _ = reply.send(self.unless_failed(|l| l.lease_due(game, max, now_ms)));
                }
                Deferred::Oldest { game, reply } => {
                    let _ = reply.send(self.unless_failed(|l| l.oldest(game)));
                }
            }
        }
    }
}
