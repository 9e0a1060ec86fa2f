//! Leases on the writer thread: finding due entries (the per-game cursor and look-ahead over the
//! queue keyspace), holding and ending leases, and the oldest-entry query. What leasing an entry
//! does is the ledger's rule (`ledger/lease.rs`); this is how the writer finds the entries.
//!
//! Leases are memory-only (see `crate::queue`), so they are kept here, never staged: a failed
//! commit does not roll them back, and a restart forgets them all.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hongbao_domain::{GameIndex, OrderId};

use super::{Backend, Ledger, Space};
use crate::StoreError;
use crate::embedded::layout;
use crate::ledger::{self, Lease};
use crate::queue::{LeaseId, QueueEntry};

/// Bits of a lease id below the incarnation.
pub(super) const LEASE_COUNTER_BITS: u32 = 40;

/// Entries one lease scan reads ahead per game. A scan's cost is mostly its set-up (a merge over
/// every memtable and segment of the queue keyspace), so reading a thousand entries once instead
/// of a pacer's hundred-millisecond share each time cut the draining worker's lease CPU several
/// times; 1,024 entries × 10 games is ~250 KiB. The unit tests use 3, so that their queues (and
/// the differential property test's) cross many look-ahead boundaries.
const LOOK_AHEAD_MAX: usize = if cfg!(test) { 3 } else { 1_024 };

/// Leasable entries of one game read by the last scan and not yet handed out: a cache of the
/// queue keyspace between the game's cursor and `covered_to_ms`. Any change that may put a
/// leasable entry inside that range clears it (clearing is always safe: the cursor never passes
/// an entry still in here, so the next scan finds them all again).
#[derive(Debug, Default)]
pub(crate) struct LookAhead {
    /// Sorted by key (due time, then id); every one leasable when read.
    entries: VecDeque<(u64, OrderId)>,
    /// The scan saw every leasable entry due before this (exclusive) and, when it stopped at its
    /// limit, some due at `covered_to_ms - 1`.
    covered_to_ms: u64,
    /// The scan stopped at its limit (more entries may be due at the last one's time).
    truncated: bool,
}

impl LookAhead {
    /// Forgets the entries if one due at `ready_at_ms` may belong among them.
    pub fn invalidate_from(&mut self, ready_at_ms: u64) {
        if !self.entries.is_empty() && ready_at_ms < self.covered_to_ms {
            self.entries.clear();
        }
    }
}

