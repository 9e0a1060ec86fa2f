//! The claim decision, in the order [`crate::claim`] documents: idempotency key, coupon already
//! redeemed, stock, per-user limit, high-value rules, then a new queued order.

use hongbao_domain::{GameIndex, Order, OrderId, OrderStatus};

use super::{LedgerTxn, QueueSlot};
use crate::StoreError;
use crate::claim::{
    CampaignBinding, ClaimOutcome, ClaimRequest, HighValueRule, HighValueUsage, IDEMPOTENCY_TTL_MS,
    IdempotencyKey, day_of, hour_of,
};

/// A claim checked against the binding, with the values every backend derives from it.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub order_id: OrderId,
    pub gift_id: String,
    pub game: GameIndex,
    pub game_id: String,
    pub coupon_id: String,
}

/// Refuses requests no correct caller sends (another campaign, an unbound gift) and derives
/// the order id. Done before a claim reaches a backend's atomic step, so a refused claim costs
/// that step nothing.
pub(crate) fn prepare(
    binding: &CampaignBinding,
    req: &ClaimRequest,
) -> Result<Prepared, StoreError> {
    if req.coupon.campaign_id != binding.campaign_id() {
        return Err(StoreError::InvalidConfig(format!(
            "claim for campaign `{}` on a store bound to `{}`",
            req.coupon.campaign_id,
            binding.campaign_id()
        )));
    }
    let (gift_id, game) = binding.gift(req.gift).ok_or_else(|| {
        StoreError::InvalidConfig(format!("gift index {} is not bound", req.gift.0))
    })?;
    let game_id = binding.game_id(game).unwrap_or_default().to_string();
    Ok(Prepared {
        order_id: req.order_id(),
        gift_id: gift_id.to_string(),
        game,
        game_id,
        coupon_id: req.coupon.id(),
    })
}

/// Decides one claim (see [`crate::claim`] for the decisions in order) and writes its effects:
/// a new order with its index, counters and queue entry, and the idempotency record of an
/// outcome that carries an order.
pub(crate) fn claim<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    req: &ClaimRequest,
    p: &Prepared,
) -> Result<ClaimOutcome, StoreError> {
    let user = req.user();
    if let Some(key) = &req.idempotency
        && let Some(recorded) = replay_by_key(txn, user, key, req.now_ms)?
    {
        return Ok(recorded);
    }
    let outcome = match txn.order(&p.order_id)? {
        Some(order) => replay(order, &p.gift_id),
        None => {
            let taken = txn.stock_taken(req.gift);
            if taken >= req.stock {
                return Ok(ClaimOutcome::OutOfStock);
            }
            let claimed = txn.claimed(user, req.gift)?;
            if claimed >= req.per_user_limit {
                return Ok(ClaimOutcome::LimitReached);
            }
            let high_value = match &req.high_value {
                Some(rule) => match high_value_check(txn, rule, user, req.now_ms)? {
                    Ok(counted) => Some((rule, counted)),
                    Err(refused) => return Ok(refused),
                },
                None => None,
            };
            let order = new_order(req, p);
            assert!(taken < req.stock && claimed < req.per_user_limit);
            txn.set_stock_taken(req.gift, taken + 1);
            txn.set_claimed(user, req.gift, claimed + 1);
            if let Some((rule, usage)) = high_value {
                let (day, hour) = (day_of(req.now_ms), hour_of(req.now_ms));
                assert!(usage.claimed_today < rule.per_user_per_day);
                txn.set_high_value_claimed(user, day, usage.claimed_today + 1);
                let spent = usage.spent_this_hour_cents + rule.value_cents;
                assert!(spent <= rule.budget_cents_per_hour);
                txn.set_high_value_spent(hour, spent);
            }
            txn.index_user_order(user, p.order_id);
            txn.enqueue(QueueSlot { game: p.game, ready_at_ms: req.now_ms, id: p.order_id });
            txn.put_order(order.clone());
            ClaimOutcome::Accepted(Box::new(order))
        }
    };
    if let (Some(key), Some(kind)) = (&req.idempotency, RecordedKind::of(&outcome)) {
        let record = IdempotencyRecord {
            expires_at_ms: req.now_ms.saturating_add(IDEMPOTENCY_TTL_MS),
            fingerprint: *key.fingerprint(),
            kind,
            order_id: p.order_id,
        };
        txn.put_idempotency_record(user, key.key(), record);
    }
    Ok(outcome)
}

