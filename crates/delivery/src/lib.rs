//! Delivery workers: drain each game's queue at that game's capacity, exactly once, within the
//! deadline (DESIGN.md §1 "delivery workers").
//!
//! - [`Dispatcher`]: one worker task per game. Its pacer ([`config::DispatcherConfig`]'s
//!   capacity × headroom, GCRA with a burst of one) keeps every one-second window under the
//!   game's capacity; AIMD halves the rate on a busy answer and recovers it additively;
//!   in-flight calls are bounded per game, so a slow game never holds up another.
//! - Each call uses the order id as the game's serial: a retry after a timeout, a crash or a
//!   lost lease is answered `duplicate`, never applied twice. Applied or duplicate → delivered;
//!   busy → released (no attempt counted) and sent again at the lowered rate; failure or
//!   timeout → retried with exponential backoff and full jitter, at most `attempts_max`
//!   attempts, then dead; permanent refusal → dead; past `deliver_by` → expired (counted,
//!   listed in the status), checked at lease and again right before the call.
//! - After consecutive failures (an outage) a game is held: no sends for an exponentially
//!   growing while, then one probe call, so an outage does not burn every order's attempts.
//! - A new dispatcher waits `start_quiet_ms` (one window) before its first send to a game, so
//!   a crashed predecessor's last second of sends and ours never share the game's window.
//! - Ports, so the workers can run against fakes on virtual time: the queue is
//!   [`hongbao_queue::DeliveryQueue`], which every backend implements (the stores themselves,
//!   [`hongbao_queue::MemoryQueue`] in tests); the game side is [`GameClient`] (the IDIP client
//!   in production); time is an injected [`hongbao_clock::Clock`].
//! - Several worker processes share a campaign's games through leases
//!   ([`Dispatcher::start_shared`], `ownership`): one holder per game at a time, so each game
//!   is still paced by one pacer.
//! - Operators: [`Dispatcher::pause`], [`Dispatcher::resume`], [`Dispatcher::status`].
//!
//! Rooms: `dispatcher` (start, operators, shutdown), `worker` (the per-game loop), `call` (one
//! call and its outcome), `slot` (a pacer slot as a guard), `pacer`, `game` (per-game state
//! and status), `ownership` (game leases between worker processes).

mod call;
pub mod config;
mod dispatcher;
mod game;
mod game_client;
mod ownership;
mod pacer;
mod slot;
mod status;
mod worker;

pub use config::{DispatcherConfig, PACING_HEADROOM_DEFAULT};
pub use dispatcher::{DispatchError, Dispatcher};
pub use game_client::GameClient;
pub use ownership::{GAME_LEASE_TTL_MS_DEFAULT, GAME_LEASE_TTL_MS_MIN, SharedGames};
pub use status::{DeadOrder, DispatcherStatus, GameStatus};
