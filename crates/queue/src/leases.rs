//! Who may deliver to which game when several worker processes share one queue.
//!
//! A game takes at most its capacity in any one second, whoever calls it. Each worker paces its
//! own calls (`hongbao-delivery`'s pacer); with several workers the pace must be global. Two
//! ways were weighed: a shared rate limiter (GCRA in Redis) consulted per call, and a lease that
//! gives each game to one worker at a time, whose own pacer then paces it. The lease is chosen:
//!
//! - the pacer already keeps a game under its capacity on its own (its busy back-off, its
//!   success-driven ramp, its hold after failures), and a second limiter per call would add one
//!   Redis round trip to every delivery and a second, disagreeing notion of "the last second";
//! - a shared limiter spaces the *grants*, but calls reach the game after network jitter, so
//!   grants spaced exactly can arrive bunched and break the game's one-second window; one caller
//!   per game does not have that problem;
//! - handing a game over is rare (a worker stops or dies), and the new holder waits out one
//!   window plus the longest call before its first send, so the two holders' calls never share
//!   one of the game's seconds (see `hongbao-delivery`'s `ownership`).
//!
//! The cost: one worker per game at a time. A game's capacity (hundreds to a few thousand calls
//! per second) is well within one worker's reach, so more workers add standby, not throughput.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use hongbao_clock::SharedClock;
use hongbao_domain::GameIndex;

use crate::QueueError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`GameLeases::hold`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// The holder held it already (nobody else held it since): extended.
    Renewed,
    /// Nobody held it: now the holder does. Someone else may have held it until just now.
    Acquired,
    /// Somebody else holds it.
    Elsewhere,
}

/// Leases of games to worker processes, shared by every worker of a campaign.
pub trait GameLeases: Send + Sync + 'static {
    /// Takes `game` for `holder` when nobody holds it, or extends it when `holder` does, for
    /// `ttl_ms` from now (the lease store's now).
    fn hold<'a>(
        &'a self,
        game: GameIndex,
        holder: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Held, QueueError>>;

    /// Gives `game` up if `holder` holds it (a clean stop: the next worker need not wait out
    /// the TTL).
    fn release<'a>(
        &'a self,
        game: GameIndex,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>>;
}

/// [`GameLeases`] in memory, on an injected clock: for tests of several dispatchers in one
/// process, and the reference the Redis adapter is tested against.
pub struct MemoryGameLeases {
    clock: SharedClock,
    /// Game → (holder, expiry in the clock's milliseconds). At most one entry per game.
    held: Mutex<HashMap<GameIndex, (String, u64)>>,
}

impl MemoryGameLeases {
    pub fn new(clock: SharedClock) -> Self {
        Self { clock, held: Mutex::new(HashMap::new()) }
    }

    /// Who holds `game` now, if anyone.
    pub fn holder(&self, game: GameIndex) -> Option<String> {
        let now_ms = self.clock.now_ms();
        let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(&game).filter(|(_, until)| *until > now_ms).map(|(h, _)| h.clone())
    }
}

impl GameLeases for MemoryGameLeases {
    fn hold<'a>(
        &'a self,
        game: GameIndex,
        holder: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Held, QueueError>> {
        Box::pin(async move {
            let now_ms = self.clock.now_ms();
            let until = now_ms.saturating_add(ttl_ms);
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let answer = match held.get(&game) {
                Some((h, expires)) if *expires > now_ms && h == holder => Held::Renewed,
                Some((_, expires)) if *expires > now_ms => return Ok(Held::Elsewhere),
                _ => Held::Acquired,
            };
            held.insert(game, (holder.to_string(), until));
            Ok(answer)
        })
    }

    fn release<'a>(
        &'a self,
        game: GameIndex,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if held.get(&game).is_some_and(|(h, _)| h == holder) {
                held.remove(&game);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hongbao_clock::ManualClock;

    const G: GameIndex = GameIndex(2);

    #[tokio::test]
    async fn one_holder_at_a_time_until_expiry_or_release() {
        let clock = ManualClock::new(1_000_000);
        let leases = MemoryGameLeases::new(clock.clone());
        assert_eq!(leases.hold(G, "a", 3_000).await, Ok(Held::Acquired));
        assert_eq!(leases.hold(G, "b", 3_000).await, Ok(Held::Elsewhere));
        clock.advance_ms(2_000);
        assert_eq!(leases.hold(G, "a", 3_000).await, Ok(Held::Renewed));
        clock.advance_ms(2_999);
        assert_eq!(leases.hold(G, "b", 3_000).await, Ok(Held::Elsewhere));
        clock.advance_ms(1);
        // Expired: b takes it, and a finds it elsewhere.
        assert_eq!(leases.hold(G, "b", 3_000).await, Ok(Held::Acquired));
        assert_eq!(leases.hold(G, "a", 3_000).await, Ok(Held::Elsewhere));
        assert_eq!(leases.holder(G).as_deref(), Some("b"));
        // Only the holder's release counts.
        leases.release(G, "a").await.unwrap();
        assert_eq!(leases.holder(G).as_deref(), Some("b"));
        leases.release(G, "b").await.unwrap();
        assert_eq!(leases.holder(G), None);
        // a held it once, but someone held it since: acquired, not renewed.
        assert_eq!(leases.hold(G, "a", 3_000).await, Ok(Held::Acquired));
        // Other games are separate.
        assert_eq!(leases.hold(GameIndex(3), "b", 3_000).await, Ok(Held::Acquired));
    }
}
