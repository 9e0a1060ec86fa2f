//! What keeps `apply` from doing harm on bad input.
//!
//! A pass that applies re-delivers every delivered order the game's log lacks. With the wrong
//! log (empty, truncated, rotated, another day's) that is every delivered order: gifts paid
//! twice, at the campaign's scale. So `apply` first runs the same pass as a dry run, and goes on
//! only when
//!
//! - the game's log covers the deliveries it judges: its records span their time (give or take
//!   [`COVERAGE_SLACK_MS`]), and
//! - what it would re-deliver is at most [`Guards::max_requeue_share`] of the delivered orders,
//!
//! unless [`Guards::force`] says an operator has reviewed the dry run's resend list. A dry run
//! reports the same verdict ([`crate::Summary::refusal`]), so it says beforehand what `apply`
//! would refuse.

use serde::Serialize;

/// Default most share of the delivered orders one `apply` may send again. Real losses at a
/// game are rare (a fraction of a percent); a pass that finds more is more likely reading the
/// wrong log than seeing a game lose one gift in twenty.
pub const MAX_REQUEUE_SHARE_DEFAULT: f64 = 0.05;

/// How far the game log's first and last records may lie inside the span of the deliveries it
/// judges and still count as covering it. The game applies a gift before our worker records it
/// (first record ≤ our first delivery), but the first or last few deliveries may be the lost
/// ones; a minute without a single record while we delivered means a missing part of the log.
pub const COVERAGE_SLACK_MS: u64 = 60_000;

/// The limits of `apply` (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guards {
    /// In `[0, 1]`.
    pub max_requeue_share: f64,
    /// Apply even when a guard refuses.
    pub force: bool,
}

impl Default for Guards {
    fn default() -> Self {
        Guards { max_requeue_share: MAX_REQUEUE_SHARE_DEFAULT, force: false }
    }
}

/// What the guards look at, gathered by every pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Exposure {
    /// Delivered orders in the window.
    pub delivered: u64,
    /// Delivered orders the pass sends again (`lost_at_game`).
    pub redeliver: u64,
    /// The span of the deliveries judged against the game log (delivered at or before the
    /// time the log is complete to); absent when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judged_from_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judged_until_ms: Option<u64>,
}

impl Exposure {
    pub(crate) fn judged(&mut self, at_ms: u64) {
        self.judged_from_ms = Some(self.judged_from_ms.map_or(at_ms, |f| f.min(at_ms)));
        self.judged_until_ms = Some(self.judged_until_ms.map_or(at_ms, |u| u.max(at_ms)));
    }
}

/// Why `apply` was refused. The messages end where the caller adds how to force (a flag on the
/// command line, a field of a request).
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, utoipa::ToSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// The game's log lacks the time of some judged deliveries: its silence there says nothing.
    #[error(
        "the game log does not cover the deliveries it judges: they run from {judged_from_ms} \
         to {judged_until_ms} ms, the log {}; give the complete log, or narrow the pass \
         (from/to) to the time it covers",
        log_span(*log_first_ms, *log_last_ms)
    )]
    GameLogDoesNotCover {
        judged_from_ms: u64,
        judged_until_ms: u64,
        log_first_ms: Option<u64>,
        log_last_ms: Option<u64>,
    },
    /// More re-deliveries than the stated share of delivered orders.
    #[error(
        "it would deliver {redeliver} of {delivered} delivered orders again ({:.2} %), above \
         the limit of {:.2} %; review the dry run's resend list",
        share(*redeliver, *delivered) * 100.0,
        max_share * 100.0
    )]
    RequeueShareExceeded { redeliver: u64, delivered: u64, max_share: f64 },
}

impl Refusal {
    /// The snake_case code of an API error.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::GameLogDoesNotCover { .. } => "game_log_does_not_cover",
            Refusal::RequeueShareExceeded { .. } => "requeue_share_exceeded",
        }
    }
}

fn log_span(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(f), Some(l)) => format!("from {f} to {l} ms"),
        _ => "has no record".to_string(),
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// The first guard `exposure` fails, if any. `log` is the game log's (first, last) record time,
/// `None` when the pass had no game log (then no delivered order is judged or re-delivered).
pub fn check(
    exposure: &Exposure,
    log: Option<(Option<u64>, Option<u64>)>,
    max_share: f64,
) -> Option<Refusal> {
    if let (Some((first, last)), Some(from), Some(until)) =
        (log, exposure.judged_from_ms, exposure.judged_until_ms)
    {
        let covers = match (first, last) {
            (Some(f), Some(l)) => {
                f <= from.saturating_add(COVERAGE_SLACK_MS)
                    && l.saturating_add(COVERAGE_SLACK_MS) >= until
            }
            _ => false,
        };
        if !covers {
            return Some(Refusal::GameLogDoesNotCover {
                judged_from_ms: from,
                judged_until_ms: until,
                log_first_ms: first,
                log_last_ms: last,
            });
        }
    }
    let over = exposure.redeliver as f64 > max_share * exposure.delivered as f64;
    (exposure.redeliver > 0 && over).then_some(Refusal::RequeueShareExceeded {
        redeliver: exposure.redeliver,
        delivered: exposure.delivered,
        max_share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(delivered: u64, redeliver: u64, from: u64, until: u64) -> Exposure {
        Exposure { delivered, redeliver, judged_from_ms: Some(from), judged_until_ms: Some(until) }
    }

    #[test]
    fn an_empty_log_covers_nothing() {
        let e = judged(100, 100, 1_000, 2_000);
        assert!(matches!(
            check(&e, Some((None, None)), 1.0),
            Some(Refusal::GameLogDoesNotCover { .. })
        ));
    }

    #[test]
    fn a_log_that_starts_late_or_ends_early_does_not_cover() {
        let e = judged(100, 1, 1_000_000, 2_000_000);
        let late = Some((Some(1_000_000 + COVERAGE_SLACK_MS + 1), Some(2_000_000)));
        let early = Some((Some(1_000_000), Some(2_000_000 - COVERAGE_SLACK_MS - 1)));
        let slack = Some((Some(1_000_000 + COVERAGE_SLACK_MS), Some(2_000_000 - 5)));
        assert!(check(&e, late, 1.0).is_some());
        assert!(check(&e, early, 1.0).is_some());
        assert_eq!(check(&e, slack, 1.0), None);
    }

    #[test]
    fn the_share_is_of_delivered_orders() {
        let log = Some((Some(0), Some(u64::MAX)));
        assert_eq!(check(&judged(100, 5, 1, 2), log, 0.05), None);
        let refused = check(&judged(100, 6, 1, 2), log, 0.05).expect("refused");
        assert_eq!(refused.code(), "requeue_share_exceeded");
        assert!(refused.to_string().contains("6 of 100"), "{refused}");
        assert_eq!(check(&judged(0, 0, 1, 2), log, 0.0), None, "nothing to requeue");
    }

    #[test]
    fn without_a_game_log_only_the_share_counts() {
        let e = Exposure { delivered: 10, ..Exposure::default() };
        assert_eq!(check(&e, None, 0.0), None);
    }
}