impl<B: Backend> Ledger<B> {
    /// Leases due entries of `game` against committed state (after the batch's commit).
    pub(super) fn lease_due(
        &mut self,
        game: GameIndex,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let slot = usize::from(game.0);
        let binding = Arc::clone(&self.binding);
        let game_id = binding.game_id(game).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game index {} is not bound", game.0))
        })?;
        let max = ledger::lease::lease_quota(max, self.leases.len());
        let due = self.take_due(slot, game_id, max, now_ms)?;
        let entries = due
            .into_iter()
            .filter_map(|(ready_at_ms, id)| {
                ledger::lease::lease_entry(self, game, game_id, ready_at_ms, id, now_ms)
            })
            .collect();
        self.shared.games[slot].leased.store(self.leased[slot], Ordering::Release);
        Ok(entries)
    }

    /// Takes up to `max` due entries of the game in `slot` out of its look-ahead, reading ahead
    /// as often as needed, and moves the game's cursor past them.
    fn take_due(
        &mut self,
        slot: usize,
        game_id: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<(u64, OrderId)>, StoreError> {
        let cursor_ms = self.games[slot].cursor_ms;
        if max == 0 || cursor_ms > now_ms {
            return Ok(Vec::new());
        }
        let mut due: Vec<(u64, OrderId)> = Vec::new();
        let mut scan_from_ms = cursor_ms;
        loop {
            if self.look_ahead[slot].entries.is_empty() {
                // Entries taken by this call are not in `leases` yet: a scan resuming at the
                // due time they share must not read them again.
                let taken: Vec<OrderId> = due
                    .iter()
                    .rev()
                    .take_while(|(ready_at_ms, _)| *ready_at_ms == scan_from_ms)
                    .map(|(_, id)| *id)
                    .collect();
                self.read_ahead(slot, game_id, scan_from_ms, now_ms, &taken)?;
            }
            let ahead = &mut self.look_ahead[slot];
            while due.len() < max
                && let Some(&(ready_at_ms, id)) = ahead.entries.front()
                && ready_at_ms <= now_ms
            {
                ahead.entries.pop_front();
                due.push((ready_at_ms, id));
            }
            // Every leasable entry before the first one still read ahead is taken now (an entry
            // skipped as damaged too: reconciliation reports it, scans need not revisit it).
            // With none left: a scan that stopped at its limit resumes at its last due time;
            // one that ran out of range took everything leasable before `covered_to_ms`.
            let resume_ms = match ahead.entries.front() {
                Some((ready_at_ms, _)) => *ready_at_ms,
                None if ahead.truncated => ahead.covered_to_ms - 1,
                None => ahead.covered_to_ms,
            };
            self.games[slot].cursor_ms = resume_ms;
            // Read on while this call wants more, none is left read ahead, and more may be due:
            // the last scan stopped at its limit or ended before `now_ms` (it ran at an earlier
            // lease).
            let more_may_be_due = ahead.truncated || ahead.covered_to_ms <= now_ms;
            if due.len() >= max || !ahead.entries.is_empty() || !more_may_be_due {
                return Ok(due);
            }
            scan_from_ms = resume_ms;
        }
    }

    /// Reads up to [`LOOK_AHEAD_MAX`] leasable entries of the game in `slot` due from
    /// `cursor_ms` to `now_ms` into its look-ahead (which is empty), leaving out `taken`.
    fn read_ahead(
        &mut self,
        slot: usize,
        game_id: &str,
        cursor_ms: u64,
        now_ms: u64,
        taken: &[OrderId],
    ) -> Result<(), StoreError> {
        let from = layout::queue_bound(game_id, cursor_ms);
        let to = match now_ms.checked_add(1) {
            Some(end) => layout::queue_bound(game_id, end),
            None => layout::queue_end(game_id),
        };
        let ahead = &mut self.look_ahead[slot];
        debug_assert!(ahead.entries.is_empty());
        let mut bad = None;
        let leases = &self.leases;
        let entries = &mut ahead.entries;
        self.backend.scan(
            Space::Queue,
            &from,
            &to,
            &mut |key| match layout::decode_queue_key(key) {
                Ok((_, ready_at_ms, id)) => {
                    if !leases.contains_key(&id) && !taken.contains(&id) {
                        entries.push_back((ready_at_ms, id));
                    }
                    entries.len() < LOOK_AHEAD_MAX
                }
                Err(error) => {
                    bad = Some(error);
                    false
                }
            },
        )?;
        if let Some(error) = bad {
            entries.clear();
            return Err(error);
        }
        ahead.truncated = ahead.entries.len() == LOOK_AHEAD_MAX;
        ahead.covered_to_ms = match ahead.entries.back() {
            Some((ready_at_ms, _)) if ahead.truncated => ready_at_ms.saturating_add(1),
            _ => now_ms.saturating_add(1),
        };
        Ok(())
    }

    /// The due time of `game`'s oldest entry that is not in flight (after the batch's commit).
    pub(super) fn oldest(&mut self, game: GameIndex) -> Result<Option<u64>, StoreError> {
        let binding = Arc::clone(&self.binding);
        let game_id = binding.game_id(game).ok_or_else(|| {
            StoreError::InvalidConfig(format!("game index {} is not bound", game.0))
        })?;
        let cursor_ms = self.games[usize::from(game.0)].cursor_ms;
        if cursor_ms == u64::MAX {
            return Ok(None);
        }
        let from = layout::queue_bound(game_id, cursor_ms);
        let (mut oldest, mut bad) = (None, None);
        let leases = &self.leases;
        self.backend.scan(Space::Queue, &from, &layout::queue_end(game_id), &mut |key| {
            match layout::decode_queue_key(key) {
                Ok((_, ready_at_ms, id)) if !leases.contains_key(&id) => {
                    oldest = Some(ready_at_ms);
                    false
                }
                Ok(_) => true,
                Err(error) => {
                    bad = Some(error);
                    false
                }
            }
        })?;
        bad.map_or(Ok(oldest), Err)
    }

    /// Holds a new lease on `id`'s entry; the game's published count follows at the end of the
    /// lease call.
    pub(super) fn take_lease(&mut self, id: OrderId, game: GameIndex, ready_at_ms: u64) -> LeaseId {
        let lease = LeaseId((self.incarnation << LEASE_COUNTER_BITS) | self.next_lease);
        self.next_lease += 1;
        assert!(self.next_lease < 1 << LEASE_COUNTER_BITS, "lease counter overflow");
        let previous = self.leases.insert(id, Lease { id: lease, game, ready_at_ms });
        assert!(previous.is_none(), "an entry is leased once at a time");
        self.leased[usize::from(game.0)] += 1;
        lease
    }

    /// Ends `id`'s lease, if held.
    pub(super) fn drop_lease(&mut self, id: &OrderId) -> Option<Lease> {
        let lease = self.leases.remove(id)?;
        let slot = usize::from(lease.game.0);
        self.leased[slot] -= 1;
        self.shared.games[slot].leased.store(self.leased[slot], Ordering::Release);
        Some(lease)
    }

    /// Ends `id`'s lease with its entry leasable again at its old position: scans must start
    /// there again.
    pub(super) fn return_lease(&mut self, id: &OrderId) {
        if let Some(lease) = self.drop_lease(id) {
            let slot = usize::from(lease.game.0);
            self.look_ahead[slot].invalidate_from(lease.ready_at_ms);
            let state = &mut self.tentative_games[slot];
            state.cursor_ms = state.cursor_ms.min(lease.ready_at_ms);
        }
    }
}
