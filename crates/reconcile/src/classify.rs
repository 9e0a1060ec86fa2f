//! The decision for one order id, from the facts the merge gathered about it. Pure: no I/O, no
//! clock (the time is in [`Rules`]); the engine re-checks every finding against the live store
//! before reporting it (see `engine.rs`).

use std::fmt;

use hongbao_domain::{Order, OrderStatus};
use serde::Serialize;

/// What reconciliation reports. Each is a row in `resend.jsonl` (action `resend`) or
/// `anomalies.jsonl` (actions `record` and `list`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Accepted, waiting for delivery by its status (queued/retrying), but its queue entry is
    /// missing, and the game's log (if given) lacks it: no worker will ever deliver it.
    /// → resend (the requeue restores the entry).
    NotSentNorQueued,
    /// Delivered by our send log, absent from the game's log although the log covers the
    /// delivery's time: the game acknowledged and lost it. Only with a game log. → resend.
    LostAtGame,
    /// In the game's log but not delivered by our records (queued, retrying, held, dead or
    /// expired): a worker died between the game's answer and its write, or the answer was
    /// lost. → record as delivered at the game's time (never resend).
    DeliveredUnrecorded,
    /// The game's log has the serial more than once: the game applied it twice. → alert.
    AppliedTwice,
    /// Send-log rows for an id that has no order: over-delivery. → alert.
    SentWithoutOrder,
    /// The game's log has a serial that is no order's id: over-delivery. → alert.
    AppliedWithoutOrder,
    /// Status delivered but no send-log row (the store writes both atomically: damage). → alert.
    SendRowMissing,
    /// A queue entry whose order is missing or not waiting at that position (damage). → alert.
    OrphanQueueEntry,
    /// Waiting for delivery, due for longer than the stuck timeout. → listed.
    Stuck,
    /// Failed permanently. → listed; resent with `include_dead`.
    Dead,
    /// Deadline passed undelivered. → listed; resent with `include_expired`.
    Expired,
    /// A line of the game's log that is not a delivery record. → listed.
    GameLogMalformed,
}

impl Class {
    pub const ALL: [Class; 12] = [
        Class::NotSentNorQueued,
        Class::LostAtGame,
        Class::DeliveredUnrecorded,
        Class::AppliedTwice,
        Class::SentWithoutOrder,
        Class::AppliedWithoutOrder,
        Class::SendRowMissing,
        Class::OrphanQueueEntry,
        Class::Stuck,
        Class::Dead,
        Class::Expired,
        Class::GameLogMalformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::NotSentNorQueued => "not_sent_nor_queued",
            Class::LostAtGame => "lost_at_game",
            Class::DeliveredUnrecorded => "delivered_unrecorded",
            Class::AppliedTwice => "applied_twice",
            Class::SentWithoutOrder => "sent_without_order",
            Class::AppliedWithoutOrder => "applied_without_order",
            Class::SendRowMissing => "send_row_missing",
            Class::OrphanQueueEntry => "orphan_queue_entry",
            Class::Stuck => "stuck",
            Class::Dead => "dead",
            Class::Expired => "expired",
            Class::GameLogMalformed => "game_log_malformed",
        }
    }

    /// What an operator does about it (the `fix` field of an anomaly row).
    pub fn fix(self) -> &'static str {
        match self {
            Class::NotSentNorQueued | Class::LostAtGame => "resend: requeued by --apply",
            Class::DeliveredUnrecorded => {
                "record as delivered at the game's time (--apply); never resend"
            }
            Class::AppliedTwice => "alert: the game applied one serial twice; ask the game side",
            Class::SentWithoutOrder | Class::AppliedWithoutOrder => {
                "alert: over-delivery; find who sent it (no order exists)"
            }
            Class::SendRowMissing => "alert: store damage; the order says delivered, the log not",
            Class::OrphanQueueEntry => "alert: store damage; workers skip the entry",
            Class::Stuck => "check the game's worker (paused, held, outage) and its backlog",
            Class::Dead => "review last_error; resend with --include-dead",
            Class::Expired => "resend with --include-expired (new deadline)",
            Class::GameLogMalformed => "check the game's log file",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Orders without findings, counted in the summary only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quiet {
    /// Delivered, in our log (and in the game's, when given).
    Delivered,
    /// Waiting for delivery in its queue, not stuck.
    Pending,
    /// High-value order waiting for review.
    Held,
    /// Delivered after the game log's coverage ends: cannot be checked against it yet.
    AwaitingGameLog,
    /// Created outside `--from`/`--to` (for an id without an order: its rows lie outside).
    OutsideWindow,
    /// Changed while the pass ran (the live store moved on): the next pass sees it settled.
    ChangedDuringScan,
}

impl Quiet {
    pub const ALL: [Quiet; 6] = [
        Quiet::Delivered,
        Quiet::Pending,
        Quiet::Held,
        Quiet::AwaitingGameLog,
        Quiet::OutsideWindow,
        Quiet::ChangedDuringScan,
    ];
}

/// What to do about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Requeue through the normal delivery path.
    Resend,
    /// Record as delivered (the game has it).
    Record,
    /// Report only.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub class: Class,
    pub action: Action,
}

