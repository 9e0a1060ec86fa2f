//! A pacer slot as a value, so that its end is said once. The pacer counts every reserved slot
//! in its window until it ends: unused (nothing was sent, so nothing can arrive) or answered
//! (the send leaves the window a second after its answer). A worker gives up a reserved slot at
//! many points (stop, pause, hold, deadline); with a guard each of them simply drops it.

use std::sync::Arc;

use crate::game::GameShared;
use crate::pacer::Slot;

/// A reserved slot not sent yet. Dropped, it is handed back as unused; [`ReservedSlot::send`]
/// turns it into the slot of a call.
pub(crate) struct ReservedSlot {
    /// `None` once sent.
    game: Option<Arc<GameShared>>,
    at_us: u64,
}

impl ReservedSlot {
    /// Reserves the game's next slot, or `None` when its window is full of sends still waiting
    /// for their answers (ask again after the next answer).
    pub(crate) fn reserve(game: &Arc<GameShared>) -> Option<ReservedSlot> {
        let now_us = game.clock.monotonic_us();
        match game.control().pacer.reserve(now_us) {
            Slot::AtUs(at_us) => Some(ReservedSlot { game: Some(game.clone()), at_us }),
            Slot::AfterAnAnswer => None,
        }
    }

    /// When the send may go (monotonic µs).
    pub(crate) fn at_us(&self) -> u64 {
        self.at_us
    }

    /// The send goes out on this slot: from now on it ends with the call's answer.
    pub(crate) fn send(mut self) -> SentSlot {
        let game = self.game.take().expect("a slot is sent at most once");
        SentSlot { game }
    }
}

impl Drop for ReservedSlot {
    fn drop(&mut self) {
        if let Some(game) = &self.game {
            game.control().pacer.unused();
        }
    }
}

/// The slot of a call on its way. It ends when dropped: answered, given up waiting for, or cut
/// short by a crash of the dispatcher — in each case the send has arrived if it ever will (as
/// far as we can know), and it leaves the pacer's window a second from then.
pub(crate) struct SentSlot {
    game: Arc<GameShared>,
}

impl SentSlot {
    /// The call got its answer (or was given up waiting for).
    pub(crate) fn answered(self) {}
}

impl Drop for SentSlot {
    fn drop(&mut self) {
        let now_us = self.game.clock.monotonic_us();
        self.game.control().pacer.answered(now_us);
        self.game.answer.notify_one();
    }
}