/// Step 5: the store's counts for the claim's day and hour, and the rule's verdict on them:
/// `Ok(usage)` to accept (the counts the writes add to), `Err(refusal)` otherwise. Reads only.
fn high_value_check<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    rule: &HighValueRule,
    user: u64,
    now_ms: u64,
) -> Result<Result<HighValueUsage, ClaimOutcome>, StoreError> {
    let usage = HighValueUsage {
        claimed_today: txn.high_value_claimed(user, day_of(now_ms))?,
        spent_this_hour_cents: txn.high_value_spent(hour_of(now_ms))?,
    };
    Ok(match rule.refusal(usage, now_ms) {
        Some(refused) => Err(refused),
        None => Ok(usage),
    })
}

/// Step 1: the answer an unexpired record of `key` gives (a conflict, or the recorded kind with
/// the order as it is now), or `None` to decide afresh.
fn replay_by_key<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    user: u64,
    key: &IdempotencyKey,
    now_ms: u64,
) -> Result<Option<ClaimOutcome>, StoreError> {
    let record = match txn.idempotency_record(user, key.key())? {
        Some(record) if record.expires_at_ms > now_ms => record,
        _ => return Ok(None),
    };
    if record.fingerprint != *key.fingerprint() {
        return Ok(Some(ClaimOutcome::IdempotencyConflict));
    }
    let id = record.order_id;
    let order = txn
        .order(&id)?
        .ok_or_else(|| StoreError::Corrupt(format!("idempotency key names missing order {id}")))?;
    Ok(Some(record.kind.outcome(order)))
}

/// The order a fresh claim creates.
pub(crate) fn new_order(req: &ClaimRequest, p: &Prepared) -> Order {
    let order = Order {
        id: p.order_id,
        campaign_id: req.coupon.campaign_id.clone(),
        user: req.coupon.user,
        coupon_id: p.coupon_id.clone(),
        gift_id: p.gift_id.clone(),
        game_id: p.game_id.clone(),
        zone_id: req.zone_id,
        role_id: req.role_id,
        status: OrderStatus::Queued,
        created_at_ms: req.now_ms,
        deliver_by_ms: req.deliver_by_ms,
        updated_at_ms: req.now_ms,
        attempts: 0,
        last_error: None,
        delivered_at_ms: None,
        ready_at_ms: Some(req.now_ms),
    };
    assert!(order.is_consistent(), "{order:?}");
    order
}

/// Step 2: what an existing order of this coupon means for this claim.
pub(crate) fn replay(order: Order, gift_id: &str) -> ClaimOutcome {
    if order.gift_id == gift_id {
        ClaimOutcome::Replayed(Box::new(order))
    } else {
        ClaimOutcome::CouponAlreadyRedeemed(Box::new(order))
    }
}

/// Outcome kinds recorded with an idempotency key (only those that carry an order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordedKind {
    Accepted,
    Replayed,
    CouponAlreadyRedeemed,
}

impl RecordedKind {
    pub fn of(outcome: &ClaimOutcome) -> Option<RecordedKind> {
        match outcome {
            ClaimOutcome::Accepted(_) => Some(RecordedKind::Accepted),
            ClaimOutcome::Replayed(_) => Some(RecordedKind::Replayed),
            ClaimOutcome::CouponAlreadyRedeemed(_) => Some(RecordedKind::CouponAlreadyRedeemed),
            _ => None,
        }
    }

    pub fn outcome(self, order: Order) -> ClaimOutcome {
        let order = Box::new(order);
        match self {
            RecordedKind::Accepted => ClaimOutcome::Accepted(order),
            RecordedKind::Replayed => ClaimOutcome::Replayed(order),
            RecordedKind::CouponAlreadyRedeemed => ClaimOutcome::CouponAlreadyRedeemed(order),
        }
    }
}

/// What an idempotency key remembers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub expires_at_ms: u64,
    pub fingerprint: [u8; 32],
    pub kind: RecordedKind,
    pub order_id: OrderId,
}