/// The decision about one id: findings, or else the quiet category it counts in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub findings: Vec<Finding>,
    pub quiet: Option<Quiet>,
}

impl Verdict {
    fn quiet(quiet: Quiet) -> Verdict {
        Verdict { findings: Vec::new(), quiet: Some(quiet) }
    }

    fn push(&mut self, class: Class, action: Action) {
        self.findings.push(Finding { class, action });
    }

    pub fn resends(&self) -> bool {
        self.findings.iter().any(|f| f.action == Action::Resend)
    }
}

/// Our send-log rows of one id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentFacts {
    pub rows: u32,
    pub last_at_ms: Option<u64>,
}

/// The game log's records of one id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GameFacts {
    pub applied: u32,
    pub first_at_ms: Option<u64>,
}

/// Everything known about one id after the merge.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub order: Option<&'a Order>,
    pub sent: SentFacts,
    /// `None`: no game log was given.
    pub game: Option<GameFacts>,
    /// For an order waiting in its queue (queued, retrying): whether its entry exists. `None`
    /// when not checked (treated as present).
    pub entry_present: Option<bool>,
}

/// The parameters of the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub now_ms: u64,
    /// Orders created in `[from_ms, to_ms)` are examined; ids without an order by the time
    /// of their send-log row or game record.
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    /// The game's log is complete up to this time: a delivery of ours at or before it that the
    /// log lacks is lost; a later one is not judged.
    pub game_log_until_ms: u64,
    /// Waiting and due for longer than this: stuck.
    pub stuck_after_ms: u64,
    pub include_dead: bool,
    pub include_expired: bool,
}

impl Rules {
    pub fn in_window(&self, at_ms: u64) -> bool {
        self.from_ms.is_none_or(|from| at_ms >= from) && self.to_ms.is_none_or(|to| at_ms < to)
    }
}

/// The decision for one id (see [`Class`] for each class's meaning).
pub fn classify(facts: &Facts<'_>, rules: &Rules) -> Verdict {
    let applied = facts.game.map_or(0, |g| g.applied);
    let Some(order) = facts.order else {
        let mut v = Verdict::default();
        if facts.sent.rows > 0 && facts.sent.last_at_ms.is_some_and(|at| rules.in_window(at)) {
            v.push(Class::SentWithoutOrder, Action::List);
        }
        if applied > 0
            && facts.game.and_then(|g| g.first_at_ms).is_some_and(|at| rules.in_window(at))
        {
            v.push(Class::AppliedWithoutOrder, Action::List);
            if applied > 1 {
                v.push(Class::AppliedTwice, Action::List);
            }
        }
        if v.findings.is_empty() {
            // Rows of an order outside the window can't be told from these; only reachable for
            // ids whose rows all lie outside the window.
            v.quiet = Some(Quiet::OutsideWindow);
        }
        return v;
    };
    if !rules.in_window(order.created_at_ms) {
        return Verdict::quiet(Quiet::OutsideWindow);
    }
    let mut v = Verdict::default();
    if applied > 1 {
        v.push(Class::AppliedTwice, Action::List);
    }
    match order.status {
        OrderStatus::Delivered => {
            if facts.sent.rows == 0 {
                v.push(Class::SendRowMissing, Action::List);
            }
            if facts.game.is_some() && applied == 0 {
                let last_ms = facts.sent.last_at_ms.max(order.delivered_at_ms).unwrap_or(0);
                if last_ms <= rules.game_log_until_ms {
                    v.push(Class::LostAtGame, Action::Resend);
                } else if v.findings.is_empty() {
                    return Verdict::quiet(Quiet::AwaitingGameLog);
                }
            }
        }
        // The game has it: whatever our status says, it must not be delivered again.
        _ if applied > 0 => v.push(Class::DeliveredUnrecorded, Action::Record),
        OrderStatus::Queued | OrderStatus::Retrying | OrderStatus::Delivering => {
            if facts.entry_present == Some(false) {
                v.push(Class::NotSentNorQueued, Action::Resend);
            } else {
                let due_ms = order.ready_at_ms.unwrap_or(order.updated_at_ms);
                if rules.now_ms.saturating_sub(due_ms) > rules.stuck_after_ms {
                    v.push(Class::Stuck, Action::List);
                } else if v.findings.is_empty() {
                    return Verdict::quiet(Quiet::Pending);
                }
            }
        }
        OrderStatus::Held => {
            if v.findings.is_empty() {
                return Verdict::quiet(Quiet::Held);
            }
        }
        OrderStatus::Dead => {
            v.push(Class::Dead, if rules.include_dead { Action::Resend } else { Action::List })
        }
        OrderStatus::Expired => v.push(
            Class::Expired,
            if rules.include_expired { Action::Resend } else { Action::List },
        ),
    }
    if v.findings.is_empty() {
        v.quiet = Some(Quiet::Delivered);
    }
    v
}

