//! What an opening reads back from disk before the writer starts: the committed counters, each
//! game's queue depth and cursor (counted from the queue's keys, so they cannot drift), this
//! opening's incarnation, and the Bloom filter of what the store holds.

use super::{Backend, Durability, Space};
use crate::claim::{CampaignBinding, ID_MAX_LEN};
use crate::embedded::known::Known;
use crate::embedded::layout;
use crate::{CHANNELS, Channel, StoreError, channel_index};

/// Per-game queue state kept by the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GameState {
    /// Entries in the queue (leased ones included).
    pub depth: u64,
    /// No entry that is not leased has a `ready_at_ms` below this: lease scans start here
    /// instead of at the queue's first key, skipping the tombstones of delivered entries — and
    /// the entries in flight, so a lease that never ends (a stuck call) cannot pin the scans to
    /// its position. Lowered by every entry that becomes leasable (insert, retry, release);
    /// raised by lease scans. `u64::MAX`: nothing leasable.
    pub cursor_ms: u64,
}

/// What a restart recovers from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub granted: [u64; CHANNELS],
    /// Taken per bound gift.
    pub stock: Vec<u64>,
    /// Per bound game.
    pub games: Vec<GameState>,
    /// This opening's number (persisted before the store answers anything).
    pub incarnation: u64,
}

/// Reads the counters and scans the queue (exact by construction: the depth is the number of
/// keys, not a counter that could drift), and durably counts this opening.
pub(crate) fn recover<B: Backend>(
    backend: &mut B,
    binding: &CampaignBinding,
) -> Result<Recovered, StoreError> {
    let mut granted = [0u64; CHANNELS];
    for channel in Channel::ALL {
        let key = layout::budget_key(channel);
        if let Some(bytes) = backend.get(Space::Counters, key.as_bytes())? {
            granted[channel_index(channel)] = layout::decode_budget(channel, bytes.as_ref())?;
        }
    }
    let mut stock = Vec::with_capacity(binding.gifts());
    for gift_id in binding.gift_ids() {
        let key = layout::stock_key(gift_id);
        stock.push(match backend.get(Space::Counters, key.as_bytes())? {
            Some(bytes) => layout::decode_u64(&key, bytes.as_ref())?,
            None => 0,
        });
    }
    let mut games = vec![GameState { depth: 0, cursor_ms: u64::MAX }; binding.games()];
    let mut unbound = 0u64;
    let mut bad = None;
    backend.scan(
        Space::Queue,
        &[],
        &[0xff; 512],
        &mut |key| match layout::decode_queue_key(key) {
            Ok((game_id, ready_at_ms, _)) => {
                match binding.game_index(game_id) {
                    Some(game) => {
                        let state = &mut games[usize::from(game.0)];
                        state.depth += 1;
                        state.cursor_ms = state.cursor_ms.min(ready_at_ms);
                    }
                    None => unbound += 1,
                }
                true
            }
            Err(error) => {
                bad = Some(error);
                false
            }
        },
    )?;
    if let Some(error) = bad {
        return Err(error);
    }
    if unbound > 0 {
        tracing::warn!(unbound, "queue entries of games the campaign no longer has are ignored");
    }
    let incarnation = match backend.get(Space::Counters, layout::INCARNATION_KEY.as_bytes())? {
        Some(bytes) => layout::decode_u64(layout::INCARNATION_KEY, bytes.as_ref())? + 1,
        None => 1,
    };
    backend.put(
        Space::Counters,
        layout::INCARNATION_KEY.as_bytes(),
        &layout::encode_u64(incarnation),
    );
    backend.commit(Durability::Synced)?;
    Ok(Recovered { granted, stock, games, incarnation })
}

/// Fills the filter of what the store holds from its order and (user, gift) keys: before the
/// writer starts, so that its "certainly absent" is true from the first command on. Sized for
/// the campaign's stock, or for the orders already held if that is more (a campaign file whose
/// stock was lowered; every order took one unit, so the stock counters count them).
pub(crate) fn known<B: Backend>(
    backend: &mut B,
    binding: &CampaignBinding,
    recovered: &Recovered,
) -> Result<Known, StoreError> {
    let held = recovered.stock.iter().fold(0u64, |sum, taken| sum.saturating_add(*taken));
    let mut bad = None;
    let known = Known::with_capacity(binding.stock_total().max(held));
    backend.scan(
        Space::Orders,
        &[],
        &[0xff; 17],
        &mut |key| match layout::decode_order_id(key) {
            Ok(id) => {
                known.insert_order(&id);
                true
            }
            Err(error) => {
                bad = Some(error);
                false
            }
        },
    )?;
    let end = [0xff; 8 + ID_MAX_LEN + 1];
    backend.scan(Space::UserGifts, &[], &end, &mut |key| {
        let Some((user, gift_id)) = key.split_first_chunk::<8>() else {
            bad = Some(StoreError::Corrupt(format!("a user_gifts key of {} bytes", key.len())));
            return false;
        };
        // A gift the campaign no longer has is never claimed again: nothing to look up.
        if let Some(gift) = std::str::from_utf8(gift_id).ok().and_then(|id| binding.gift_index(id))
        {
            known.insert_user_gift(u64::from_be_bytes(*user), gift);
        }
        true
    })?;
    match bad {
        Some(error) => Err(error),
        None => Ok(known),
    }
}
