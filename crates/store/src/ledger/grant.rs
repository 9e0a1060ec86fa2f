//! The grant decision: may a user have one more coupon from a channel?

use super::LedgerTxn;
use crate::{GrantOutcome, GrantRequest, StoreError};

/// Decides one grab and, when granted, writes the user's new count and the channel's. The
/// budget is checked first, so an exhausted channel answers so to everyone (see
/// [`GrantOutcome::BudgetExhausted`]); the serial is the user's count on the channel plus one,
/// never handed out twice.
pub(crate) fn grant<T: LedgerTxn + ?Sized>(
    txn: &mut T,
    req: GrantRequest,
) -> Result<GrantOutcome, StoreError> {
    let granted = txn.channel_granted(req.channel);
    if granted >= req.budget {
        return Ok(GrantOutcome::BudgetExhausted);
    }
    let count = txn.grants(req.user, req.channel)?;
    if count >= req.per_user_limit {
        return Ok(GrantOutcome::UserLimitReached);
    }
    let serial = count + 1;
    let granted = granted + 1;
    assert!(serial <= req.per_user_limit && granted <= req.budget);
    txn.set_grants(req.user, req.channel, serial);
    txn.set_channel_granted(req.channel, granted);
    Ok(GrantOutcome::Granted { serial })
}