#[cfg(test)]
mod tests {
    use hongbao_domain::{OrderEvent, OrderId};

    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn rules() -> Rules {
        Rules {
            now_ms: NOW,
            from_ms: None,
            to_ms: None,
            game_log_until_ms: NOW,
            stuck_after_ms: HOUR,
            include_dead: false,
            include_expired: false,
        }
    }

    fn queued(created_at_ms: u64) -> Order {
        Order {
            id: OrderId::derive("c", 1, "swipe-1"),
            campaign_id: "c".into(),
            user: 1,
            coupon_id: "swipe-1".into(),
            gift_id: "g".into(),
            game_id: "game".into(),
            zone_id: hongbao_domain::ZoneId(1),
            role_id: hongbao_domain::RoleId(2),
            status: OrderStatus::Queued,
            created_at_ms,
            deliver_by_ms: created_at_ms + 48 * HOUR,
            updated_at_ms: created_at_ms,
            attempts: 0,
            last_error: None,
            delivered_at_ms: None,
            ready_at_ms: Some(created_at_ms),
        }
    }

    fn delivered(at_ms: u64) -> Order {
        let o = queued(at_ms - 10);
        let o = o.apply(&OrderEvent::StartDelivery, at_ms).expect("start");
        o.apply(&OrderEvent::Delivered, at_ms).expect("deliver")
    }

