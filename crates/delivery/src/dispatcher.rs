//! The dispatcher: one worker task per game (`worker.rs`), each pacing its own calls, so a
//! slow, failing or paused game never holds up the others; and the operators' handle on them
//! (pause, resume, wake, status, shutdown).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hongbao_clock::SharedClock;
use hongbao_domain::{Campaign, GameIndex};
use hongbao_queue::{DeliveryQueue, QueueDepth, QueueError};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::DispatcherConfig;
use crate::game::GameShared;
use crate::game_client::GameClient;
use crate::ownership::{self, GAME_LEASE_TTL_MS_MIN, SharedGames};
use crate::status::DispatcherStatus;
use crate::worker::{Worker, resume_if_panicked};

/// Why the dispatcher could not start or refused an operator's request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("invalid dispatcher setting {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("no game with index {}", .0.0)]
    UnknownGame(GameIndex),
}

/// Runs the delivery workers until [`Dispatcher::shutdown`] or until dropped.
///
/// Dropping it aborts every worker and call at once, as a crash would: leased orders stay
/// leased until the queue gives them back (lease expiry, restart), and a call that reached the
/// game is answered `duplicate` when redelivered. `shutdown` stops cleanly instead.
pub struct Dispatcher {
    games: Arc<[Arc<GameShared>]>,
    depth: Arc<dyn DepthProbe>,
    clock: SharedClock,
    stop: watch::Sender<bool>,
    workers: JoinSet<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("games", &self.games.len()).finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Starts one worker per game of `campaign`, delivering through `client` (in production
    /// the [`hongbao_gateway::IdipClient`] built for the same campaign: it carries each game's
    /// URL and `idip_timeout_ms`) from `queue`, on `clock`'s time (every "now" the workers
    /// read and every wait they make).
    ///
    /// Spawns tasks: call it inside a Tokio runtime.
    pub fn start<Q: DeliveryQueue, G: GameClient>(
        campaign: &Campaign,
        client: G,
        queue: Arc<Q>,
        config: DispatcherConfig,
        clock: SharedClock,
    ) -> Result<Dispatcher, DispatchError> {
        Self::start_inner(campaign, client, queue, config, clock, None)
    }

    /// [`Dispatcher::start`] for one of several worker processes sharing the campaign's queue:
    /// a game's worker sends only while this process holds the game's lease in `shared`.
    pub fn start_shared<Q: DeliveryQueue, G: GameClient>(
        campaign: &Campaign,
        client: G,
        queue: Arc<Q>,
        config: DispatcherConfig,
        clock: SharedClock,
        shared: SharedGames,
    ) -> Result<Dispatcher, DispatchError> {
        if shared.lease_ttl_ms < GAME_LEASE_TTL_MS_MIN {
            return Err(DispatchError::InvalidConfig {
                field: "lease_ttl_ms".to_string(),
                reason: format!("{} is under {GAME_LEASE_TTL_MS_MIN} ms", shared.lease_ttl_ms),
            });
        }
        Self::start_inner(campaign, client, queue, config, clock, Some(shared))
    }

    fn start_inner<Q: DeliveryQueue, G: GameClient>(
        campaign: &Campaign,
        client: G,
        queue: Arc<Q>,
        config: DispatcherConfig,
        clock: SharedClock,
        shared: Option<SharedGames>,
    ) -> Result<Dispatcher, DispatchError> {
        config.validate()?;
        if client.games() != campaign.games.len() {
            return Err(DispatchError::InvalidConfig {
                field: "client".to_string(),
                reason: format!(
                    "built for {} games, the campaign has {}",
                    client.games(),
                    campaign.games.len()
                ),
            });
        }
        let config = Arc::new(config);
        let client = Arc::new(client);
        let first_slot_us =
            clock.monotonic_us().saturating_add(config.start_quiet_ms.saturating_mul(1000));
        let games: Arc<[Arc<GameShared>]> = campaign
            .games
            .iter()
            .map(|g| Arc::new(GameShared::new(g, &config, clock.clone(), first_slot_us)))
            .collect();

        let (stop, _) = watch::channel(false);
        let mut workers = JoinSet::new();
        if let Some(shared) = shared {
            for game in games.iter() {
                game.send_window.close();
            }
            let keeper = ownership::keep(
                shared,
                games.clone(),
                config.start_quiet_ms,
                clock.clone(),
                stop.subscribe(),
            );
            workers.spawn(keeper);
        }
        for game in games.iter() {
            let worker = Arc::new(Worker {
                game: game.clone(),
                queue: queue.clone(),
                client: client.clone(),
                config: config.clone(),
                rng: Mutex::new(SmallRng::from_os_rng()),
            });
            workers.spawn(worker.run(stop.subscribe()));
        }
        Ok(Dispatcher { games, depth: Arc::new(Probe(queue)), clock, stop, workers })
    }

    /// Stops leasing and sending for one game; unsent leased orders go back to the queue.
    /// Calls already in flight finish normally.
    pub fn pause(&self, game: GameIndex) -> Result<(), DispatchError> {
        self.game(game)?.paused.send_replace(true);
        Ok(())
    }

    /// Resumes a paused game.
    pub fn resume(&self, game: GameIndex) -> Result<(), DispatchError> {
        self.game(game)?.paused.send_replace(false);
        Ok(())
    }

    /// Tells a game's worker to look at the queue now (call after enqueueing), instead of at
    /// its next idle poll. Unknown games are ignored.
    pub fn wake(&self, game: GameIndex) {
        if let Ok(g) = self.game(game) {
            g.wake.notify_one();
        }
    }

    /// The index of the game with this id.
    pub fn game_index(&self, id: &str) -> Option<GameIndex> {
        self.games.iter().find(|g| g.id == id).map(|g| g.index)
    }

    /// Every game's status: the queue's backlog and this dispatcher's counters.
    pub async fn status(&self) -> DispatcherStatus {
        let at_ms = self.clock.now_ms();
        let mut games = Vec::with_capacity(self.games.len());
        for g in self.games.iter() {
            let depth = self.depth.depth(g.index).await;
            games.push(g.status(depth, at_ms, self.clock.monotonic_us()));
        }
        DispatcherStatus { at_ms, games }
    }

    /// Stops cleanly: no new calls, unsent leased orders handed back to the queue, calls in
    /// flight awaited (each bounded by its game's timeout) and their outcomes recorded.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        while let Some(joined) = self.workers.join_next().await {
            resume_if_panicked(joined);
        }
    }

    fn game(&self, game: GameIndex) -> Result<&GameShared, DispatchError> {
        self.games.get(usize::from(game.0)).map(|g| &**g).ok_or(DispatchError::UnknownGame(game))
    }
}

/// The queue's `depth`, object-safe, so [`Dispatcher`] is not generic over the queue.
trait DepthProbe: Send + Sync {
    fn depth(
        &self,
        game: GameIndex,
    ) -> Pin<Box<dyn Future<Output = Result<QueueDepth, QueueError>> + Send + '_>>;
}

struct Probe<Q>(Arc<Q>);

impl<Q: DeliveryQueue> DepthProbe for Probe<Q> {
    fn depth(
        &self,
        game: GameIndex,
    ) -> Pin<Box<dyn Future<Output = Result<QueueDepth, QueueError>> + Send + '_>> {
        Box::pin(self.0.depth(game))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatcher_can_be_shared_by_the_admin_endpoint() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Dispatcher>();
        shareable::<DispatcherStatus>();
    }
}
