//! The gateway's one error type. Callers branch on it: the list view degrades on any error, the
//! delivery daemon retries `Timeout`/`Unavailable` and dead-letters `Protocol` after its retries.

use hongbao_domain::GameIndex;

/// An operating error talking to the game side or to the shared role store.
///
/// `Clone` because the role cache hands one upstream error to every request that was waiting on
/// the same single-flight call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The game side did not answer within the game's `idip_timeout_ms`.
    #[error("game `{game}`: no answer within {timeout_ms} ms")]
    Timeout { game: String, timeout_ms: u64 },
    /// The game side could not be reached or answered with a 5xx (outage, overload, restart).
    #[error("game `{game}`: unavailable: {reason}")]
    Unavailable { game: String, reason: String },
    /// The game side answered, but not in the contract's shape (bad status, body or JSON).
    #[error("game `{game}`: protocol error: {reason}")]
    Protocol { game: String, reason: String },
    /// The game side refused the request with a 4xx and a reason (e.g. an unknown zone when
    /// creating a role). Retrying the same request will not help.
    #[error("game `{game}`: rejected with status {status}: {reason}")]
    Rejected { game: String, status: u16, reason: String },
    /// A game index outside the campaign: a caller bug, reported rather than panicking on data
    /// that may come from a stored order.
    #[error("no game with index {}", .0.0)]
    UnknownGame(GameIndex),
    /// The shared role store (L2) failed; the cache falls through to the game side on reads.
    #[error("role store: {0}")]
    Store(String),
    /// The HTTP client could not be built (start-up only).
    #[error("cannot build the game-side HTTP client: {0}")]
    Setup(String),
}

impl GatewayError {
    /// Whether trying again later may succeed (timeouts, outages and store failures).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GatewayError::Timeout { .. }
                | GatewayError::Unavailable { .. }
                | GatewayError::Store(_)
        )
    }
}