    fn with(order: Option<&Order>, sent: u32, game: Option<u32>) -> Facts<'_> {
        let last_at_ms = order.and_then(|o| o.delivered_at_ms).or(Some(NOW - HOUR));
        Facts {
            order,
            sent: SentFacts { rows: sent, last_at_ms: (sent > 0).then_some(last_at_ms).flatten() },
            game: game
                .map(|n| GameFacts { applied: n, first_at_ms: (n > 0).then_some(NOW - HOUR) }),
            entry_present: order.filter(|o| o.status.is_in_queue()).map(|_| true),
        }
    }

    fn classes(v: &Verdict) -> Vec<(Class, Action)> {
        v.findings.iter().map(|f| (f.class, f.action)).collect()
    }

    #[test]
    fn a_delivered_order_in_both_logs_is_quiet() {
        let o = delivered(NOW - HOUR);
        let v = classify(&with(Some(&o), 1, Some(1)), &rules());
        assert_eq!(v, Verdict { findings: vec![], quiet: Some(Quiet::Delivered) });
        // Without a game log, our log is all there is.
        assert_eq!(classify(&with(Some(&o), 1, None), &rules()).quiet, Some(Quiet::Delivered));
        // Sent twice (resent after a loss), applied once: fine.
        assert_eq!(classify(&with(Some(&o), 2, Some(1)), &rules()).quiet, Some(Quiet::Delivered));
    }

    #[test]
    fn delivered_but_missing_at_the_game_is_resent_only_when_the_log_covers_it() {
        let o = delivered(NOW - HOUR);
        let v = classify(&with(Some(&o), 1, Some(0)), &rules());
        assert_eq!(classes(&v), vec![(Class::LostAtGame, Action::Resend)]);
        let early = Rules { game_log_until_ms: NOW - 2 * HOUR, ..rules() };
        let v = classify(&with(Some(&o), 1, Some(0)), &early);
        assert_eq!(v, Verdict { findings: vec![], quiet: Some(Quiet::AwaitingGameLog) });
    }

    #[test]
    fn waiting_orders_are_pending_stuck_or_missing_from_the_queue() {
        let fresh = queued(NOW - 1_000);
        assert_eq!(classify(&with(Some(&fresh), 0, Some(0)), &rules()).quiet, Some(Quiet::Pending));
        let old = queued(NOW - 2 * HOUR);
        let v = classify(&with(Some(&old), 0, None), &rules());
        assert_eq!(classes(&v), vec![(Class::Stuck, Action::List)]);
        let mut facts = with(Some(&fresh), 0, Some(0));
        facts.entry_present = Some(false);
        assert_eq!(
            classes(&classify(&facts, &rules())),
            vec![(Class::NotSentNorQueued, Action::Resend)]
        );
        // A resent order (an old send-log row, queued again) is pending, not lost.
        let o = delivered(NOW - HOUR);
        let requeued = o
            .apply(&OrderEvent::Resend { ready_at_ms: NOW - 5, deliver_by_ms: NOW + HOUR }, NOW - 5)
            .expect("resend");
        assert_eq!(
            classify(&with(Some(&requeued), 1, Some(0)), &rules()).quiet,
            Some(Quiet::Pending)
        );
    }

    #[test]
    fn the_game_log_wins_over_any_undelivered_status() {
        let fresh = queued(NOW - 1_000);
        let v = classify(&with(Some(&fresh), 0, Some(1)), &rules());
        assert_eq!(classes(&v), vec![(Class::DeliveredUnrecorded, Action::Record)]);
        // Even with its entry gone: record, never resend.
        let mut facts = with(Some(&fresh), 0, Some(1));
        facts.entry_present = Some(false);
        assert_eq!(
            classes(&classify(&facts, &rules())),
            vec![(Class::DeliveredUnrecorded, Action::Record)]
        );
        let dead = fresh
            .apply(&OrderEvent::StartDelivery, NOW)
            .and_then(|o| o.apply(&OrderEvent::Fail { reason: "x".into() }, NOW))
            .expect("dead");
        let all = Rules { include_dead: true, ..rules() };
        let v = classify(&with(Some(&dead), 0, Some(1)), &all);
        assert_eq!(classes(&v), vec![(Class::DeliveredUnrecorded, Action::Record)]);
    }

    #[test]
    fn dead_and_expired_are_listed_and_resent_only_when_asked() {
        let o = queued(NOW - 1_000);
        let dead = o
            .apply(&OrderEvent::StartDelivery, NOW)
            .and_then(|o| o.apply(&OrderEvent::Fail { reason: "x".into() }, NOW))
            .expect("dead");
        let expired = o.apply(&OrderEvent::Expire, NOW).expect("expire");
        let r = rules();
        assert_eq!(
            classes(&classify(&with(Some(&dead), 0, Some(0)), &r)),
            vec![(Class::Dead, Action::List)]
        );
        assert_eq!(
            classes(&classify(&with(Some(&expired), 0, None), &r)),
            vec![(Class::Expired, Action::List)]
        );
        let all = Rules { include_dead: true, include_expired: true, ..r };
        assert_eq!(
            classes(&classify(&with(Some(&dead), 0, None), &all)),
            vec![(Class::Dead, Action::Resend)]
        );
        assert_eq!(
            classes(&classify(&with(Some(&expired), 0, None), &all)),
            vec![(Class::Expired, Action::Resend)]
        );
        let held = o.apply(&OrderEvent::Hold, NOW).expect("hold");
        assert_eq!(classify(&with(Some(&held), 0, Some(0)), &r).quiet, Some(Quiet::Held));
    }

    #[test]
    fn over_delivery_and_double_application_are_anomalies() {
        let v = classify(&with(None, 1, None), &rules());
        assert_eq!(classes(&v), vec![(Class::SentWithoutOrder, Action::List)]);
        let v = classify(&with(None, 0, Some(2)), &rules());
        assert_eq!(
            classes(&v),
            vec![(Class::AppliedWithoutOrder, Action::List), (Class::AppliedTwice, Action::List)]
        );
        let o = delivered(NOW - HOUR);
        let v = classify(&with(Some(&o), 1, Some(2)), &rules());
        assert_eq!(classes(&v), vec![(Class::AppliedTwice, Action::List)]);
        let v = classify(&with(Some(&o), 0, Some(1)), &rules());
        assert_eq!(classes(&v), vec![(Class::SendRowMissing, Action::List)]);
    }

    #[test]
    fn the_window_selects_by_creation_time() {
        let o = queued(NOW - 2 * HOUR);
        let r = Rules { from_ms: Some(NOW - HOUR), ..rules() };
        assert_eq!(classify(&with(Some(&o), 0, Some(1)), &r).quiet, Some(Quiet::OutsideWindow));
        let r = Rules { to_ms: Some(NOW - 2 * HOUR), ..rules() };
        assert_eq!(classify(&with(Some(&o), 0, Some(1)), &r).quiet, Some(Quiet::OutsideWindow));
        let r = Rules { from_ms: Some(NOW - 2 * HOUR), to_ms: Some(NOW), ..rules() };
        assert!(classify(&with(Some(&o), 0, Some(1)), &r).quiet.is_none());
        // Ids without an order: by the time of their rows.
        let r = Rules { to_ms: Some(NOW - 2 * HOUR), ..rules() };
        assert_eq!(classify(&with(None, 0, Some(1)), &r).quiet, Some(Quiet::OutsideWindow));
    }
}
