//! Sharing the games with other worker processes: a game's worker sends only while this
//! process holds the game's lease ([`hongbao_queue::GameLeases`], which explains why a lease and
//! not a shared rate limiter), so however many workers run, each game is paced by one pacer.
//!
//! Safety against two holders' calls sharing one of the game's seconds rests on two waits:
//! - a holder stops sending before the lease store would let anyone else take the game: its own
//!   deadline is counted from *before* it asked (the store's TTL starts later) and ends
//!   `ttl / 3` early;
//! - a worker that newly acquired a game (someone else may have held it until just now) waits
//!   out one pacing window plus the game's longest call before its first send, so the previous
//!   holder's last calls have reached the game and left its window.
//!
//! The keeper also carries the operators' pauses between workers (`apply_shared_pauses`).
//!
//! Without sharing (one embedded node) there is no keeper and every game's window stays open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hongbao_clock::SharedClock;
use hongbao_queue::{GameLeases, Held};
use tokio::sync::watch;

use crate::game::GameShared;

/// Default lifetime of a game's lease without renewal. Renewed every third of it, so one lost
/// renewal costs nothing and two stop the sends.
pub const GAME_LEASE_TTL_MS_DEFAULT: u64 = 3_000;
/// Shortest lease accepted: renewals every third of it must fit in the lease store's round trip.
pub const GAME_LEASE_TTL_MS_MIN: u64 = 300;
/// Longest a stopping keeper spends giving its leases back (see [`keep`]).
pub const RELEASE_AT_STOP_MS: u64 = 1_000;
/// How soon a worker without a game's lease looks again whether it may send (the keeper also
/// wakes it when the lease changes).
const NOT_HELD_RECHECK_US: u64 = 250_000;

/// How a dispatcher shares its games with the other worker processes of the campaign.
#[derive(Clone)]
pub struct SharedGames {
    pub leases: Arc<dyn GameLeases>,
    /// This process's name in the leases; unique per process (e.g. host, pid and a random part).
    pub holder: String,
    /// A lease's lifetime without renewal, at least [`GAME_LEASE_TTL_MS_MIN`].
    pub lease_ttl_ms: u64,
}

impl std::fmt::Debug for SharedGames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGames")
            .field("holder", &self.holder)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .finish_non_exhaustive()
    }
}

/// When this process may send to one game, in monotonic µs: from `from_us` until `until_us`.
pub(crate) struct SendWindow {
    from_us: AtomicU64,
    until_us: AtomicU64,
}

impl SendWindow {
    /// Open for good: the game is not shared.
    pub(crate) fn open() -> Self {
        Self { from_us: AtomicU64::new(0), until_us: AtomicU64::new(u64::MAX) }
    }

    /// Closed until a lease opens it.
    pub(crate) fn close(&self) {
        self.until_us.store(0, Ordering::Release);
    }

    /// How long to wait before a send may go, or `None` when it may go now.
    pub(crate) fn wait_us(&self, now_us: u64) -> Option<u64> {
        let from_us = self.from_us.load(Ordering::Acquire);
        let until_us = self.until_us.load(Ordering::Acquire);
        if now_us >= until_us {
            Some(NOT_HELD_RECHECK_US)
        } else if now_us < from_us {
            Some(from_us - now_us)
        } else {
            None
        }
    }

    /// Whether this process holds the game's lease now (sending or waiting out the handover).
    pub(crate) fn held(&self, now_us: u64) -> bool {
        now_us < self.until_us.load(Ordering::Acquire)
    }
}

/// Holds and renews every game's lease until `stop`, then gives them up.
pub(crate) async fn keep(
    shared: SharedGames,
    games: Arc<[Arc<GameShared>]>,
    handover_quiet_ms: u64,
    clock: SharedClock,
    mut stop: watch::Receiver<bool>,
) {
    let renew_every_ms = shared.lease_ttl_ms / 3;
    loop {
        // A round asks the lease store once per game; a store that is gone makes each ask wait
        // out its reconnection attempts, so the round, not only the pause, gives way to stop.
        let round = async {
            apply_shared_pauses(&shared, &games).await;
            for game in games.iter() {
                hold_once(&shared, game, handover_quiet_ms, &clock).await;
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            () = round => {}
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            () = clock.sleep_ms(renew_every_ms) => {}
        }
    }
    for game in games.iter() {
        game.send_window.close();
    }
    // Releasing only lets the next holder start sooner: without it the leases lapse within
    // their TTL. So it gets a bounded time, and a store that is gone cannot hold up the stop.
    let release = async {
        for game in games.iter() {
            if let Err(error) = shared.leases.release(game.index, &shared.holder).await {
                tracing::warn!(game = %game.id, %error, "could not release the game's lease; it expires on its own");
            }
        }
    };
    tokio::select! {
        () = release => {}
        () = clock.sleep_ms(RELEASE_AT_STOP_MS) => {
            tracing::warn!("game leases not all released in {RELEASE_AT_STOP_MS} ms; they expire on their own");
        }
    }
}

/// Takes on the operators' pauses every worker shares (set through any worker's
/// `Dispatcher::set_paused`). When they cannot be read, the pauses stay as they are.
async fn apply_shared_pauses(shared: &SharedGames, games: &[Arc<GameShared>]) {
    let paused = match shared.leases.paused().await {
        Ok(paused) => paused,
        Err(error) => {
            tracing::warn!(%error, "could not read the shared pauses");
            return;
        }
    };
    for game in games {
        let want = paused.contains(&game.index);
        game.paused.send_if_modified(|now| std::mem::replace(now, want) != want);
    }
}

/// One hold or renewal of one game's lease, and what it means for the game's send window.
async fn hold_once(
    shared: &SharedGames,
    game: &GameShared,
    handover_quiet_ms: u64,
    clock: &SharedClock,
) {
    let ttl_ms = shared.lease_ttl_ms;
    let asked_us = clock.monotonic_us();
    let until_us = asked_us.saturating_add((ttl_ms - ttl_ms / 3).saturating_mul(1000));
    let window = &game.send_window;
    let was_held = window.held(asked_us);
    match shared.leases.hold(game.index, &shared.holder, ttl_ms).await {
        Ok(Held::Renewed) => window.until_us.store(until_us, Ordering::Release),
        Ok(Held::Acquired) => {
            let quiet_us = handover_quiet_ms
                .saturating_add(game.call_guard.as_millis() as u64)
                .saturating_mul(1000);
            let from_us = clock.monotonic_us().saturating_add(quiet_us);
            window.from_us.store(from_us, Ordering::Release);
            window.until_us.store(until_us, Ordering::Release);
            tracing::info!(game = %game.id, holder = %shared.holder, "took the game's delivery lease");
        }
        Ok(Held::Elsewhere) => window.close(),
        // The window lapses on its own at its deadline; nothing to do but try again.
        Err(error) => tracing::warn!(game = %game.id, %error, "could not renew the game's lease"),
    }
    if was_held != window.held(clock.monotonic_us()) {
        game.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opens_after_its_start_and_lapses_at_its_deadline() {
        let window = SendWindow::open();
        assert_eq!(window.wait_us(5), None);
        window.close();
        assert_eq!(window.wait_us(5), Some(NOT_HELD_RECHECK_US));
        window.from_us.store(1_000, Ordering::Release);
        window.until_us.store(2_000, Ordering::Release);
        assert_eq!(window.wait_us(400), Some(600));
        assert!(window.held(400));
        assert_eq!(window.wait_us(1_000), None);
        assert_eq!(window.wait_us(2_000), Some(NOT_HELD_RECHECK_US));
        assert!(!window.held(2_000));
    }
}
