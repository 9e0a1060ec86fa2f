//! Delivery workers: drain each game's queue at that game's capacity, exactly once, within the
//! deadline (issue 6; DESIGN.md §1 "delivery workers").
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
//! - The queue is `hongbao_queue::DeliveryQueue`, the one port every backend implements.
//! - Operators: [`Dispatcher::pause`], [`Dispatcher::resume`], [`Dispatcher::status`].

pub mod config;
mod dispatcher;
mod pacer;
mod status;
mod store_queue;

pub use config::{DispatcherConfig, PACING_HEADROOM_DEFAULT};
pub use dispatcher::{DispatchError, Dispatcher};

pub use status::{DeadOrder, DispatcherStatus, GameStatus};
pub use store_queue::StoreQueue;
